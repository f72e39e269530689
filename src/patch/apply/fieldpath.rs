//! Field sets: which fields of an object a manager owns, as a trie of path
//! elements, and their `FieldsV1` encoding.
//!
//! A path element is kept in its FieldsV1 spelling, which is also its
//! identity and its sort order: `f:<field>` for a struct field or map key,
//! `k:{"name":"x"}` for an item of a list-map (keys sorted, compact JSON),
//! `v:<json>` for an item of a set, `i:<n>` for a list index. In FieldsV1 a
//! path that is in the set and also has children in it carries a `.` entry.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

/// A set of field paths.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Set {
    /// Elements that end a path in the set.
    members: BTreeSet<String>,
    /// Elements that continue into deeper paths.
    children: BTreeMap<String, Set>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid FieldsV1: {0}")]
pub struct DecodeError(String);

impl Set {
    pub fn new() -> Self {
        Set::default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds one path (a sequence of path elements).
    pub fn insert(&mut self, path: &[String]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.child_mut(first).insert(rest),
        }
    }

    /// Adds a path whose parent is `prefix` (avoids building the whole path).
    pub fn child_mut(&mut self, pe: &str) -> &mut Set {
        if !self.children.contains_key(pe) {
            self.children.insert(pe.to_string(), Set::default());
        }
        match self.children.get_mut(pe) {
            Some(c) => c,
            None => unreachable!("child was just inserted"),
        }
    }

    pub fn insert_member(&mut self, pe: &str) {
        if !self.members.contains(pe) {
            self.members.insert(pe.to_string());
        }
    }

    /// Adds `s` under the element `pe` (nothing when `s` is empty).
    pub fn put_child(&mut self, pe: String, s: Set) {
        if s.is_empty() {
            return;
        }
        match self.children.get_mut(&pe) {
            Some(c) => c.union_in_place(&s),
            None => {
                self.children.insert(pe, s);
            }
        }
    }

    /// Drops the path `pe` itself, keeping paths below it.
    pub fn remove_member(&mut self, pe: &str) {
        self.members.remove(pe);
    }

