//! rk3s: a Kubernetes distribution in one binary.

pub mod api;
pub mod auth;
pub mod config;
pub mod registry;
pub mod store;
