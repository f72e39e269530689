//! Request authentication: x509 client certificates (bearer tokens come with RBAC).

use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use super::UserInfo;

/// The group every authenticated user is in, as upstream adds it.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// The user named by a verified client certificate: CN is the user, each O a
/// group, plus `system:authenticated` (upstream's x509 authenticator). The TLS
/// layer has already checked the chain against the cluster CA; a certificate
/// that does not parse or has no CN authenticates nobody.
pub fn user_from_cert(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    if name.is_empty() {
        return None;
    }
    let mut groups: Vec<String> = Vec::new();
    for org in subject.iter_organization() {
        if let Ok(org) = org.as_str()
            && !org.is_empty()
            && !groups.iter().any(|g| g == org)
        {
            groups.push(org.to_string());
        }
    }
    if !groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
        groups.push(AUTHENTICATED_GROUP.to_string());
    }
    Some(UserInfo { name, groups })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::pki::{Pki, SanInputs};
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    fn der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn users_from_pki_certificates() {
        let dir = std::env::temp_dir().join(format!("rk3s-authn-{}", uuid::Uuid::new_v4()));
        let sans = SanInputs {
            hostnames: vec!["h".into()],
            addresses: vec![],
            service_ip: "10.43.0.1".parse().unwrap(),
            extra: vec![],
        };
        let pki = Pki::load_or_create(&dir, &sans).unwrap();

        let admin = user_from_cert(&der(pki.admin_cert_pem())).unwrap();
        assert_eq!(admin.name, "system:admin");
        assert_eq!(admin.groups, ["system:masters", "system:authenticated"]);
        assert!(admin.is_master());

        let (cert, _key) = pki
            .issue_client_cert("system:node:n1", &["system:nodes", "team-a"])
            .unwrap();
        let node = user_from_cert(&der(&cert)).unwrap();
        assert_eq!(node.name, "system:node:n1");
        assert_eq!(
            node.groups,
            ["system:nodes", "team-a", "system:authenticated"]
        );
        assert!(!node.is_master());

        let (cert, _key) = pki.issue_client_cert("jane", &[]).unwrap();
        assert_eq!(
            user_from_cert(&der(&cert)).unwrap().groups,
            ["system:authenticated"]
        );

        let (cert, _key) = pki.issue_client_cert("", &["x"]).unwrap();
        assert_eq!(user_from_cert(&der(&cert)), None, "no CN, no user");
        assert_eq!(user_from_cert(b"not a certificate"), None);
        assert_eq!(user_from_cert(&[]), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
