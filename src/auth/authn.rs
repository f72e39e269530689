//! Request authentication: x509 client certificates (bearer tokens come with RBAC).

use super::UserInfo;

/// The user named by a verified client certificate: CN is the user, each O a group.
pub fn user_from_cert(_der: &[u8]) -> Option<UserInfo> {
    None
}
