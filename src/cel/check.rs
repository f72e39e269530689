//! A small static checker and cost estimator for compiled expressions,
//! standing in for cel-go's checker (cel-rust has none). Given the types of
//! the variables (for CRD rules: the structural schema of `self`), it finds
//! what upstream rejects when a CRD is written -- selections of fields the
//! schema does not declare, calls of known functions no overload of which
//! takes the argument types, ranges that cannot be iterated, a result of
//! the wrong type -- and estimates the worst-case cost of one evaluation in
//! cel-go's cost units, from the schema's maxLength, maxItems and
//! maxProperties (or, where unbounded, what fits in a request).
//!
//! It is deliberately partial: a function it does not know, or a value it
//! cannot type (`dyn`, int-or-string fields, map values of unknown type),
//! type-checks as `dyn` and is left to run time, so it never rejects what
//! cel-go accepts for want of knowledge. Not covered: overloads of the
//! optional library, protobuf message construction, type-parameter
//! constraints beyond equality of the parameter's uses.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use cel::IdedExpr;
use cel::common::ast::{EntryExpr, Expr, LiteralValue};

use super::{CelError, Program};

/// cel-go's cost factors (common/cost.go).
const STRING_TRAVERSAL: f64 = 0.1;
const REGEX_LENGTH: f64 = 0.25;
const LIST_CREATE: u64 = 10;
const MAP_CREATE: u64 = 30;
const STRUCT_CREATE: u64 = 40;

/// An unknown size: as large as can be.
const UNKNOWN: u64 = u64::MAX;

/// The CEL type of a schema node, with the bounds cost estimation needs:
/// upstream's DeclType, reduced.
#[derive(Debug, Clone)]
pub struct Decl {
    pub kind: DeclKind,
    /// The most characters (strings, bytes), items (lists) or entries
    /// (maps) a value can have; 0 for other kinds, as upstream.
    pub max_elements: u64,
    /// The fewest bytes a value takes serialized as JSON.
    pub min_size: u64,
}

#[derive(Debug, Clone)]
pub enum DeclKind {
    /// Any value: x-kubernetes-int-or-string.
    Dyn,
    Bool,
    Int,
    Double,
    String,
    Bytes,
    Duration,
    Timestamp,
    List(Arc<Decl>),
    /// String keys (additionalProperties).
    Map(Arc<Decl>),
    /// Declared properties, by their CEL (escaped) names.
    Object(BTreeMap<String, Arc<Decl>>),
}

/// A static type.
#[derive(Debug, Clone)]
pub enum Ty {
    Dyn,
    Null,
    Bool,
    Int,
    Uint,
    Double,
    String,
    Bytes,
    Duration,
    Timestamp,
    Type,
    List(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
    /// A value of a schema node.
    Decl(Arc<Decl>),
    Optional(Box<Ty>),
    /// A library type: `kubernetes.Quantity`, `kubernetes.URL`.
    Opaque(&'static str),
}

impl Ty {
    /// The type one level down: a schema node as the CEL type it has.
    fn shape(&self) -> Ty {
        let Ty::Decl(d) = self else {
            return self.clone();
        };
        match &d.kind {
            DeclKind::Dyn => Ty::Dyn,
            DeclKind::Bool => Ty::Bool,
            DeclKind::Int => Ty::Int,
            DeclKind::Double => Ty::Double,
            DeclKind::String => Ty::String,
            DeclKind::Bytes => Ty::Bytes,
            DeclKind::Duration => Ty::Duration,
            DeclKind::Timestamp => Ty::Timestamp,
            DeclKind::List(e) => Ty::List(Box::new(Ty::Decl(e.clone()))),
            DeclKind::Map(v) => Ty::Map(Box::new(Ty::String), Box::new(Ty::Decl(v.clone()))),
            DeclKind::Object(_) => self.clone(),
        }
    }

    fn is_dyn(&self) -> bool {
        matches!(self.shape(), Ty::Dyn)
    }

    /// cel-go's name of the type, as its errors print it.
    pub fn name(&self) -> String {
        match self.shape() {
            Ty::Dyn => "dyn".into(),
            Ty::Null => "null_type".into(),
            Ty::Bool => "bool".into(),
            Ty::Int => "int".into(),
            Ty::Uint => "uint".into(),
            Ty::Double => "double".into(),
            Ty::String => "string".into(),
            Ty::Bytes => "bytes".into(),
            Ty::Duration => "google.protobuf.Duration".into(),
            Ty::Timestamp => "google.protobuf.Timestamp".into(),
            Ty::Type => "type".into(),
            Ty::List(e) => format!("list({})", e.name()),
            Ty::Map(k, v) => format!("map({}, {})", k.name(), v.name()),
            Ty::Decl(_) => "object".into(),
            Ty::Optional(t) => format!("optional_type({})", t.name()),
            Ty::Opaque(n) => n.to_string(),
        }
    }
}

/// A property name as rules spell it (upstream's escaping: `__dash__`,
/// `__dot__`, `__namespace__`...); `None` if rules cannot name it.
pub fn escape(name: &str) -> Option<String> {
    const RESERVED: &[&str] = &[
        "true",
        "false",
        "null",
        "in",
        "as",
        "break",
        "const",
        "continue",
        "else",
        "for",
        "function",
        "if",
        "import",
        "let",
        "loop",
        "package",
        "namespace",
        "return",
        "var",
        "void",
        "while",
    ];
    let first = name.chars().next()?;
    if first.is_ascii_digit() {
        return None;
    }
    if RESERVED.contains(&name) {
        return Some(format!("__{name}__"));
    }
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        if rest.starts_with("__") {
            out.push_str("__underscores__");
            rest = &rest[2..];
            continue;
        }
        match c {
            '.' => out.push_str("__dot__"),
            '-' => out.push_str("__dash__"),
            '/' => out.push_str("__slash__"),
            c if c.is_ascii_alphanumeric() || c == '_' => out.push(c),
            _ => return None,
        }
        rest = &rest[c.len_utf8()..];
    }
    Some(out)
}

/// What checking found: the estimated worst-case cost of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    pub max_cost: u64,
}

