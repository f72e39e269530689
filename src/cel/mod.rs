//! CEL (Common Expression Language) as Kubernetes uses it: CRD validation
//! rules, admission match conditions. An expression is compiled once
//! ([`compile`]) and evaluated many times with variables given as JSON
//! ([`eval`]). The interpreter is the `cel` crate (cel-rust) with its strings
//! and lists extensions; Kubernetes' own libraries (lists, regex, URLs,
//! quantities) are added in [`library`].
//!
//! cel-rust does not type-check: [`compile`] checks syntax and identifiers
//! no caller declares, and callers that know their variables' types (CRD
//! rules) run [`check`], a partial checker and cost estimator; other type
//! errors surface when the program runs.

pub mod check;
pub mod format;
pub mod library;
pub mod time;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, LazyLock};

use cel::objects::{Key, Map};
use cel::{Context, Env};
use serde_json::Value;

/// Why an expression could not be compiled or evaluated. The texts follow
/// cel-go's, as the Kubernetes API server reports them.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CelError {
    /// Syntax errors or references to undeclared identifiers.
    #[error("{0}")]
    Compile(String),
    /// A runtime error: no such key, no matching overload, overflow...
    #[error("{0}")]
    Eval(String),
    /// The result cannot be represented as JSON, or is not of the type
    /// the caller needs.
    #[error("{0}")]
    Type(String),
}

/// A compiled expression.
#[derive(Debug)]
pub struct Program {
    source: String,
    inner: cel::Program,
    /// Identifiers the expression uses without binding them itself.
    free: BTreeSet<String>,
}

impl Program {
    /// The expression as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the expression refers to variable `name` (e.g. `oldSelf`).
    pub fn uses(&self, name: &str) -> bool {
        self.free.contains(name)
    }
}

/// The environment every program compiles and runs in: the standard
/// library, cel-rust's strings and lists extensions and Kubernetes'
/// libraries.
static ENV: LazyLock<Option<Arc<Env>>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    let built = env
        .add_extension(cel::extensions::strings)
        .and_then(|_| env.add_extension(cel::extensions::lists))
        .and_then(|_| env.add_extension(cel::extensions::math))
        .and_then(|_| library::register(&mut env))
        .and_then(|_| time::register(&mut env))
        .and_then(|_| format::register(&mut env));
    match built {
        Ok(()) => Some(Arc::new(env)),
        Err(e) => {
            tracing::error!("CEL environment: {e}");
            None
        }
    }
});

fn env() -> Result<Arc<Env>, CelError> {
    ENV.clone()
        .ok_or_else(|| CelError::Compile("CEL environment initialization failed".into()))
}

/// Names that resolve without a variable: type names and the namespaces of
/// library functions (`math.ceil`, `strings.quote`).
const BUILTIN_IDENTS: &[&str] = &[
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "dyn",
    "math",
    "strings",
    "lists",
    "optional",
    "format",
];

/// The longest expression accepted (cel-go's code point limit).
const MAX_SOURCE: usize = 100_000;
/// The deepest expression tree accepted (cel-go's recursion limit): it
/// bounds the recursion of evaluating it on a request thread's stack.
const MAX_DEPTH: usize = 250;
/// Parsing a long operator chain recurses once per operator: it runs on
/// a thread of its own with room for the longest source accepted.
const COMPILE_STACK: usize = 256 << 20;

/// Compiles `source`. Identifiers are not checked: see [`compile_with`].
pub fn compile(source: &str) -> Result<Program, CelError> {
    if source.chars().count() > MAX_SOURCE {
        return Err(CelError::Compile(format!(
            "ERROR: <input>:-1:0: expression code point size exceeds limit: size: {}, limit {MAX_SOURCE}",
            source.chars().count()
        )));
    }
    let env = env()?;
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("cel-compile".into())
            .stack_size(COMPILE_STACK)
            .spawn_scoped(scope, || compile_here(&env, source))
            .map_err(|e| CelError::Compile(format!("cannot compile: {e}")))?
            .join()
            .unwrap_or_else(|_| Err(CelError::Compile("the compiler failed".into())))
    })
}

