//! The cluster PKI, made on first start with rcgen and reused after.