/// The result type an expression must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Bool,
    String,
}

/// Checks `p` with `vars` typed as given; a `Compile` error carries
/// cel-go's text (`ERROR: <input>:1:6: undefined field 'foo'` and the
/// source line with a caret), a `Type` error the wrong result type.
pub fn check(p: &Program, vars: &[(&str, Ty)], want: Option<Want>) -> Result<Checked, CelError> {
    let mut c = Checker {
        p,
        locals: HashMap::new(),
        errors: Vec::new(),
    };
    for (name, ty) in vars {
        c.locals.entry(name.to_string()).or_default().push(Local {
            ty: ty.clone(),
            size: None,
            elem: None,
        });
    }
    let n = c.node(p.inner.expression());
    if let Some(e) = c.errors.into_iter().next() {
        return Err(CelError::Compile(e));
    }
    match (want, n.ty.shape()) {
        (_, Ty::Dyn)
        | (None, _)
        | (Some(Want::Bool), Ty::Bool)
        | (Some(Want::String), Ty::String) => {}
        (Some(Want::Bool), _) => {
            return Err(CelError::Type(
                "cel expression must evaluate to a bool".into(),
            ));
        }
        (Some(Want::String), _) => {
            return Err(CelError::Type("must evaluate to a string".into()));
        }
    }
    Ok(Checked { max_cost: n.cost })
}

#[derive(Debug, Clone)]
struct Local {
    ty: Ty,
    /// Size, for values not typed by the schema.
    size: Option<u64>,
    /// Size of the elements, for lists and maps built by the expression.
    elem: Option<u64>,
}

/// What the checker knows of one expression.
#[derive(Debug, Clone)]
struct Node {
    ty: Ty,
    size: Option<u64>,
    elem: Option<u64>,
    cost: u64,
}

impl Node {
    fn of(ty: Ty, cost: u64) -> Node {
        Node {
            ty,
            size: None,
            elem: None,
            cost,
        }
    }

    /// cel-go's size estimate: computed, from the schema, or 1 for scalars.
    fn size(&self) -> u64 {
        if let Some(s) = self.size {
            return s;
        }
        if let Ty::Decl(d) = &self.ty {
            return d.max_elements;
        }
        match self.ty {
            Ty::Bool | Ty::Int | Ty::Uint | Ty::Double | Ty::Duration | Ty::Timestamp => 1,
            _ => UNKNOWN,
        }
    }

    /// The size of the elements of a list or the values of a map.
    fn elem_size(&self) -> Option<u64> {
        if self.elem.is_some() {
            return self.elem;
        }
        match self.ty.shape() {
            Ty::List(e) | Ty::Map(_, e) => Some(Node::of(*e, 0).size()),
            _ => None,
        }
    }
}

fn factor(size: u64, f: f64) -> u64 {
    let x = size as f64 * f;
    if x >= u64::MAX as f64 {
        UNKNOWN
    } else {
        x.ceil() as u64
    }
}

struct Checker<'a> {
    p: &'a Program,
    locals: HashMap<String, Vec<Local>>,
    errors: Vec<String>,
}

