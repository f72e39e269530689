//! Kubernetes' CEL libraries (k8s.io/apiserver/pkg/cel/library) beyond
//! what cel-rust's extensions provide: list functions (`isSorted`, `sum`,
//! `min`, `max`, `indexOf`, `lastIndexOf`), regex (`find`, `findAll`),
//! URLs (`url`, `isURL` and the getters) and quantities (`quantity`,
//! `isQuantity`, comparisons and arithmetic).

use std::cmp::Ordering;
use std::sync::Arc;

use cel::common::types::{DYN_TYPE, INT_TYPE, LIST_TYPE, STRING_TYPE, Type};
use cel::common::value::{CowVal, Val};
use cel::objects::Opaque;
use cel::{DeclarationError, Env, ExecutionError, Value};

use crate::registry::strategy::kinds::quantity as q;

const QUANTITY: &str = "kubernetes.Quantity";
const URL: &str = "kubernetes.URL";

fn quantity_type() -> Type {
    Type::new_opaque_type(QUANTITY)
}

fn url_type() -> Type {
    Type::new_opaque_type(URL)
}

/// Adds the libraries' overloads to `env`.
pub fn register(env: &mut Env) -> Result<(), DeclarationError> {
    // Lists.
    env.add_member_overload("isSorted", "list_is_sorted", LIST_TYPE, vec![], is_sorted)?;
    env.add_member_overload("sum", "list_sum", LIST_TYPE, vec![], sum)?;
    env.add_member_overload("min", "list_min", LIST_TYPE, vec![], min)?;
    env.add_member_overload("max", "list_max", LIST_TYPE, vec![], max)?;
    env.add_member_overload(
        "indexOf",
        "list_index_of",
        LIST_TYPE,
        vec![DYN_TYPE],
        index_of,
    )?;
    env.add_member_overload(
        "lastIndexOf",
        "list_last_index_of",
        LIST_TYPE,
        vec![DYN_TYPE],
        last_index_of,
    )?;
    // Regex.
    env.add_member_overload("find", "string_find", STRING_TYPE, vec![STRING_TYPE], find)?;
    env.add_member_overload(
        "findAll",
        "string_find_all",
        STRING_TYPE,
        vec![STRING_TYPE],
        find_all,
    )?;
    env.add_member_overload(
        "findAll",
        "string_find_all_n",
        STRING_TYPE,
        vec![STRING_TYPE, INT_TYPE],
        find_all_n,
    )?;
    // Quantities.
    env.add_type(quantity_type())?;
    env.add_overload(
        "quantity",
        "string_to_quantity",
        vec![STRING_TYPE],
        quantity,
    )?;
    env.add_overload(
        "isQuantity",
        "is_quantity_string",
        vec![STRING_TYPE],
        is_quantity,
    )?;
    let qt = quantity_type;
    env.add_member_overload(
        "isGreaterThan",
        "quantity_is_greater_than",
        qt(),
        vec![qt()],
        q_greater,
    )?;
    env.add_member_overload(
        "isLessThan",
        "quantity_is_less_than",
        qt(),
        vec![qt()],
        q_less,
    )?;
    env.add_member_overload(
        "compareTo",
        "quantity_compare_to",
        qt(),
        vec![qt()],
        q_compare,
    )?;
    env.add_member_overload("add", "quantity_add", qt(), vec![qt()], q_add)?;
    env.add_member_overload("add", "quantity_add_int", qt(), vec![INT_TYPE], q_add)?;
    env.add_member_overload("sub", "quantity_sub", qt(), vec![qt()], q_sub)?;
    env.add_member_overload("sub", "quantity_sub_int", qt(), vec![INT_TYPE], q_sub)?;
    env.add_member_overload("sign", "quantity_sign", qt(), vec![], q_sign)?;
    env.add_member_overload(
        "isInteger",
        "quantity_is_integer",
        qt(),
        vec![],
        q_is_integer,
    )?;
    env.add_member_overload(
        "asInteger",
        "quantity_as_integer",
        qt(),
        vec![],
        q_as_integer,
    )?;
    env.add_member_overload(
        "asApproximateFloat",
        "quantity_as_approximate_float",
        qt(),
        vec![],
        q_as_float,
    )?;
    // URLs.
    env.add_type(url_type())?;
    env.add_overload("url", "string_to_url", vec![STRING_TYPE], url)?;
    env.add_overload("isURL", "is_url_string", vec![STRING_TYPE], is_url)?;
    let ut = url_type;
    env.add_member_overload("getScheme", "url_get_scheme", ut(), vec![], url_scheme)?;
    env.add_member_overload("getHost", "url_get_host", ut(), vec![], url_host)?;
    env.add_member_overload(
        "getHostname",
        "url_get_hostname",
        ut(),
        vec![],
        url_hostname,
    )?;
    env.add_member_overload("getPort", "url_get_port", ut(), vec![], url_port)?;
    env.add_member_overload(
        "getEscapedPath",
        "url_get_escaped_path",
        ut(),
        vec![],
        url_path,
    )?;
    env.add_member_overload("getQuery", "url_get_query", ut(), vec![], url_query)?;
    Ok(())
}

