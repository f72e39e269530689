//! The node's image store (to be built: pull, blob store, unpack, import).

pub mod cli;
