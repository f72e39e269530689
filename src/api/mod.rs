//! The HTTP API: router, discovery, OpenAPI, verbs, watch, tables, errors.

pub mod fieldvalidation;
pub mod openapi;
pub mod selectors;
pub mod status;
pub mod table;