impl Checker<'_> {
    /// Records an error at `id`'s position, as cel-go prints issues.
    fn error(&mut self, id: u64, msg: String) {
        let info = self.p.inner.source_info();
        let src = self.p.source();
        let (line, col, text) = match info.offset_for(id) {
            Some((start, _)) => {
                let start = (start as usize).min(src.len());
                let before = &src[..start];
                let line = before.matches('\n').count() + 1;
                let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
                let col = src[line_start..start].chars().count() + 1;
                let text = src[line_start..].lines().next().unwrap_or("");
                (line, col, text)
            }
            None => (1, 1, src.lines().next().unwrap_or("")),
        };
        self.errors.push(format!(
            "ERROR: <input>:{line}:{col}: {msg}\n | {text}\n | {}^",
            ".".repeat(col - 1)
        ));
    }

    fn local(&self, name: &str) -> Option<&Local> {
        self.locals.get(name).and_then(|v| v.last())
    }

    fn push(&mut self, name: &str, l: Local) {
        self.locals.entry(name.to_string()).or_default().push(l);
    }

    fn pop(&mut self, name: &str) {
        if let Some(v) = self.locals.get_mut(name) {
            v.pop();
        }
    }

    fn node(&mut self, e: &IdedExpr) -> Node {
        match &e.expr {
            Expr::Literal(l) => {
                let (ty, size) = match l {
                    LiteralValue::Boolean(_) => (Ty::Bool, 1),
                    LiteralValue::Int(_) => (Ty::Int, 1),
                    LiteralValue::UInt(_) => (Ty::Uint, 1),
                    LiteralValue::Double(_) => (Ty::Double, 1),
                    LiteralValue::Null => (Ty::Null, 1),
                    LiteralValue::String(s) => (Ty::String, s.inner().chars().count() as u64),
                    LiteralValue::Bytes(b) => (Ty::Bytes, b.inner().len() as u64),
                };
                Node {
                    ty,
                    size: Some(size),
                    elem: None,
                    cost: 0,
                }
            }
            Expr::Ident(name) => match self.local(name) {
                Some(l) => Node {
                    ty: l.ty.clone(),
                    size: l.size,
                    elem: l.elem,
                    cost: 1,
                },
                None => Node::of(
                    if super::BUILTIN_IDENTS.contains(&name.as_str()) {
                        Ty::Type
                    } else {
                        Ty::Dyn
                    },
                    1,
                ),
            },
            Expr::Select(s) => {
                let operand = self.node(&s.operand);
                let field = self.field(e.id, &operand.ty, &s.field);
                if s.test {
                    return Node::of(Ty::Bool, operand.cost.saturating_add(1));
                }
                let extra = match operand.ty.shape() {
                    Ty::Map(..) | Ty::Decl(_) => 1,
                    _ => 0,
                };
                Node::of(field, operand.cost.saturating_add(extra))
            }
            Expr::List(l) => {
                let mut cost = LIST_CREATE;
                let mut elem_ty: Option<Ty> = None;
                let mut elem_size = 0u64;
                for x in &l.elements {
                    let n = self.node(x);
                    cost = cost.saturating_add(n.cost);
                    elem_size = elem_size.max(n.size());
                    elem_ty = Some(match elem_ty {
                        None => n.ty,
                        Some(t) if same(&t, &n.ty) => t,
                        Some(_) => Ty::Dyn,
                    });
                }
                Node {
                    ty: Ty::List(Box::new(elem_ty.unwrap_or(Ty::Dyn))),
                    size: Some(l.elements.len() as u64),
                    elem: Some(elem_size),
                    cost,
                }
            }
            Expr::Map(m) => {
                let mut cost = MAP_CREATE;
                let (mut kt, mut vt): (Option<Ty>, Option<Ty>) = (None, None);
                let mut elem_size = 0u64;
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        let k = self.node(&me.key);
                        let v = self.node(&me.value);
                        cost = cost.saturating_add(k.cost).saturating_add(v.cost);
                        elem_size = elem_size.max(v.size());
                        kt = Some(join(kt, k.ty));
                        vt = Some(join(vt, v.ty));
                    }
                }
                Node {
                    ty: Ty::Map(
                        Box::new(kt.unwrap_or(Ty::Dyn)),
                        Box::new(vt.unwrap_or(Ty::Dyn)),
                    ),
                    size: Some(m.entries.len() as u64),
                    elem: Some(elem_size),
                    cost,
                }
            }
            Expr::Struct(s) => {
                let mut cost = STRUCT_CREATE;
                for entry in &s.entries {
                    if let EntryExpr::StructField(f) = &entry.expr {
                        cost = cost.saturating_add(self.node(&f.value).cost);
                    }
                }
                Node::of(Ty::Dyn, cost)
            }
            Expr::Comprehension(c) => self.comprehension(e.id, c),
            Expr::Call(call) => self.call(e.id, call),
            Expr::Unspecified => Node::of(Ty::Dyn, 0),
        }
    }

    /// The type of `ty.field`, recording cel-go's errors.
    fn field(&mut self, id: u64, ty: &Ty, field: &str) -> Ty {
        match ty.shape() {
            Ty::Decl(d) => match &d.kind {
                DeclKind::Object(fields) => match fields.get(field) {
                    Some(f) => Ty::Decl(f.clone()),
                    None => {
                        self.error(id, format!("undefined field '{field}'"));
                        Ty::Dyn
                    }
                },
                _ => Ty::Dyn,
            },
            Ty::Map(_, v) => *v,
            Ty::Dyn | Ty::Optional(_) | Ty::Opaque(_) | Ty::Type => Ty::Dyn,
            other => {
                self.error(
                    id,
                    format!("type '{}' does not support field selection", other.name()),
                );
                Ty::Dyn
            }
        }
    }

    fn comprehension(&mut self, id: u64, c: &cel::common::ast::ComprehensionExpr) -> Node {
        let range = self.node(&c.iter_range);
        let init = self.node(&c.accu_init);
        let (first, second) = match range.ty.shape() {
            Ty::List(e) => (Ty::Int, *e),
            Ty::Map(k, v) => (*k, *v),
            Ty::Dyn => (Ty::Dyn, Ty::Dyn),
            other => {
                self.error(
                    id,
                    format!(
                        "expression of type '{}' cannot be range of a comprehension (must be list, map, or dynamic)",
                        other.name()
                    ),
                );
                (Ty::Dyn, Ty::Dyn)
            }
        };
        let is_list = matches!(range.ty.shape(), Ty::List(_));
        // The element's size: from the schema, or as the range was built.
        let elem_local = |ty: Ty| Local {
            ty,
            size: if matches!(range.ty, Ty::Decl(_)) {
                None
            } else {
                range.elem
            },
            elem: None,
        };
        // Map keys of a schema map are strings of unknown bound: upstream
        // sizes them as its string type, 0.
        let key_local = |ty: Ty| Local {
            ty,
            size: Some(if matches!(range.ty, Ty::Decl(_)) {
                0
            } else {
                1
            }),
            elem: None,
        };
        self.push(
            &c.accu_var,
            Local {
                ty: init.ty.clone(),
                size: init.size,
                elem: init.elem,
            },
        );
        match &c.iter_var2 {
            Some(v2) => {
                self.push(&c.iter_var, key_local(first));
                self.push(v2, elem_local(second));
            }
            None if is_list => self.push(&c.iter_var, elem_local(second)),
            None => self.push(&c.iter_var, key_local(first)),
        }
        let cond = self.node(&c.loop_cond);
        let step = self.node(&c.loop_step);
        self.pop(&c.iter_var);
        if let Some(v2) = &c.iter_var2 {
            self.pop(v2);
        }
        let result = self.node(&c.result);
        self.pop(&c.accu_var);
        let per = cond.cost.saturating_add(step.cost);
        let count = range.size();
        let cost = range
            .cost
            .saturating_add(init.cost)
            .saturating_add(result.cost)
            .saturating_add(count.saturating_mul(per));
        let mut n = Node::of(result.ty, cost);
        match &c.accu_init.expr {
            Expr::Literal(_) => n.size = init.size,
            Expr::List(_) | Expr::Map(_) => {
                n.size = Some(count);
                n.elem = step.elem;
                // map(): the accumulator gains the transformed elements.
                if let Ty::List(_) = init.ty
                    && let Ty::List(e) = step.ty.shape()
                    && !e.is_dyn()
                {
                    n.ty = Ty::List(e);
                }
            }
            _ => {}
        }
        n
    }

    fn call(&mut self, id: u64, call: &cel::common::ast::CallExpr) -> Node {
        let name = call.func_name.as_str();
        let target = call.target.as_ref().map(|t| self.node(t));
        let args: Vec<Node> = call.args.iter().map(|a| self.node(a)).collect();
        let arg_cost = args
            .iter()
            .fold(0u64, |acc, a| acc.saturating_add(a.cost))
            .saturating_add(target.as_ref().map_or(0, |t| t.cost));
        let types: Vec<Ty> = args.iter().map(|a| a.ty.clone()).collect();
        let ty = match signatures::resolve(name, target.as_ref().map(|t| &t.ty), &types) {
            signatures::Resolved::Unknown => Ty::Dyn,
            signatures::Resolved::Type(t) => t,
            signatures::Resolved::NoMatch => {
                let shown = types.iter().map(Ty::name).collect::<Vec<_>>().join(", ");
                let applied = match &target {
                    Some(t) => format!("{}.({shown})", t.ty.name()),
                    None => format!("({shown})"),
                };
                self.error(
                    id,
                    format!("found no matching overload for '{name}' applied to '{applied}'"),
                );
                Ty::Dyn
            }
        };
        let (cost, size, elem) = call_cost(name, target.as_ref(), &args, arg_cost);
        Node {
            ty,
            size,
            elem,
            cost,
        }
    }
}