type Args<'b, 'v> = Vec<CowVal<'b, 'v>>;
type Ret<'b, 'v> = Result<CowVal<'b, 'v>, ExecutionError>;

/// Runs `f` on the arguments as `Value`s and hands its result back.
fn lift<'b, 'v>(
    args: Args<'b, 'v>,
    f: impl FnOnce(Vec<Value>) -> Result<Value, ExecutionError>,
) -> Ret<'b, 'v> {
    let vals = args
        .iter()
        .map(|a| Value::try_from(a.as_ref() as &dyn Val))
        .collect::<Result<Vec<_>, _>>()?;
    let out: Box<dyn Val> = f(vals)?.try_into()?;
    Ok(CowVal::from(out))
}

fn list_of<'a>(function: &str, v: &'a [Value]) -> Result<&'a [Value], ExecutionError> {
    match v.first() {
        Some(Value::List(l)) => Ok(l.as_slice()),
        _ => Err(ExecutionError::function_error(function, "expected a list")),
    }
}

/// Orders two list elements of one comparable type, as the library
/// requires (`[1, 'a'].isSorted()` is an error).
fn order(function: &str, a: &Value, b: &Value) -> Result<Ordering, ExecutionError> {
    if let (Value::Opaque(x), Value::Opaque(y)) = (a, b)
        && let (Some(x), Some(y)) = (x.downcast_ref::<Quantity>(), y.downcast_ref::<Quantity>())
    {
        return Ok(x.nanos.cmp(&y.nanos));
    }
    if std::mem::discriminant(a) != std::mem::discriminant(b) {
        return Err(ExecutionError::function_error(
            function,
            format!("no such overload: {} and {}", a.type_of(), b.type_of()),
        ));
    }
    a.partial_cmp(b).ok_or_else(|| {
        ExecutionError::function_error(function, format!("{} is not comparable", a.type_of()))
    })
}

fn is_sorted<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    lift(args, |v| {
        let l = list_of("isSorted", &v)?;
        for w in l.windows(2) {
            if order("isSorted", &w[0], &w[1])? == Ordering::Greater {
                return Ok(Value::Bool(false));
            }
        }
        Ok(Value::Bool(true))
    })
}

fn sum<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    lift(args, |v| {
        let l = list_of("sum", &v)?;
        let mut acc = match l.first() {
            Some(Value::Float(_)) => Value::Float(0.0),
            Some(Value::UInt(_)) => Value::UInt(0),
            _ => Value::Int(0),
        };
        for x in l {
            acc = match (&acc, x) {
                (Value::Int(a), Value::Int(b)) => Value::Int(
                    a.checked_add(*b)
                        .ok_or_else(|| ExecutionError::function_error("sum", "integer overflow"))?,
                ),
                (Value::UInt(a), Value::UInt(b)) => {
                    Value::UInt(a.checked_add(*b).ok_or_else(|| {
                        ExecutionError::function_error("sum", "unsigned integer overflow")
                    })?)
                }
                (Value::Float(a), Value::Float(b)) => Value::Float(a + b),
                (_, other) => {
                    return Err(ExecutionError::function_error(
                        "sum",
                        format!("no such overload: sum of {}", other.type_of()),
                    ));
                }
            };
        }
        Ok(acc)
    })
}

