//! Streaming subresources: pods/exec, attach, portforward, log, proxy.

pub mod backend;
