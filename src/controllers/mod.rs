//! Controllers: reconcile loops that are ordinary API clients (kube::Client
//! over the in-memory router), never side doors into the store.

pub mod namespace;