fn extreme<'b, 'v>(args: Args<'b, 'v>, function: &'static str, keep: Ordering) -> Ret<'b, 'v> {
    lift(args, |v| {
        let l = list_of(function, &v)?;
        let mut best = l.first().ok_or_else(|| {
            ExecutionError::function_error(function, format!("{function} called on empty list"))
        })?;
        for x in &l[1..] {
            if order(function, x, best)? == keep {
                best = x;
            }
        }
        Ok(best.clone())
    })
}

fn min<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    extreme(args, "min", Ordering::Less)
}

fn max<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    extreme(args, "max", Ordering::Greater)
}

fn index_of<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    lift(args, |v| {
        let l = list_of("indexOf", &v)?;
        let pos = l.iter().position(|x| Some(x) == v.get(1));
        Ok(Value::Int(pos.map_or(-1, |p| p as i64)))
    })
}

fn last_index_of<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    lift(args, |v| {
        let l = list_of("lastIndexOf", &v)?;
        let pos = l.iter().rposition(|x| Some(x) == v.get(1));
        Ok(Value::Int(pos.map_or(-1, |p| p as i64)))
    })
}

fn string_arg<'a>(function: &str, v: &'a [Value], i: usize) -> Result<&'a str, ExecutionError> {
    match v.get(i) {
        Some(Value::String(s)) => Ok(s.as_str()),
        _ => Err(ExecutionError::function_error(
            function,
            "expected a string",
        )),
    }
}

fn regex(function: &str, pattern: &str) -> Result<regex::Regex, ExecutionError> {
    regex::Regex::new(pattern).map_err(|e| ExecutionError::function_error(function, e))
}

fn find<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    lift(args, |v| {
        let re = regex("find", string_arg("find", &v, 1)?)?;
        let s = string_arg("find", &v, 0)?;
        Ok(Value::from(re.find(s).map_or("", |m| m.as_str())))
    })
}

fn find_all_limited(v: &[Value], limit: Option<i64>) -> Result<Value, ExecutionError> {
    let re = regex("findAll", string_arg("findAll", v, 1)?)?;
    let s = string_arg("findAll", v, 0)?;
    let all = re.find_iter(s).map(|m| Value::from(m.as_str()));
    let found: Vec<Value> = match limit {
        Some(n) if n >= 0 => all.take(n as usize).collect(),
        _ => all.collect(),
    };
    Ok(Value::List(Arc::new(found)))
}

fn find_all<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    lift(args, |v| find_all_limited(&v, None))
}

fn find_all_n<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    lift(args, |v| {
        let n = match v.get(2) {
            Some(Value::Int(n)) => *n,
            _ => -1,
        };
        find_all_limited(&v, Some(n))
    })
}

/// A resource.Quantity in CEL: its text and its value in nano-units.
#[derive(Debug, Clone)]
pub struct Quantity {
    text: String,
    nanos: i128,
}

impl PartialEq for Quantity {
    // Quantities are equal by value: quantity('1') == quantity('1000m').
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl std::fmt::Display for Quantity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Opaque for Quantity {
    fn runtime_type_name(&self) -> &str {
        QUANTITY
    }
}

const NANO: i128 = 1_000_000_000;

impl Quantity {
    fn parse(s: &str) -> Option<Quantity> {
        q::parse(s).ok().map(|v| Quantity {
            text: s.to_string(),
            nanos: v.0,
        })
    }