/// Whether two types are the same, as far as the checker can tell.
fn same(a: &Ty, b: &Ty) -> bool {
    a.name() == b.name()
}

fn join(a: Option<Ty>, b: Ty) -> Ty {
    match a {
        None => b,
        Some(a) if same(&a, &b) => a,
        Some(_) => Ty::Dyn,
    }
}

/// The cost of a call (its arguments included), its result's size and its
/// elements' size, as cel-go and Kubernetes' library estimate them.
fn call_cost(
    name: &str,
    target: Option<&Node>,
    args: &[Node],
    arg_cost: u64,
) -> (u64, Option<u64>, Option<u64>) {
    let size = |n: Option<&Node>| n.map_or(UNKNOWN, Node::size);
    let a0 = args.first();
    let a1 = args.get(1);
    let plus = |c: u64| c.saturating_add(arg_cost);
    match name {
        "_&&_" | "_||_" => (arg_cost, None, None),
        "_?_:_" => {
            let c = args.first().map_or(0, |a| a.cost).saturating_add(
                a1.map_or(0, |a| a.cost)
                    .max(args.get(2).map_or(0, |a| a.cost)),
            );
            let sz = size(a1).max(size(args.get(2)));
            let elem = match (
                a1.and_then(Node::elem_size),
                args.get(2).and_then(Node::elem_size),
            ) {
                (Some(x), Some(y)) => Some(x.max(y)),
                _ => None,
            };
            (c, Some(sz), elem)
        }
        "dyn" => (plus(1), a0.map(Node::size), a0.and_then(|a| a.elem)),
        "startsWith" | "endsWith" if target.is_some() => {
            (plus(factor(size(a0), STRING_TRAVERSAL)), None, None)
        }
        "@in" => (plus(factor(size(a1), 1.0)), None, None),
        "matches" => {
            let (s, re) = match target {
                Some(t) => (t.size(), size(a0)),
                None => (size(a0), size(a1)),
            };
            let c = factor(s.saturating_add(1), STRING_TRAVERSAL)
                .saturating_mul(factor(re, REGEX_LENGTH));
            (plus(c), None, None)
        }
        "find" | "findAll" if target.is_some() => {
            let s = size(target);
            let c = factor(s.saturating_add(1), STRING_TRAVERSAL)
                .saturating_mul(factor(size(a0), REGEX_LENGTH));
            (plus(c), Some(s), None)
        }
        "contains" if target.is_some() => {
            let c = factor(size(target), STRING_TRAVERSAL)
                .saturating_mul(factor(size(a0), STRING_TRAVERSAL));
            (plus(c), None, None)
        }
        "_+_" if args.len() == 2 => {
            let sz = size(a0).saturating_add(size(a1));
            let elem = match (a0.and_then(Node::elem_size), a1.and_then(Node::elem_size)) {
                (Some(x), Some(y)) => Some(x.max(y)),
                _ => None,
            };
            match args[0].ty.shape() {
                Ty::List(_) => (plus(1), Some(sz), elem),
                Ty::String | Ty::Bytes => (plus(factor(sz, STRING_TRAVERSAL)), Some(sz), None),
                _ => (plus(1), None, None),
            }
        }
        "_==_" | "_!=_" | "_<_" | "_<=_" | "_>_" | "_>=_" if args.len() == 2 => {
            let is_text = |n: &Node| matches!(n.ty.shape(), Ty::String | Ty::Bytes);
            let ordering = matches!(name, "_<_" | "_<=_" | "_>_" | "_>=_");
            if ordering && !is_text(&args[0]) {
                // Ordering of numbers and other scalars: constant.
                return (plus(1), None, None);
            }
            let smallest = size(a0).min(size(a1));
            (plus(factor(smallest, STRING_TRAVERSAL)), None, None)
        }
        "_[_]" if args.len() == 2 => (plus(1), args[0].elem_size(), None),
        "isSorted" | "sum" | "max" | "min" | "indexOf" | "lastIndexOf"
            if target.is_some_and(|t| matches!(t.ty.shape(), Ty::List(_))) =>
        {
            let t = target.map_or(UNKNOWN, Node::size);
            let mut per = 1u64;
            if let Some(Ty::List(e)) = target.map(|t| t.ty.shape())
                && matches!(e.shape(), Ty::String | Ty::Bytes)
            {
                let es = target.and_then(Node::elem_size).unwrap_or(UNKNOWN);
                per = per.saturating_add(factor(es, STRING_TRAVERSAL));
            }
            (t.saturating_mul(per).saturating_add(arg_cost), None, None)
        }
        "url" | "lowerAscii" | "upperAscii" | "substring" | "trim" => {
            let s = match target {
                Some(t) => t.size(),
                None => size(a0),
            };
            (plus(factor(s, STRING_TRAVERSAL)), Some(s), None)
        }
        "replace" if target.is_some() => {
            let s = size(target);
            (plus(factor(s, 2.0 * STRING_TRAVERSAL)), None, None)
        }
        "split" if target.is_some() => {
            let s = size(target);
            (plus(factor(s, 2.0 * STRING_TRAVERSAL)), Some(s), Some(s))
        }
        "join" if target.is_some() => {
            let t = target.map_or(UNKNOWN, Node::size);
            let es = target.and_then(Node::elem_size).unwrap_or(UNKNOWN);
            let mut s = t.saturating_mul(es);
            if let Some(sep) = a0 {
                s = s.saturating_add(sep.size().saturating_mul(t.saturating_sub(1)));
            }
            (plus(factor(s, STRING_TRAVERSAL)), Some(s), None)
        }
        // Kubernetes' format library: a name-format regex of at most 128.
        "validate" if target.is_some() => (
            plus(factor(
                factor(size(a0), STRING_TRAVERSAL),
                128.0 * REGEX_LENGTH,
            )),
            None,
            None,
        ),
        "quantity" | "isQuantity" | "isURL" | "isIP" | "isCIDR" | "ip" | "cidr" => {
            (plus(factor(size(a0), STRING_TRAVERSAL)), None, None)
        }
        // Everything else is constant.
        _ => (plus(1), None, None),
    }
}

