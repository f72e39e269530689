//! The JSONPath subset CRDs use in additionalPrinterColumns and scale paths:
//! `.a.b`, `.a[0]`, `.a[*].b`, `['a.b']` and filters such as
//! `.status.conditions[?(@.type=="Ready")].status` (kubectl's syntax, without
//! the surrounding braces).

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    All,
    /// `[?(@.a.b == "v")]` or `!=`; no operator = the field exists.
    Filter {
        path: Vec<String>,
        op: Option<(bool, Value)>,
    },
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

impl JsonPath {
    pub fn parse(src: &str) -> Result<JsonPath, String> {
        let s = src.trim();
        let s = s
            .strip_prefix('{')
            .and_then(|x| x.strip_suffix('}'))
            .unwrap_or(s);
        let s = s.strip_prefix('$').unwrap_or(s);
        let b = s.as_bytes();
        let mut i = 0;
        let mut steps = Vec::new();
        if s.is_empty() {
            return Err("empty path".into());
        }
        while i < b.len() {
            match b[i] {
                b'.' => {
                    let start = i + 1;
                    let mut j = start;
                    while j < b.len() && b[j] != b'.' && b[j] != b'[' {
                        j += 1;
                    }
                    if j == start {
                        return Err(format!("invalid path {src:?}: empty field name"));
                    }
                    steps.push(Step::Field(s[start..j].to_string()));
                    i = j;
                }
                b'[' => {
                    let close = find_close(s, i).ok_or_else(|| format!("unclosed [ in {src:?}"))?;
                    let inner = s[i + 1..close].trim();
                    steps.push(bracket(inner).map_err(|e| format!("invalid path {src:?}: {e}"))?);
                    i = close + 1;
                }
                _ => return Err(format!("invalid path {src:?}: must start with a dot")),
            }
        }
        Ok(JsonPath { steps })
    }

    /// A path of plain field names (`.metadata.creationTimestamp`).
    pub fn of_fields(names: &[&str]) -> JsonPath {
        JsonPath {
            steps: names.iter().map(|n| Step::Field(n.to_string())).collect(),
        }
    }

    /// Every value the path selects, in document order.
    pub fn find<'a>(&self, v: &'a Value) -> Vec<&'a Value> {
        let mut cur = vec![v];
        for step in &self.steps {
            let mut next = Vec::new();
            for x in cur {
                match step {
                    Step::Field(f) => {
                        if let Some(c) = x.get(f.as_str()) {
                            next.push(c);
                        }
                    }
                    Step::Index(n) => {
                        if let Some(a) = x.as_array() {
                            let idx = if *n < 0 { a.len() as i64 + n } else { *n };
                            if idx >= 0
                                && let Some(c) = a.get(idx as usize)
                            {
                                next.push(c);
                            }
                        }
                    }
                    Step::All => match x {
                        Value::Array(a) => next.extend(a.iter()),
                        Value::Object(m) => next.extend(m.values()),
                        _ => {}
                    },
                    Step::Filter { path, op } => {
                        if let Some(a) = x.as_array() {
                            for item in a {
                                let mut f = Some(item);
                                for p in path {
                                    f = f.and_then(|y| y.get(p.as_str()));
                                }
                                let keep = match (f, op) {
                                    (None, _) => false,
                                    (Some(_), None) => true,
                                    (Some(y), Some((eq, want))) => (loose_eq(y, want)) == *eq,
                                };
                                if keep {
                                    next.push(item);
                                }
                            }
                        }
                    }
                }
            }
            cur = next;
        }
        cur
    }

    /// For simple dotted paths (scale subresource): the field names.
    pub fn simple_fields(&self) -> Option<Vec<&str>> {
        self.steps
            .iter()
            .map(|s| match s {
                Step::Field(f) => Some(f.as_str()),
                _ => None,
            })
            .collect()
    }
}

fn loose_eq(have: &Value, want: &Value) -> bool {
    match (have, want) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => have == want,
    }
}

fn find_close(s: &str, open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (i, c) in s[open..].char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + i);
                }
            }
            _ => {}
        }
    }
    None
}

fn unquote(s: &str) -> Option<&str> {
    let s = s.trim();
    s.strip_prefix('\'')
        .and_then(|x| x.strip_suffix('\''))
        .or_else(|| s.strip_prefix('"').and_then(|x| x.strip_suffix('"')))
}

fn bracket(inner: &str) -> Result<Step, String> {
    if inner == "*" {
        return Ok(Step::All);
    }
    if let Some(k) = unquote(inner) {
        return Ok(Step::Field(k.to_string()));
    }
    if let Ok(n) = inner.parse::<i64>() {
        return Ok(Step::Index(n));
    }
    let Some(f) = inner
        .strip_prefix("?(")
        .and_then(|x| x.strip_suffix(')'))
        .map(str::trim)
    else {
        return Err(format!("unsupported expression [{inner}]"));
    };
    let (lhs, op) = match f.split_once("==") {
        Some((l, r)) => (l, Some((true, r))),
        None => match f.split_once("!=") {
            Some((l, r)) => (l, Some((false, r))),
            None => (f, None),
        },
    };
    let Some(rest) = lhs.trim().strip_prefix('@') else {
        return Err(format!("filter must start with @: [{inner}]"));
    };
    let path: Vec<String> = rest
        .split('.')
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect();
    let op = match op {
        None => None,
        Some((eq, r)) => {
            let r = r.trim();
            let v = match unquote(r) {
                Some(s) => Value::String(s.to_string()),
                None => serde_json::from_str(r).map_err(|_| format!("bad literal {r}"))?,
            };
            Some((eq, v))
        }
    };
    Ok(Step::Filter { path, op })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_select_as_kubectl_does() {
        let o = json!({"spec": {"a.b": 1, "list": [{"n": 1}, {"n": 2}]},
            "status": {"conditions": [{"type": "Issuing", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        let f = |p: &str| {
            JsonPath::parse(p)
                .unwrap()
                .find(&o)
                .into_iter()
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(f(".spec['a.b']"), vec![json!(1)]);
        assert_eq!(f(".spec.list[1].n"), vec![json!(2)]);
        assert_eq!(f(".spec.list[-1].n"), vec![json!(2)]);
        assert_eq!(f(".spec.list[*].n"), vec![json!(1), json!(2)]);
        assert_eq!(
            f(".status.conditions[?(@.type==\"Ready\")].status"),
            vec![json!("True")]
        );
        assert_eq!(
            f(".status.conditions[?(@.type=='Issuing')].status"),
            vec![json!("False")]
        );
        assert!(f(".spec.missing").is_empty());
        assert!(JsonPath::parse("spec").is_err());
        assert!(JsonPath::parse(".spec[").is_err());
        assert_eq!(
            JsonPath::parse(".spec.replicas").unwrap().simple_fields(),
            Some(vec!["spec", "replicas"])
        );
    }
}
