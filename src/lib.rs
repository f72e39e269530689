//! rk3s: a Kubernetes distribution in one binary.

pub mod admission;
pub mod api;
pub mod auth;
pub mod cel;
pub mod cli;
pub mod config;
pub mod controllers;
pub mod net;
pub mod node;
pub mod patch;
pub mod registry;
pub mod runtime;
pub mod scheduler;
pub mod server;
pub mod store;