/// The overloads the checker knows, as signature patterns.
mod signatures {
    use super::Ty;

    /// A type pattern: `int`, `list(A)`, `map(A, B)`, `A`...
    #[derive(Debug, Clone)]
    enum Pat {
        Named(&'static str),
        Param(usize),
        List(Box<Pat>),
        Map(Box<Pat>, Box<Pat>),
        Any,
    }

    fn parse(s: &'static str) -> Pat {
        let s = s.trim();
        if let Some(inner) = s.strip_prefix("list(").and_then(|r| r.strip_suffix(')')) {
            return Pat::List(Box::new(parse(inner)));
        }
        if let Some(inner) = s.strip_prefix("map(").and_then(|r| r.strip_suffix(')')) {
            let (k, v) = inner.split_once(',').unwrap_or((inner, "dyn"));
            return Pat::Map(Box::new(parse(k)), Box::new(parse(v)));
        }
        match s {
            "A" => Pat::Param(0),
            "B" => Pat::Param(1),
            "dyn" => Pat::Any,
            other => Pat::Named(other),
        }
    }

    /// (function, receiver (`-` for a global call), parameters, result).
    type Sig = (&'static str, &'static str, &'static str, &'static str);

    const NUMS: [&str; 3] = ["int", "uint", "double"];