    pub fn has(&self, path: &[String]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    pub fn member(&self, pe: &str) -> bool {
        self.members.contains(pe)
    }

    pub fn child(&self, pe: &str) -> Option<&Set> {
        self.children.get(pe)
    }

    pub fn members(&self) -> impl Iterator<Item = &String> {
        self.members.iter()
    }

    pub fn children(&self) -> impl Iterator<Item = (&String, &Set)> {
        self.children.iter()
    }

    pub fn union(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.union_in_place(other);
        out
    }

    pub fn union_in_place(&mut self, other: &Set) {
        for m in &other.members {
            self.insert_member(m);
        }
        for (k, c) in &other.children {
            self.child_mut(k).union_in_place(c);
        }
    }

    /// Paths of `self` that are not in `other` (path by path, not by prefix).
    pub fn difference(&self, other: &Set) -> Set {
        let members = self.members.difference(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (k, c) in &self.children {
            let d = match other.children.get(k) {
                Some(o) => c.difference(o),
                None => c.clone(),
            };
            if !d.is_empty() {
                children.insert(k.clone(), d);
            }
        }
        Set { members, children }
    }

    pub fn intersection(&self, other: &Set) -> Set {
        let members = self.members.intersection(&other.members).cloned().collect();
        let mut children = BTreeMap::new();
        for (k, c) in &self.children {
            if let Some(o) = other.children.get(k) {
                let i = c.intersection(o);
                if !i.is_empty() {
                    children.insert(k.clone(), i);
                }
            }
        }
        Set { members, children }
    }

    /// Drops the paths that are `prefix` or start with it.
    pub fn remove_prefix(&mut self, prefix: &[&str]) {
        match prefix {
            [] => *self = Set::default(),
            [last] => {
                self.members.remove(*last);
                self.children.remove(*last);
            }
            [first, rest @ ..] => {
                if let Some(c) = self.children.get_mut(*first) {
                    c.remove_prefix(rest);
                    if c.is_empty() {
                        self.children.remove(*first);
                    }
                }
            }
        }
    }

    /// Keeps only the paths that are `prefix` or start with it.
    pub fn keep_prefix(&self, prefix: &[&str]) -> Set {
        match prefix {
            [] => self.clone(),
            [first, rest @ ..] => {
                let mut out = Set::default();
                if rest.is_empty() && self.members.contains(*first) {
                    out.members.insert((*first).to_string());
                }
                if let Some(c) = self.children.get(*first) {
                    let k = c.keep_prefix(rest);
                    if !k.is_empty() {
                        out.children.insert((*first).to_string(), k);
                    }
                }
                out
            }
        }
    }

    /// Every path in the set, in order.
    pub fn paths(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        // Members and children interleaved in element order, parents first.
        let mut keys: BTreeSet<&String> = self.members.iter().collect();
        keys.extend(self.children.keys());
        for k in keys {
            prefix.push(k.clone());
            if self.members.contains(k) {
                out.push(prefix.clone());
            }
            if let Some(c) = self.children.get(k) {
                c.collect_paths(prefix, out);
            }
            prefix.pop();
        }
    }

    /// The FieldsV1 form: `{"f:spec":{"f:replicas":{}}}`.
    pub fn to_fields_v1(&self) -> Value {
        let mut m = Map::new();
        for (k, c) in &self.children {
            let mut v = match c.to_fields_v1() {
                Value::Object(o) => o,
                _ => Map::new(),
            };
            if self.members.contains(k) {
                v.insert(".".into(), Value::Object(Map::new()));
            }
            m.insert(k.clone(), Value::Object(v));
        }
        for k in &self.members {
            if !self.children.contains_key(k) {
                m.insert(k.clone(), Value::Object(Map::new()));
            }
        }
        Value::Object(m)
    }

    pub fn from_fields_v1(v: &Value) -> Result<Set, DecodeError> {
        let Value::Object(m) = v else {
            return Err(DecodeError("expected an object".into()));
        };
        let mut s = Set::default();
        for (k, child) in m {
            if k == "." {
                continue;
            }
            check_element(k)?;
            let Value::Object(cm) = child else {
                return Err(DecodeError(format!("{k}: expected an object")));
            };
            if cm.is_empty() || cm.contains_key(".") {
                s.members.insert(k.clone());
            }
            if cm.keys().any(|ck| ck != ".") {
                let c = Set::from_fields_v1(child)?;
                if !c.is_empty() {
                    s.children.insert(k.clone(), c);
                }
            }
        }
        Ok(s)
    }
}

fn check_element(k: &str) -> Result<(), DecodeError> {
    let Some((kind, rest)) = k.split_once(':') else {
        return Err(DecodeError(format!("unknown path element {k:?}")));
    };
    let ok = match kind {
        "f" => true,
        "k" => serde_json::from_str::<Map<String, Value>>(rest).is_ok(),
        "v" => serde_json::from_str::<Value>(rest).is_ok(),
        "i" => rest.parse::<usize>().is_ok(),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(DecodeError(format!("unknown path element {k:?}")))
    }
}

/// `f:<name>`.
pub fn field(name: &str) -> String {
    let mut s = String::with_capacity(name.len() + 2);
    s.push_str("f:");
    s.push_str(name);
    s
}

/// `k:{...}` for a list-map item with these key fields (sorted by name).
pub fn key(fields: &[(&str, &Value)]) -> String {
    let mut sorted: Vec<&(&str, &Value)> = fields.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut s = String::from("k:{");
    for (i, (k, v)) in sorted.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&Value::from(*k).to_string());
        s.push(':');
        s.push_str(&v.to_string());
    }
    s.push('}');
    s
}

/// `v:<json>` for a set item.
pub fn value(v: &Value) -> String {
    format!("v:{v}")
}

/// `i:<n>` for a list index.
pub fn index(i: usize) -> String {
    format!("i:{i}")
}