    fn of_nanos(nanos: i128) -> Quantity {
        let text = if nanos % NANO == 0 {
            (nanos / NANO).to_string()
        } else if nanos % 1_000_000 == 0 {
            format!("{}m", nanos / 1_000_000)
        } else if nanos % 1_000 == 0 {
            format!("{}u", nanos / 1_000)
        } else {
            format!("{nanos}n")
        };
        Quantity { text, nanos }
    }
}

fn quantity_arg<'a>(
    function: &str,
    v: &'a [Value],
    i: usize,
) -> Result<&'a Quantity, ExecutionError> {
    match v.get(i) {
        Some(Value::Opaque(o)) => o.downcast_ref::<Quantity>(),
        _ => None,
    }
    .ok_or_else(|| ExecutionError::function_error(function, "expected a quantity"))
}

fn opaque(o: impl Opaque) -> Value {
    Value::Opaque(Arc::new(o))
}

fn quantity<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    lift(args, |v| {
        let s = string_arg("quantity", &v, 0)?;
        Quantity::parse(s)
            .map(opaque)
            .ok_or_else(|| ExecutionError::function_error("quantity", q::FORMAT_ERROR))
    })
}

fn is_quantity<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    lift(args, |v| {
        Ok(Value::Bool(
            Quantity::parse(string_arg("isQuantity", &v, 0)?).is_some(),
        ))
    })
}

fn q_cmp(v: &[Value], function: &str) -> Result<Ordering, ExecutionError> {
    Ok(quantity_arg(function, v, 0)?
        .nanos
        .cmp(&quantity_arg(function, v, 1)?.nanos))
}

fn q_greater<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    lift(args, |v| {
        Ok(Value::Bool(
            q_cmp(&v, "isGreaterThan")? == Ordering::Greater,
        ))
    })
}

fn q_less<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    lift(args, |v| {
        Ok(Value::Bool(q_cmp(&v, "isLessThan")? == Ordering::Less))
    })
}

fn q_compare<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    lift(args, |v| {
        Ok(Value::Int(match q_cmp(&v, "compareTo")? {
            Ordering::Less => -1,
            Ordering::Equal => 0,
            Ordering::Greater => 1,
        }))
    })
}

/// The second operand of add/sub: a quantity or an integer.
fn operand(function: &str, v: &[Value]) -> Result<i128, ExecutionError> {
    match v.get(1) {
        Some(Value::Int(i)) => Ok(i128::from(*i) * NANO),
        _ => Ok(quantity_arg(function, v, 1)?.nanos),
    }
}

fn q_add<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    lift(args, |v| {
        let a = quantity_arg("add", &v, 0)?.nanos;
        Ok(opaque(Quantity::of_nanos(
            a.saturating_add(operand("add", &v)?),
        )))
    })
}

fn q_sub<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    lift(args, |v| {
        let a = quantity_arg("sub", &v, 0)?.nanos;
        Ok(opaque(Quantity::of_nanos(
            a.saturating_sub(operand("sub", &v)?),
        )))
    })
}

fn q_sign<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    lift(args, |v| {
        Ok(Value::Int(
            quantity_arg("sign", &v, 0)?.nanos.signum() as i64
        ))
    })
}

fn q_is_integer<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    lift(args, |v| {
        let n = quantity_arg("isInteger", &v, 0)?.nanos;
        Ok(Value::Bool(
            n % NANO == 0 && i64::try_from(n / NANO).is_ok(),
        ))
    })
}

fn q_as_integer<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    lift(args, |v| {
        let n = quantity_arg("asInteger", &v, 0)?.nanos;
        if n % NANO != 0 {
            return Err(ExecutionError::function_error(
                "asInteger",
                "cannot convert value to integer",
            ));
        }
        i64::try_from(n / NANO).map(Value::Int).map_err(|_| {
            ExecutionError::function_error("asInteger", "cannot convert value to integer")
        })
    })
}

fn q_as_float<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    lift(args, |v| {
        Ok(Value::Float(
            quantity_arg("asApproximateFloat", &v, 0)?.nanos as f64 / NANO as f64,
        ))
    })
}

/// A URL as Go's url.ParseRequestURI accepts it: absolute (scheme://...)
/// or an absolute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    scheme: String,
    host: String,
    path: String,
    query: String,
}

impl Opaque for Url {
    fn runtime_type_name(&self) -> &str {
        URL
    }
}