    fn table() -> Vec<Sig> {
        let mut t: Vec<Sig> = vec![
            ("_+_", "-", "string string", "string"),
            ("_+_", "-", "bytes bytes", "bytes"),
            ("_+_", "-", "list(A) list(A)", "list(A)"),
            ("_+_", "-", "duration duration", "duration"),
            ("_+_", "-", "timestamp duration", "timestamp"),
            ("_+_", "-", "duration timestamp", "timestamp"),
            ("_-_", "-", "timestamp timestamp", "duration"),
            ("_-_", "-", "timestamp duration", "timestamp"),
            ("_-_", "-", "duration duration", "duration"),
            ("_%_", "-", "int int", "int"),
            ("_%_", "-", "uint uint", "uint"),
            ("-_", "-", "int", "int"),
            ("-_", "-", "double", "double"),
            ("!_", "-", "bool", "bool"),
            ("_&&_", "-", "bool bool", "bool"),
            ("_||_", "-", "bool bool", "bool"),
            ("_?_:_", "-", "bool A A", "A"),
            ("_==_", "-", "A A", "bool"),
            ("_!=_", "-", "A A", "bool"),
            ("_[_]", "-", "list(A) dyn", "A"),
            ("_[_]", "-", "map(A, B) dyn", "B"),
            ("@in", "-", "A list(A)", "bool"),
            ("@in", "-", "A map(A, B)", "bool"),
            ("size", "-", "string", "int"),
            ("size", "-", "bytes", "int"),
            ("size", "-", "list(A)", "int"),
            ("size", "-", "map(A, B)", "int"),
            ("size", "string", "", "int"),
            ("size", "bytes", "", "int"),
            ("size", "list(A)", "", "int"),
            ("size", "map(A, B)", "", "int"),
            ("contains", "string", "string", "bool"),
            ("startsWith", "string", "string", "bool"),
            ("endsWith", "string", "string", "bool"),
            ("matches", "string", "string", "bool"),
            ("matches", "-", "string string", "bool"),
            ("bool", "-", "bool", "bool"),
            ("bool", "-", "string", "bool"),
            ("bytes", "-", "bytes", "bytes"),
            ("bytes", "-", "string", "bytes"),
            ("dyn", "-", "A", "dyn"),
            ("type", "-", "A", "type"),
            // Strings extension.
            ("charAt", "string", "int", "string"),
            ("indexOf", "string", "string", "int"),
            ("indexOf", "string", "string int", "int"),
            ("lastIndexOf", "string", "string", "int"),
            ("lastIndexOf", "string", "string int", "int"),
            ("lowerAscii", "string", "", "string"),
            ("upperAscii", "string", "", "string"),
            ("replace", "string", "string string", "string"),
            ("replace", "string", "string string int", "string"),
            ("split", "string", "string", "list(string)"),
            ("split", "string", "string int", "list(string)"),
            ("substring", "string", "int", "string"),
            ("substring", "string", "int int", "string"),
            ("trim", "string", "", "string"),
            ("join", "list(string)", "", "string"),
            ("join", "list(string)", "string", "string"),
            // Kubernetes' lists, regex and quantity libraries.
            ("isSorted", "list(A)", "", "bool"),
            ("indexOf", "list(A)", "A", "int"),
            ("lastIndexOf", "list(A)", "A", "int"),
            ("find", "string", "string", "string"),
            ("findAll", "string", "string", "list(string)"),
            ("findAll", "string", "string int", "list(string)"),
            ("quantity", "-", "string", "kubernetes.Quantity"),
            ("isQuantity", "-", "string", "bool"),
            ("url", "-", "string", "kubernetes.URL"),
            // Durations and timestamps.
            ("duration", "-", "string", "duration"),
            ("duration", "-", "duration", "duration"),
            ("timestamp", "-", "string", "timestamp"),
            ("timestamp", "-", "timestamp", "timestamp"),
            ("isURL", "-", "string", "bool"),
        ];
        for n in NUMS {
            for op in ["_+_", "_-_", "_*_", "_/_"] {
                t.push((op, "-", intern(format!("{n} {n}")), n));
            }
            t.push(("int", "-", n, "int"));
            t.push(("uint", "-", n, "uint"));
            t.push(("double", "-", n, "double"));
            t.push(("string", "-", n, "string"));
        }
        for ty in ["int", "uint", "double", "duration"] {
            t.push(("sum", intern(format!("list({ty})")), "", ty));
        }
        for conv in ["int", "uint", "double"] {
            t.push((conv, "-", "string", conv));
        }
        t.push(("int", "-", "timestamp", "int"));
        for getter in [
            "getFullYear",
            "getMonth",
            "getDayOfYear",
            "getDayOfMonth",
            "getDate",
            "getDayOfWeek",
            "getHours",
            "getMinutes",
            "getSeconds",
            "getMilliseconds",
        ] {
            t.push((getter, "timestamp", "", "int"));
            t.push((getter, "timestamp", "string", "int"));
        }
        for getter in ["getHours", "getMinutes", "getSeconds", "getMilliseconds"] {
            t.push((getter, "duration", "", "int"));
        }
        for from in ["string", "bool", "bytes", "timestamp", "duration"] {
            t.push(("string", "-", from, "string"));
        }
        // Ordering: numbers across types, and each ordered type with itself.
        for op in ["_<_", "_<=_", "_>_", "_>=_"] {
            for a in NUMS {
                for b in NUMS {
                    t.push((op, "-", intern(format!("{a} {b}")), "bool"));
                }
            }
            for ty in ["string", "bytes", "bool", "timestamp", "duration"] {
                t.push((op, "-", intern(format!("{ty} {ty}")), "bool"));
            }
        }
        for f in ["min", "max"] {
            for ty in [
                "int",
                "uint",
                "double",
                "bool",
                "string",
                "bytes",
                "duration",
                "timestamp",
            ] {
                t.push((f, intern(format!("list({ty})")), "", ty));
            }
        }
        t
    }