fn compile_here(env: &Env, source: &str) -> Result<Program, CelError> {
    let inner = env
        .compile(source)
        .map_err(|e| CelError::Compile(e.to_string()))?;
    if depth(inner.expression()) > MAX_DEPTH {
        // Dropped here too: dropping a tree recurses as deep as it goes.
        return Err(CelError::Compile(format!(
            "ERROR: <input>:1:1: expression recursion limit exceeded: {MAX_DEPTH}"
        )));
    }
    let mut free = BTreeSet::new();
    free_idents(inner.expression(), &mut Vec::new(), &mut free);
    Ok(Program {
        source: source.to_string(),
        inner,
        free,
    })
}

/// The deepest of a map's or struct's entries.
fn entries_depth(entries: &[::cel::common::ast::IdedEntryExpr]) -> usize {
    use ::cel::common::ast::EntryExpr;
    entries
        .iter()
        .map(|en| match &en.expr {
            EntryExpr::MapEntry(me) => depth(&me.key).max(depth(&me.value)),
            EntryExpr::StructField(f) => depth(&f.value),
        })
        .max()
        .unwrap_or(0)
}

/// The depth of an expression tree.
fn depth(e: &::cel::IdedExpr) -> usize {
    use ::cel::common::ast::Expr;
    let children = match &e.expr {
        Expr::Select(s) => depth(&s.operand),
        Expr::Call(c) => c
            .target
            .iter()
            .map(|t| depth(t))
            .chain(c.args.iter().map(depth))
            .max()
            .unwrap_or(0),
        Expr::List(l) => l.elements.iter().map(depth).max().unwrap_or(0),
        Expr::Map(m) => entries_depth(&m.entries),
        Expr::Struct(st) => entries_depth(&st.entries),
        Expr::Comprehension(c) => [
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ]
        .into_iter()
        .map(depth)
        .max()
        .unwrap_or(0),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => 0,
    };
    children + 1
}

/// Compiles `source`, where only `declared` variables may be used: any
/// other identifier is an error, as cel-go's checker reports it.
pub fn compile_with(source: &str, declared: &[&str]) -> Result<Program, CelError> {
    let p = compile(source)?;
    if let Some(name) = p
        .free
        .iter()
        .find(|n| !declared.contains(&n.as_str()) && !BUILTIN_IDENTS.contains(&n.as_str()))
    {
        return Err(CelError::Compile(format!(
            "ERROR: <input>:1:1: undeclared reference to '{name}' (in container '')"
        )));
    }
    Ok(p)
}

/// Collects the identifiers `e` uses that no comprehension inside it binds.
fn free_idents(e: &cel::IdedExpr, bound: &mut Vec<String>, out: &mut BTreeSet<String>) {
    use cel::common::ast::{EntryExpr, Expr};
    match &e.expr {
        Expr::Ident(name) => {
            if !bound.iter().any(|b| b == name) {
                out.insert(name.clone());
            }
        }
        Expr::Select(s) => free_idents(&s.operand, bound, out),
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                free_idents(t, bound, out);
            }
            for a in &c.args {
                free_idents(a, bound, out);
            }
        }
        Expr::List(l) => {
            for x in &l.elements {
                free_idents(x, bound, out);
            }
        }
        Expr::Map(m) => {
            for entry in &m.entries {
                if let EntryExpr::MapEntry(me) = &entry.expr {
                    free_idents(&me.key, bound, out);
                    free_idents(&me.value, bound, out);
                }
            }
        }
        Expr::Struct(s) => {
            for entry in &s.entries {
                if let EntryExpr::StructField(f) = &entry.expr {
                    free_idents(&f.value, bound, out);
                }
            }
        }
        Expr::Comprehension(c) => {
            free_idents(&c.iter_range, bound, out);
            free_idents(&c.accu_init, bound, out);
            let n = bound.len();
            bound.push(c.iter_var.clone());
            bound.extend(c.iter_var2.clone());
            bound.push(c.accu_var.clone());
            free_idents(&c.loop_cond, bound, out);
            free_idents(&c.loop_step, bound, out);
            free_idents(&c.result, bound, out);
            bound.truncate(n);
        }
        Expr::Literal(_) | Expr::Unspecified => {}
    }
}