/// A path as upstream prints it in conflicts: `.spec.containers[name="app"].image`.
pub fn display(path: &[String]) -> String {
    let mut out = String::new();
    for pe in path {
        let (kind, rest) = pe.split_once(':').unwrap_or(("f", pe.as_str()));
        match kind {
            "f" => {
                out.push('.');
                out.push_str(rest);
            }
            "k" => {
                out.push('[');
                if let Ok(m) = serde_json::from_str::<Map<String, Value>>(rest) {
                    let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    out.push_str(&parts.join(","));
                }
                out.push(']');
            }
            "v" => {
                out.push_str("[=");
                out.push_str(rest);
                out.push(']');
            }
            _ => {
                out.push('[');
                out.push_str(rest);
                out.push(']');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    fn set(paths: &[&[&str]]) -> Set {
        let mut s = Set::new();
        for path in paths {
            s.insert(&p(path));
        }
        s
    }

    #[test]
    fn fields_v1_round_trip_with_dot() {
        let s = set(&[
            &["f:metadata", "f:labels"],
            &["f:metadata", "f:labels", "f:app"],
            &["f:spec", "f:replicas"],
            &["f:spec", "f:containers", "k:{\"name\":\"a\"}"],
            &["f:spec", "f:containers", "k:{\"name\":\"a\"}", "f:image"],
            &["f:metadata", "f:finalizers", "v:\"x\""],
        ]);
        let v = s.to_fields_v1();
        assert_eq!(
            v,
            json!({
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}, "f:finalizers": {"v:\"x\"": {}}},
                "f:spec": {"f:replicas": {}, "f:containers": {"k:{\"name\":\"a\"}": {".": {}, "f:image": {}}}},
            })
        );
        assert_eq!(Set::from_fields_v1(&v).unwrap(), s);
        assert!(Set::from_fields_v1(&json!({"x:y": {}})).is_err());
        assert!(Set::from_fields_v1(&json!({"f:a": 1})).is_err());
        assert!(Set::from_fields_v1(&json!({"k:notjson": {}})).is_err());
    }

    #[test]
    fn algebra() {
        // (left, right, union, difference, intersection)
        let cases: Vec<(Set, Set, Set, Set, Set)> = vec![
            (
                set(&[&["f:a"], &["f:b", "f:c"]]),
                set(&[&["f:b", "f:c"], &["f:d"]]),
                set(&[&["f:a"], &["f:b", "f:c"], &["f:d"]]),
                set(&[&["f:a"]]),
                set(&[&["f:b", "f:c"]]),
            ),
            (
                // A parent in one set does not cover children in the other.
                set(&[&["f:m"], &["f:m", "f:x"]]),
                set(&[&["f:m"]]),
                set(&[&["f:m"], &["f:m", "f:x"]]),
                set(&[&["f:m", "f:x"]]),
                set(&[&["f:m"]]),
            ),
            (
                Set::new(),
                set(&[&["f:a"]]),
                set(&[&["f:a"]]),
                Set::new(),
                Set::new(),
            ),
        ];
        for (l, r, u, d, i) in cases {
            assert_eq!(l.union(&r), u);
            assert_eq!(l.difference(&r), d);
            assert_eq!(l.intersection(&r), i);
        }
    }

    #[test]
    fn prefixes() {
        let mut s = set(&[&["f:status"], &["f:status", "f:x"], &["f:spec", "f:a"]]);
        assert_eq!(
            s.keep_prefix(&["f:status"]),
            set(&[&["f:status"], &["f:status", "f:x"]])
        );
        s.remove_prefix(&["f:status"]);
        assert_eq!(s, set(&[&["f:spec", "f:a"]]));
        s.remove_prefix(&["f:spec", "f:a"]);
        assert!(s.is_empty());
    }

    #[test]
    fn display_and_keys() {
        let k = key(&[("protocol", &json!("TCP")), ("containerPort", &json!(80))]);
        assert_eq!(k, "k:{\"containerPort\":80,\"protocol\":\"TCP\"}");
        assert_eq!(
            display(&p(&["f:spec", "f:ports", &k, "f:name"])),
            ".spec.ports[containerPort=80,protocol=\"TCP\"].name"
        );
        assert_eq!(
            display(&p(&["f:metadata", "f:finalizers", "v:\"a\""])),
            ".metadata.finalizers[=\"a\"]"
        );
        assert_eq!(display(&p(&["f:spec", "f:replicas"])), ".spec.replicas");
        let s = set(&[&["f:b"], &["f:a", "f:x"], &["f:a"]]);
        assert_eq!(
            s.paths(),
            vec![p(&["f:a"]), p(&["f:a", "f:x"]), p(&["f:b"])]
        );
    }
}