    /// A generated signature string. Interned: the table is built once.
    fn intern(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    struct Overload {
        name: &'static str,
        receiver: Option<Pat>,
        params: Vec<Pat>,
        result: Pat,
    }

    static TABLE: std::sync::LazyLock<Vec<Overload>> = std::sync::LazyLock::new(|| {
        table()
            .into_iter()
            .map(|(name, recv, params, result)| Overload {
                name,
                receiver: (recv != "-").then(|| parse(recv)),
                params: split_params(params).into_iter().map(parse).collect(),
                result: parse(result),
            })
            .collect()
    });

    /// Splits `a b` and `map(A, B) dyn` at the spaces outside parentheses.
    fn split_params(s: &'static str) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut depth = 0i32;
        let mut start = 0;
        for (i, c) in s.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => depth -= 1,
                ' ' if depth == 0 => {
                    if i > start {
                        out.push(&s[start..i]);
                    }
                    start = i + 1;
                }
                _ => {}
            }
        }
        if start < s.len() {
            out.push(&s[start..]);
        }
        out
    }

    pub enum Resolved {
        /// No overload of that name is known: run time decides.
        Unknown,
        Type(Ty),
        NoMatch,
    }

    pub fn resolve(name: &str, target: Option<&Ty>, args: &[Ty]) -> Resolved {
        let mut known = false;
        let mut result: Option<Ty> = None;
        let mut ambiguous = false;
        for o in TABLE.iter().filter(|o| o.name == name) {
            if o.receiver.is_some() != target.is_some() {
                continue;
            }
            known = true;
            if o.params.len() != args.len() {
                continue;
            }
            let mut binds: [Option<Ty>; 2] = [None, None];
            let ok = match (&o.receiver, target) {
                (Some(p), Some(t)) => unify(p, t, &mut binds),
                _ => true,
            } && o
                .params
                .iter()
                .zip(args)
                .all(|(p, a)| unify(p, a, &mut binds));
            if ok {
                let r = substitute(&o.result, &binds);
                match &result {
                    None => result = Some(r),
                    Some(prev) if super::same(prev, &r) => {}
                    Some(_) => ambiguous = true,
                }
            }
        }
        match (known, result) {
            (false, _) => Resolved::Unknown,
            (true, None) => Resolved::NoMatch,
            (true, Some(_)) if ambiguous => Resolved::Type(Ty::Dyn),
            (true, Some(r)) => Resolved::Type(r),
        }
    }

    fn named(n: &str) -> Ty {
        match n {
            "int" => Ty::Int,
            "uint" => Ty::Uint,
            "double" => Ty::Double,
            "string" => Ty::String,
            "bytes" => Ty::Bytes,
            "bool" => Ty::Bool,
            "null_type" => Ty::Null,
            "duration" => Ty::Duration,
            "timestamp" => Ty::Timestamp,
            "type" => Ty::Type,
            "kubernetes.Quantity" => Ty::Opaque("kubernetes.Quantity"),
            "kubernetes.URL" => Ty::Opaque("kubernetes.URL"),
            _ => Ty::Dyn,
        }
    }

    fn substitute(p: &Pat, binds: &[Option<Ty>; 2]) -> Ty {
        match p {
            Pat::Named(n) => named(n),
            Pat::Param(i) => binds[*i].clone().unwrap_or(Ty::Dyn),
            Pat::List(e) => Ty::List(Box::new(substitute(e, binds))),
            Pat::Map(k, v) => Ty::Map(
                Box::new(substitute(k, binds)),
                Box::new(substitute(v, binds)),
            ),
            Pat::Any => Ty::Dyn,
        }
    }