/// Evaluates `p` with `vars` bound, returning the result as JSON.
pub fn eval(p: &Program, vars: &[(&str, &Value)]) -> Result<Value, CelError> {
    let bound: Vec<(&str, cel::Value)> = vars.iter().map(|(n, v)| (*n, to_cel(v))).collect();
    from_cel(&eval_cel(p, &bound)?)
}

/// Evaluates `p`, which must yield a bool (a validation rule, a match
/// condition).
pub fn eval_bool(p: &Program, vars: &[(&str, &Value)]) -> Result<bool, CelError> {
    let bound: Vec<(&str, cel::Value)> = vars.iter().map(|(n, v)| (*n, to_cel(v))).collect();
    match eval_cel(p, &bound)? {
        cel::Value::Bool(b) => Ok(b),
        other => Err(CelError::Type(format!(
            "expected a bool, got {}",
            other.type_of()
        ))),
    }
}

/// Evaluates `p` with variables already converted to CEL values (for
/// callers binding optionals or schema-typed values).
pub fn eval_cel(p: &Program, vars: &[(&str, cel::Value)]) -> Result<cel::Value, CelError> {
    let mut ctx = Context::with_env(env()?);
    for (name, v) in vars {
        ctx.add_variable_from_value(name.to_string(), v.clone());
    }
    p.inner
        .execute(&ctx)
        .map_err(|e| CelError::Eval(eval_message(&e)))
}

/// Evaluates `p` with variables of any CEL type (schema-typed values:
/// durations, timestamps, optionals), as built by the caller.
pub fn eval_val(
    p: &Program,
    vars: Vec<(&str, Box<dyn cel::common::value::Val>)>,
) -> Result<cel::Value, CelError> {
    let mut ctx = Context::with_env(env()?);
    for (name, v) in vars {
        ctx.add_variable_as_val(name.to_string(), v);
    }
    p.inner
        .execute(&ctx)
        .map_err(|e| CelError::Eval(eval_message(&e)))
}

/// `v` as a CEL value of the interpreter's own types.
pub fn to_val(v: &Value) -> Box<dyn cel::common::value::Val> {
    Box::<dyn cel::common::value::Val>::try_from(to_cel(v))
        .unwrap_or_else(|_| Box::new(cel::common::types::CelNull))
}

/// cel-go's wording for the runtime errors rules commonly hit.
fn eval_message(e: &cel::ExecutionError) -> String {
    use cel::ExecutionError as E;
    match e {
        E::NoSuchKey(k) => format!("no such key: {k}"),
        E::NoSuchOverload(o) => format!("no such overload: {o}"),
        E::IndexOutOfBounds(i) => format!("index out of bounds: {}", short(i)),
        E::DivisionByZero(_) => "division by zero".into(),
        E::RemainderByZero(_) => "modulus by zero".into(),
        E::Overflow(..) => "integer overflow".into(),
        E::UndeclaredReference(n) => format!("no such attribute: {n}"),
        E::FunctionError { function, message } => format!("{function}: {message}"),
        other => other.to_string(),
    }
}

fn short(v: &cel::Value) -> String {
    match v {
        cel::Value::Int(i) => i.to_string(),
        cel::Value::UInt(u) => u.to_string(),
        other => format!("{other:?}"),
    }
}

/// JSON as a CEL value: integers are `int`, other numbers `double`.
/// Schema-aware conversions (a `number` field holding `3`) are the
/// caller's, before binding.
pub fn to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(a) => cel::Value::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(m) => {
            let map: HashMap<Key, cel::Value> = m
                .iter()
                .map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v)))
                .collect();
            cel::Value::Map(Map { map: Arc::new(map) })
        }
    }
}