impl Url {
    fn parse(s: &str) -> Option<Url> {
        let s = s.split_once('#').map_or(s, |(a, _)| a);
        if s.starts_with('/') {
            let (path, query) = s.split_once('?').unwrap_or((s, ""));
            return Some(Url {
                scheme: String::new(),
                host: String::new(),
                path: path.to_string(),
                query: query.to_string(),
            });
        }
        let u = url::Url::parse(s).ok()?;
        // Go keeps the host as written (with its port), and an empty path.
        let host = match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => String::new(),
        };
        let path = if u.cannot_be_a_base()
            || (u.path() == "/" && !s.ends_with('/') && !s.contains("/?"))
        {
            String::new()
        } else {
            u.path().to_string()
        };
        Some(Url {
            scheme: u.scheme().to_string(),
            host,
            path,
            query: u.query().unwrap_or("").to_string(),
        })
    }

    fn hostname(&self) -> &str {
        if let Some(rest) = self.host.strip_prefix('[') {
            return rest.split(']').next().unwrap_or("");
        }
        self.host.rsplit_once(':').map_or(&self.host, |(h, _)| h)
    }

    fn port(&self) -> &str {
        if self.host.starts_with('[') {
            return self.host.rsplit_once("]:").map_or("", |(_, p)| p);
        }
        self.host.rsplit_once(':').map_or("", |(_, p)| p)
    }
}

fn url<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    lift(args, |v| {
        let s = string_arg("url", &v, 0)?;
        Url::parse(s)
            .map(opaque)
            .ok_or_else(|| ExecutionError::function_error("url", format!("URL parse error during conversion from string: parse {s:?}: invalid URI for request")))
    })
}

fn is_url<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    lift(args, |v| {
        Ok(Value::Bool(
            Url::parse(string_arg("isURL", &v, 0)?).is_some(),
        ))
    })
}

fn url_part<'b, 'v>(args: Args<'b, 'v>, function: &str, part: fn(&Url) -> &str) -> Ret<'b, 'v> {
    lift(args, |v| match v.first() {
        Some(Value::Opaque(o)) => o
            .downcast_ref::<Url>()
            .map(|u| Value::from(part(u)))
            .ok_or_else(|| ExecutionError::function_error(function, "expected a URL")),
        _ => Err(ExecutionError::function_error(function, "expected a URL")),
    })
}

fn url_scheme<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    url_part(args, "getScheme", |u| &u.scheme)
}
fn url_host<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    url_part(args, "getHost", |u| &u.host)
}
fn url_hostname<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    url_part(args, "getHostname", Url::hostname)
}
fn url_port<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    url_part(args, "getPort", Url::port)
}
fn url_path<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    url_part(args, "getEscapedPath", |u| &u.path)
}
fn url_query<'b, 'v>(args: Args<'b, 'v>) -> Ret<'b, 'v> {
    url_part(args, "getQuery", |u| &u.query)
}

#[cfg(test)]
mod tests {
    use crate::cel::{compile, eval};
    use serde_json::{Value, json};