    /// Whether `t` may be passed where `p` is expected; binds parameters.
    fn unify(p: &Pat, t: &Ty, binds: &mut [Option<Ty>; 2]) -> bool {
        let t = t.shape();
        if matches!(t, Ty::Dyn) {
            return true;
        }
        match p {
            Pat::Any => true,
            Pat::Param(i) => match binds[*i].clone() {
                None => {
                    binds[*i] = Some(t);
                    true
                }
                Some(b) => compatible(&b, &t),
            },
            Pat::List(e) => match t {
                Ty::List(te) => unify(e, &te, binds),
                _ => false,
            },
            Pat::Map(k, v) => match t {
                Ty::Map(tk, tv) => unify(k, &tk, binds) && unify(v, &tv, binds),
                _ => false,
            },
            Pat::Named(n) => super::same(&named(n), &t) && !matches!(named(n), Ty::Dyn),
        }
    }

    /// Whether two uses of one type parameter agree. `dyn` and null agree
    /// with anything (null is assignable to objects and optionals).
    fn compatible(a: &Ty, b: &Ty) -> bool {
        let (a, b) = (a.shape(), b.shape());
        match (&a, &b) {
            (Ty::Dyn, _) | (_, Ty::Dyn) | (Ty::Null, _) | (_, Ty::Null) => true,
            (Ty::List(x), Ty::List(y)) => compatible(x, y),
            (Ty::Map(xk, xv), Ty::Map(yk, yv)) => compatible(xk, yk) && compatible(xv, yv),
            (Ty::Decl(x), Ty::Decl(y)) => std::sync::Arc::ptr_eq(x, y) || a.name() == b.name(),
            _ => a.name() == b.name(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(kind: DeclKind, max: u64) -> Arc<Decl> {
        Arc::new(Decl {
            kind,
            max_elements: max,
            min_size: 2,
        })
    }

    fn widget() -> Ty {
        let mut f = BTreeMap::new();
        f.insert("replicas".to_string(), d(DeclKind::Int, 0));
        f.insert("ratio".to_string(), d(DeclKind::Double, 0));
        f.insert("name".to_string(), d(DeclKind::String, 40));
        f.insert(
            "tags".to_string(),
            d(DeclKind::List(d(DeclKind::String, 1_000_000)), 1_000_000),
        );
        Ty::Decl(d(DeclKind::Object(f), 0))
    }

    fn run(src: &str) -> Result<u64, String> {
        let p = super::super::compile(src).map_err(|e| e.to_string())?;
        check(&p, &[("self", widget())], Some(Want::Bool))
            .map(|c| c.max_cost)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn undefined_fields_and_overloads() {
        assert_eq!(
            run("self.foo == 1").unwrap_err(),
            "ERROR: <input>:1:5: undefined field 'foo'\n | self.foo == 1\n | ....^"
        );
        assert!(
            run("has(self.nope)")
                .unwrap_err()
                .contains("undefined field 'nope'")
        );
        assert!(
            run("self.tags.all(t, t.x == 1)")
                .unwrap_err()
                .contains("type 'string' does not support field selection")
        );
        let e = run("self.replicas.startsWith('a')").unwrap_err();
        assert!(
            e.contains("found no matching overload for 'startsWith' applied to 'int.(string)'"),
            "{e}"
        );
        let e = run("self.ratio == 1").unwrap_err();
        assert!(e.contains("applied to '(double, int)'"), "{e}");
        assert_eq!(
            run("self.replicas + 1").unwrap_err(),
            "cel expression must evaluate to a bool"
        );
        for ok in [
            "self.replicas > 1 && self.name.startsWith('x')",
            "self.tags.all(t, t.size() < 10)",
            "self.tags.map(t, t.size()).all(n, n > 0)",
            "has(self.name) ? self.name.size() > 0 : true",
            "self.ratio < 1.0 && self.replicas >= 0.5",
            "self.tags.exists_one(t, t == 'a')",
            "[1, 2].sum() == 3 && dyn(self.replicas) == 'x'",
        ] {
            assert!(run(ok).is_ok(), "{ok}: {:?}", run(ok));
        }
        assert!(
            run("['a'].sum() == 'a'")
                .unwrap_err()
                .contains("found no matching overload for 'sum' applied to 'list(string).()'")
        );
    }

    #[test]
    fn costs_grow_with_bounds() {
        let cheap = run("self.name.startsWith('x')").unwrap();
        assert!(cheap < 10, "{cheap}");
        // One pass over a million strings of a million characters.
        let pass = run("self.tags.all(t, t.contains('x'))").unwrap();
        assert!(pass > 10_000_000, "{pass}");
        let nested = run("self.tags.all(a, self.tags.all(b, a == b))").unwrap();
        assert!(nested > pass, "{nested}");
    }

    #[test]
    fn escaping() {
        assert_eq!(
            escape("a-b.c/d").as_deref(),
            Some("a__dash__b__dot__c__slash__d")
        );
        assert_eq!(escape("namespace").as_deref(), Some("__namespace__"));
        assert_eq!(escape("a__b").as_deref(), Some("a__underscores__b"));
        assert_eq!(escape("1a"), None);
        assert_eq!(escape("a b"), None);
    }
}
