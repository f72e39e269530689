//! Unit tests of matching and of the AdmissionReview checks.