/// A CEL value as JSON (map keys become strings).
pub fn from_cel(v: &cel::Value) -> Result<Value, CelError> {
    Ok(match v {
        cel::Value::Null => Value::Null,
        cel::Value::Bool(b) => Value::Bool(*b),
        cel::Value::Int(i) => Value::from(*i),
        cel::Value::UInt(u) => Value::from(*u),
        cel::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| CelError::Type(format!("{f} is not representable in JSON")))?,
        cel::Value::String(s) => Value::String(s.to_string()),
        cel::Value::List(l) => Value::Array(l.iter().map(from_cel).collect::<Result<_, _>>()?),
        cel::Value::Map(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m.map.iter() {
                let key = match k {
                    Key::String(s) => s.to_string(),
                    Key::Int(i) => i.to_string(),
                    Key::Uint(u) => u.to_string(),
                    Key::Bool(b) => b.to_string(),
                };
                out.insert(key, from_cel(v)?);
            }
            Value::Object(out)
        }
        cel::Value::Opaque(o) => {
            if let Some(q) = o.downcast_ref::<library::Quantity>() {
                Value::String(q.to_string())
            } else {
                return Err(CelError::Type(format!(
                    "a {} is not representable in JSON",
                    o.runtime_type_name()
                )));
            }
        }
        other => {
            return Err(CelError::Type(format!(
                "a {} is not representable in JSON",
                other.type_of()
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(src: &str, this: Value) -> Result<Value, CelError> {
        let p = compile_with(src, &["self"])?;
        eval(&p, &[("self", &this)])
    }

    #[test]
    fn rules_see_json_values() {
        let obj = json!({"replicas": 3, "minReplicas": 1, "name": "xeno", "ratio": 0.5});
        assert_eq!(
            run("self.minReplicas <= self.replicas", obj.clone()),
            Ok(json!(true))
        );
        assert_eq!(
            run("self.name.startsWith('x')", obj.clone()),
            Ok(json!(true))
        );
        assert_eq!(run("self.ratio < 1.0", obj.clone()), Ok(json!(true)));
        assert_eq!(run("has(self.missing)", obj.clone()), Ok(json!(false)));
        assert_eq!(
            run("self.missing == 1", obj),
            Err(CelError::Eval("no such key: missing".into()))
        );
    }

    #[test]
    fn syntax_errors_and_undeclared_names_fail_to_compile() {
        let e = compile("self.a <").map(|_| ()).unwrap_err();
        assert!(e.to_string().starts_with("ERROR: <input>:1:"), "{e}");
        let e = compile_with("foo.bar == 1", &["self"])
            .map(|_| ())
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "ERROR: <input>:1:1: undeclared reference to 'foo' (in container '')"
        );
        // Comprehension variables are bound by the macro.
        assert!(compile_with("self.all(x, x > 0)", &["self"]).is_ok());
        assert!(compile_with("self.x == oldSelf.x", &["self", "oldSelf"]).is_ok());
        let p = compile("self == oldSelf").unwrap();
        assert!(p.uses("oldSelf") && p.uses("self"));
    }

    #[test]
    fn results_come_back_as_json() {
        assert_eq!(run("self.map(x, x * 2)", json!([1, 2])), Ok(json!([2, 4])));
        assert_eq!(run("{'a': self}", json!("b")), Ok(json!({"a": "b"})));
        assert_eq!(
            eval_bool(&compile("1 + 1").unwrap(), &[]),
            Err(CelError::Type("expected a bool, got int".into()))
        );
    }
}

#[cfg(test)]
mod limits {
    use super::*;

    fn probe(src: String) -> String {
        let r = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || match compile(&src) {
                Ok(p) => format!("{:?}", eval(&p, &[]).map_err(|e| e.to_string())),
                Err(e) => e.to_string().chars().take(100).collect(),
            })
            .map(|h| h.join());
        format!("{r:?}")
    }

    #[test]
    fn long_and_deep_expressions_are_errors_not_crashes() {
        // Evaluated on a small stack, as a request thread would.
        for n in [100usize, 5000, 20000] {
            for src in [
                vec!["1"; n].join(" + "),
                vec!["true"; n].join(" && "),
                format!("{}1", "-".repeat(n)),
                format!("{}1{}", "[".repeat(n), "]".repeat(n)),
                format!("{{'a': 1}}{}", ".a".repeat(n)),
            ] {
                let out = probe(src.clone());
                assert!(out.starts_with("Ok(Ok("), "{n}: {out}");
            }
        }
        assert!(
            probe(vec!["1"; 5000].join(" + ")).contains("recursion limit exceeded"),
            "a long chain is refused"
        );
        assert!(probe(vec!["1"; 100].join(" + ")).contains("Ok(Number(100))"));
        let e = compile(&"1".repeat(100_001)).map(|_| ()).unwrap_err();
        assert!(e.to_string().contains("exceeds limit"), "{e}");
    }
}
