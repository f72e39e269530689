//! Admission: checks (and charges) that run on writes after defaulting and
//! validation, before storage. Called from the generic REST store.

pub mod quota;
pub mod resourcequota;

pub use resourcequota::{QuotaGuard, admit as admit_quota};
