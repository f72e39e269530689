//! Kubernetes' format library (k8s.io/apiserver/pkg/cel/library/format.go):
//! `format.dns1123Label()` and the other named formats, `format.named(n)`
//! (an optional format) and `f.validate(s)`, which is `optional.none()`
//! for a valid string and an optional list of the problems otherwise.

use std::sync::Arc;

use base64::Engine;
use cel::common::types::{STRING_TYPE, Type};
use cel::common::value::{CowVal, Val};
use cel::objects::{Opaque, OptionalValue};
use cel::{DeclarationError, Env, ExecutionError, Value};

use crate::registry::names;

const FORMAT: &str = "kubernetes.NamedFormat";

fn format_type() -> Type {
    Type::new_opaque_type(FORMAT)
}

/// A named format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    name: &'static str,
}

impl Opaque for Format {
    fn runtime_type_name(&self) -> &str {
        FORMAT
    }
}

/// The formats, by the names rules call them with.
const NAMES: &[&str] = &[
    "dns1123Label",
    "dns1123Subdomain",
    "dns1035Label",
    "qualifiedName",
    "dns1123LabelPrefix",
    "dns1123SubdomainPrefix",
    "dns1035LabelPrefix",
    "labelValue",
    "uri",
    "uuid",
    "byte",
    "date",
    "datetime",
];

/// A generateName prefix is checked without its trailing dash, as
/// apimachinery's MaskTrailingDash.
fn masked(s: &str) -> &str {
    if s.len() > 1 {
        s.strip_suffix('-').unwrap_or(s)
    } else {
        s
    }
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The problems with `s` in format `name` (none: valid).
pub fn problems(name: &str, s: &str) -> Vec<String> {
    match name {
        "dns1123Label" => names::is_dns1123_label(s),
        "dns1123Subdomain" => names::is_dns1123_subdomain(s),
        "dns1035Label" => names::is_dns1035_label(s),
        "qualifiedName" => names::is_qualified_name(s),
        "dns1123LabelPrefix" => names::is_dns1123_label(masked(s)),
        "dns1123SubdomainPrefix" => names::is_dns1123_subdomain(masked(s)),
        "dns1035LabelPrefix" => names::is_dns1035_label(masked(s)),
        "labelValue" => names::is_valid_label_value(s),
        // Go's url.ParseRequestURI: an absolute URI or an absolute path.
        "uri" => {
            if url::Url::parse(s).is_ok() || s.starts_with('/') {
                Vec::new()
            } else {
                vec![format!("parse \"{s}\": invalid URI for request")]
            }
        }
        "uuid" if !is_uuid(s) => vec!["does not match the UUID format".into()],
        "byte" if base64::engine::general_purpose::STANDARD.decode(s).is_err() => {
            vec!["invalid base64".into()]
        }
        "date" if s.parse::<jiff::civil::Date>().is_err() => vec!["invalid date".into()],
        "datetime" if s.parse::<jiff::Timestamp>().is_err() => vec!["invalid datetime".into()],
        _ => Vec::new(),
    }
}

type Args<'b, 'v> = Vec<CowVal<'b, 'v>>;
type Ret<'b, 'v> = Result<CowVal<'b, 'v>, ExecutionError>;

fn values(args: &Args) -> Result<Vec<Value>, ExecutionError> {
    args.iter()
        .map(|a| Value::try_from(a.as_ref() as &dyn Val))
        .collect()
}

fn out<'b, 'v>(v: Value) -> Ret<'b, 'v> {
    let b: Box<dyn Val> = v.try_into()?;
    Ok(CowVal::from(b))
}

fn constant<'b, 'v>(name: &'static str) -> Ret<'b, 'v> {
    out(Value::Opaque(Arc::new(Format { name })))
}

macro_rules! constants {
    ($($f:ident => $name:literal),* $(,)?) => {
        $(fn $f<'b, 'v>(_: Args<'b, 'v>) -> Ret<'b, 'v> { constant($name) })*
        const CONSTANTS: &[(&str, cel::common::functions::Function)] = &[$(($name, $f)),*];
    };
}

constants! {
    dns1123_label => "dns1123Label",
    dns1123_subdomain => "dns1123Subdomain",
    dns1035_label => "dns1035Label",
    qualified_name => "qualifiedName",
    dns1123_label_prefix => "dns1123LabelPrefix",
    dns1123_subdomain_prefix => "dns1123SubdomainPrefix",
    dns1035_label_prefix => "dns1035LabelPrefix",
    label_value => "labelValue",
    uri => "uri",
    uuid => "uuid",
    byte => "byte",
    date => "date",
    datetime => "datetime",
}

fn named<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    let v = values(&args)?;
    let Some(Value::String(n)) = v.first() else {
        return Err(ExecutionError::function_error(
            "format.named",
            "expected a string",
        ));
    };
    let opt = match NAMES.iter().find(|x| **x == n.as_str()) {
        Some(name) => OptionalValue::of(Value::Opaque(Arc::new(Format { name }))),
        None => OptionalValue::none(),
    };
    out(Value::Opaque(Arc::new(opt)))
}

