//! The SQLite backend of `Store`.
