//! Label and field selectors (apimachinery's labels and fields packages).

use std::collections::BTreeMap;

/// A parsed label selector.
#[derive(Clone, Debug, Default)]
pub struct LabelSelector {
    pub raw: String,
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        Ok(LabelSelector { raw: s.to_string() })
    }
    pub fn is_empty(&self) -> bool {
        self.raw.trim().is_empty()
    }
    pub fn matches(&self, _labels: &BTreeMap<String, String>) -> bool {
        true
    }
}

/// One field requirement: `field`, `=`/`==`/`!=`, `value`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub equal: bool,
    pub value: String,
}

/// A parsed field selector.
#[derive(Clone, Debug, Default)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

impl FieldSelector {
    pub fn parse(_s: &str) -> Result<Self, String> {
        Ok(FieldSelector::default())
    }
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }
    /// `value_of(field)` gives the object's value; None fields never match `=`.
    pub fn matches(&self, value_of: impl Fn(&str) -> Option<String>) -> bool {
        self.requirements.iter().all(|r| {
            let v = value_of(&r.field).unwrap_or_default();
            (v == r.value) == r.equal
        })
    }
}
