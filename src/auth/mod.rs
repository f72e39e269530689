//! Authentication and (later) authorization.

pub mod authn;
pub mod kubeconfig;
pub mod pki;

/// Who made a request (upstream's user.Info).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    /// The identity of in-process components (controllers, scheduler, agent).
    pub fn loopback() -> Self {
        UserInfo {
            name: "system:apiserver".into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        }
    }
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }
}