    fn run(src: &str) -> Value {
        let p = compile(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        eval(&p, &[]).unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    fn fails(src: &str) -> String {
        let p = compile(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        match eval(&p, &[]) {
            Ok(v) => panic!("{src} gave {v}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn strings() {
        assert_eq!(run("'TacoCat'.lowerAscii()"), json!("tacocat"));
        assert_eq!(run("'TacoCat'.upperAscii()"), json!("TACOCAT"));
        assert_eq!(run("'  x '.trim()"), json!("x"));
        assert_eq!(run("'a,b,c'.split(',')"), json!(["a", "b", "c"]));
        assert_eq!(run("['a', 'b'].join('-')"), json!("a-b"));
        assert_eq!(run("'aXbX'.replace('X', 'y')"), json!("ayby"));
        assert_eq!(run("'abcabc'.indexOf('c')"), json!(2));
        assert_eq!(run("'abcabc'.lastIndexOf('c')"), json!(5));
        assert_eq!(run("'hello'.substring(1, 3)"), json!("el"));
        assert_eq!(run("'abc-123'.matches('^[a-z]+-[0-9]+$')"), json!(true));
    }

    #[test]
    fn regex() {
        assert_eq!(run("'abc 123 def 456'.find('[0-9]+')"), json!("123"));
        assert_eq!(run("'abc'.find('[0-9]+')"), json!(""));
        assert_eq!(
            run("'abc 123 def 456'.findAll('[0-9]+')"),
            json!(["123", "456"])
        );
        assert_eq!(run("'1 2 3'.findAll('[0-9]', 2)"), json!(["1", "2"]));
    }

    #[test]
    fn lists() {
        assert_eq!(run("[1, 2, 2, 3].isSorted()"), json!(true));
        assert_eq!(run("['b', 'a'].isSorted()"), json!(false));
        assert_eq!(run("[1, 2, 3].sum()"), json!(6));
        assert_eq!(run("[0.5, 1.5].sum()"), json!(2.0));
        assert_eq!(run("[].sum()"), json!(0));
        assert_eq!(run("[3, 1, 2].min()"), json!(1));
        assert_eq!(run("[3, 1, 2].max()"), json!(3));
        assert_eq!(run("['b', 'c', 'a'].max()"), json!("c"));
        assert_eq!(run("[1, 2, 1].indexOf(1)"), json!(0));
        assert_eq!(run("[1, 2, 1].lastIndexOf(1)"), json!(2));
        assert_eq!(run("[1, 2].indexOf(5)"), json!(-1));
        assert!(fails("[].max()").contains("max called on empty list"));
        assert!(fails("[1, 'a'].isSorted()").contains("no such overload"));
    }

    #[test]
    fn quantities() {
        assert_eq!(run("isQuantity('1.5Gi')"), json!(true));
        assert_eq!(run("isQuantity('1.5 Gi')"), json!(false));
        assert_eq!(
            run("quantity('1Gi').isGreaterThan(quantity('1G'))"),
            json!(true)
        );
        assert_eq!(
            run("quantity('100m').isLessThan(quantity('1'))"),
            json!(true)
        );
        assert_eq!(run("quantity('1').compareTo(quantity('1000m'))"), json!(0));
        assert_eq!(run("quantity('1') == quantity('1000m')"), json!(true));
        assert_eq!(run("quantity('2k').asInteger()"), json!(2000));
        assert_eq!(run("quantity('1500m').isInteger()"), json!(false));
        assert_eq!(run("quantity('1500m').asApproximateFloat()"), json!(1.5));
        assert_eq!(
            run("quantity('1').add(quantity('500m')).asApproximateFloat()"),
            json!(1.5)
        );
        assert_eq!(run("quantity('3').sub(1).asInteger()"), json!(2));
        assert_eq!(run("quantity('-3').sign()"), json!(-1));
        assert_eq!(
            run("[quantity('1'), quantity('2')].isSorted()"),
            json!(true)
        );
        assert!(fails("quantity('1500m').asInteger()").contains("cannot convert"));
        assert!(fails("quantity('x')").contains("quantities must match"));
    }

    #[test]
    fn urls() {
        assert_eq!(
            run("isURL('https://example.com:8080/a/b?x=1')"),
            json!(true)
        );
        assert_eq!(run("isURL('/absolute/path')"), json!(true));
        assert_eq!(run("isURL('relative')"), json!(false));
        let u = "url('https://example.com:8080/a/b?x=1')";
        assert_eq!(run(&format!("{u}.getScheme()")), json!("https"));
        assert_eq!(run(&format!("{u}.getHost()")), json!("example.com:8080"));
        assert_eq!(run(&format!("{u}.getHostname()")), json!("example.com"));
        assert_eq!(run(&format!("{u}.getPort()")), json!("8080"));
        assert_eq!(run(&format!("{u}.getEscapedPath()")), json!("/a/b"));
        assert_eq!(run(&format!("{u}.getQuery()")), json!("x=1"));
        assert_eq!(run("url('https://[::1]:80/').getHostname()"), json!("::1"));
        assert_eq!(
            run("url('https://example.com').getEscapedPath()"),
            json!("")
        );
    }
}