fn validate<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    let v = values(&args)?;
    let (Some(Value::Opaque(f)), Some(Value::String(s))) = (v.first(), v.get(1)) else {
        return Err(ExecutionError::function_error(
            "validate",
            "expected a format and a string",
        ));
    };
    let Some(f) = f.downcast_ref::<Format>() else {
        return Err(ExecutionError::function_error(
            "validate",
            "expected a format",
        ));
    };
    let found = problems(f.name, s);
    let opt = if found.is_empty() {
        OptionalValue::none()
    } else {
        OptionalValue::of(Value::List(Arc::new(
            found
                .into_iter()
                .map(|p| Value::String(Arc::new(p)))
                .collect(),
        )))
    };
    out(Value::Opaque(Arc::new(opt)))
}

/// Adds the library to `env`.
pub fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_type(format_type())?;
    for (name, f) in CONSTANTS {
        env.add_overload(
            &format!("format.{name}"),
            &format!("format_{name}"),
            vec![],
            *f,
        )?;
    }
    env.add_overload("format.named", "format_named", vec![STRING_TYPE], named)?;
    env.add_member_overload(
        "validate",
        "format_validate",
        format_type(),
        vec![STRING_TYPE],
        validate,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    fn run(src: &str) -> Result<serde_json::Value, crate::cel::CelError> {
        let p = crate::cel::compile_with(src, &["self"])?;
        crate::cel::eval(&p, &[("self", &serde_json::json!("My_Name"))])
    }

    #[test]
    fn named_formats_validate_strings() {
        use serde_json::json;
        assert_eq!(
            run("format.dns1123Label().validate('my-name').hasValue()"),
            Ok(json!(false))
        );
        assert_eq!(
            run("format.dns1123Label().validate(self).hasValue()"),
            Ok(json!(true))
        );
        let errs = run("format.dns1123Label().validate(self).value()").unwrap();
        assert!(
            errs[0]
                .as_str()
                .unwrap()
                .contains("a lowercase RFC 1123 label must consist of")
        );
        assert_eq!(run("format.named('uuid').hasValue()"), Ok(json!(true)));
        assert_eq!(run("format.named('nope').hasValue()"), Ok(json!(false)));
        assert_eq!(
            run(
                "format.named('uuid').value().validate('123e4567-e89b-12d3-a456-426614174000').hasValue()"
            ),
            Ok(json!(false))
        );
        assert_eq!(
            run("format.dns1123LabelPrefix().validate('abc-').hasValue()"),
            Ok(json!(false))
        );
        assert_eq!(
            run("format.datetime().validate('2020-01-01').hasValue()"),
            Ok(json!(true))
        );
    }
}
