//! Generates the message table `src/api/protobuf` decodes Kubernetes protobuf
//! request bodies with.
//!
//! Field numbers come from the `k8s-pb` crate (kube-rs's prost bindings of
//! every Kubernetes .proto): its generated source carries, per message, lines
//! like `#[prost(string, optional, tag = "2")] pub generate_name`. prost lost
//! the original field names (snake_case), so the JSON names come from the
//! `k8s-openapi` crate's generated source (`"generateName" => Field::Key_..`,
//! plus each definition's `required` list): a JSON property matches a prost
//! field when both are equal ignoring case and separators (see `key`). Both crates are located through `cargo metadata`; nothing from them
//! is copied into the repository, the table lands in OUT_DIR.
//!
//! Output (`$OUT_DIR/protobuf_messages.rs`): `MESSAGES` (one entry per
//! message; fields sorted by tag; message references are indices) and
//! `GROUPS` (API group -> module prefix, from k8s-pb's `Resource` impls).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use heck::ToLowerCamelCase;
use serde_json::Value;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=Cargo.lock");
    let (pb_src, openapi_src) = locate_sources();
    let mut pb = PbSource::default();
    parse_pb_dir(&pb_src, &pb_src, &mut pb);
    let defs = parse_openapi_dir(&openapi_src);
    let (table, report) = resolve(&pb, &defs);
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out.join("protobuf_messages.rs"), table).expect("write protobuf_messages.rs");
    // For review: fields of defined types whose JSON name was guessed.
    std::fs::write(out.join("protobuf_report.txt"), report).expect("write protobuf_report.txt");
}

/// The `src` dirs of k8s-pb and of the k8s-openapi version module we build
/// with (e.g. `src/v1_33`).
fn locate_sources() -> (PathBuf, PathBuf) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(&std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"))
        .join("Cargo.toml");
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(&manifest)
        .output()
        .expect("run cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let meta: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let src_of = |name: &str| -> (String, PathBuf) {
        let pkg = packages
            .iter()
            .filter(|p| p["name"] == name)
            .max_by_key(|p| p["version"].as_str().unwrap_or("").to_string())
            .unwrap_or_else(|| {
                panic!("{name} is not in the dependency graph (dev-dependency k8s-pb?)")
            });
        let manifest = PathBuf::from(pkg["manifest_path"].as_str().expect("manifest_path"));
        let id = pkg["id"].as_str().expect("id").to_string();
        (id, manifest.parent().expect("package dir").join("src"))
    };
    let (_, pb) = src_of("k8s-pb");
    let (openapi_id, openapi) = src_of("k8s-openapi");
    // The enabled `v1_NN` feature picks the version module.
    let version = meta["resolve"]["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["id"] == openapi_id.as_str()))
        .and_then(|n| n["features"].as_array())
        .and_then(|fs| {
            fs.iter()
                .filter_map(|f| f.as_str())
                .filter(|f| f.starts_with("v1_"))
                .max()
                .map(str::to_string)
        })
        .expect("k8s-openapi version feature");
    (pb, openapi.join(version))
}

// ---- k8s-pb ----------------------------------------------------------------

#[derive(Debug, Clone)]
enum Scalar {
    String,
    Bytes,
    Bool,
    Int32,
    Int64,
    Double,
    /// A message, by its key `module.Name`.
    Message(String),
}

#[derive(Debug, Clone)]
struct PbField {
    tag: u32,
    /// prost's field name, without `r#`.
    name: String,
    ty: Scalar,
    repeated: bool,
    map: bool,
}

#[derive(Debug, Clone)]
struct PbMessage {
    module: String,
    name: String,
    fields: Vec<PbField>,
}

#[derive(Default)]
struct PbSource {
    messages: Vec<PbMessage>,
    /// API group -> module without its version (`apps` -> `api.apps`).
    groups: BTreeMap<String, String>,
}

fn parse_pb_dir(root: &Path, dir: &Path, out: &mut PbSource) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read k8s-pb dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            parse_pb_dir(root, &path, out);
        } else if path.file_name().is_some_and(|n| n == "mod.rs") {
            let rel = path
                .parent()
                .expect("parent")
                .strip_prefix(root)
                .expect("under root");
            let module: Vec<String> = rel
                .iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect();
            let text = std::fs::read_to_string(&path).expect("read k8s-pb source");
            parse_pb_file(&module, &text, out);
        }
    }
}

fn parse_pb_file(module: &[String], text: &str, out: &mut PbSource) {
    let module_name = module.join(".");
    let mut current: Option<PbMessage> = None;
    let mut attr: Option<String> = None;
    let mut decl = String::new();
    let mut in_resource_impl = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("///") || t.starts_with("#[doc") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("pub struct ") {
            let name = rest
                .split([' ', '{'])
                .next()
                .expect("struct name")
                .to_string();
            let msg = PbMessage {
                module: module_name.clone(),
                name,
                fields: Vec::new(),
            };
            if rest.trim_end().ends_with("{}") {
                out.messages.push(msg);
            } else {
                current = Some(msg);
            }
            continue;
        }
        if line.starts_with("impl crate::Resource for ") {
            in_resource_impl = true;
            continue;
        }
        if in_resource_impl {
            if let Some(rest) = t.strip_prefix("const GROUP: &'static str = \"") {
                let group = rest.trim_end_matches("\";").to_string();
                let prefix = module[..module.len() - 1].join(".");
                out.groups.entry(group).or_insert(prefix);
            }
            if line == "}" {
                in_resource_impl = false;
            }
            continue;
        }
        let Some(msg) = current.as_mut() else {
            continue;
        };
        if line == "}" {
            out.messages.push(current.take().expect("message"));
            continue;
        }
        if let Some(a) = t.strip_prefix("#[prost(") {
            attr = Some(
                a.strip_suffix(")]")
                    .expect("one-line prost attribute")
                    .to_string(),
            );
            continue;
        }
        if attr.is_some() {
            decl.push_str(t);
            if depth(&decl) == 0 && decl.ends_with(',') {
                let a = attr.take().expect("attribute");
                msg.fields.push(parse_pb_field(module, &a, &decl));
                decl.clear();
            }
        }
    }
}

fn depth(s: &str) -> i32 {
    s.chars().fold(0, |d, c| match c {
        '<' => d + 1,
        '>' => d - 1,
        _ => d,
    })
}

/// Splits a prost attribute at top-level commas (quoted parts keep theirs).
fn attr_parts(attr: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in attr.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => parts.push(std::mem::take(&mut cur).trim().to_string()),
            _ => cur.push(c),
        }
    }
    parts.push(cur.trim().to_string());
    parts
}

fn parse_pb_field(module: &[String], attr: &str, decl: &str) -> PbField {
    let decl: String = decl.chars().filter(|c| !c.is_whitespace()).collect();
    let (name, ty) = decl
        .strip_prefix("pub")
        .and_then(|d| d.split_once(':'))
        .unwrap_or_else(|| panic!("unexpected field declaration {decl}"));
    let name = name.trim_start_matches("r#").to_string();
    let parts = attr_parts(attr);
    let (kind, value) = match parts[0].split_once('=') {
        Some((k, v)) => (k.trim().to_string(), v.trim().trim_matches('"').to_string()),
        None => (parts[0].clone(), String::new()),
    };
    let tag = parts
        .iter()
        .find_map(|p| p.strip_prefix("tag = \""))
        .and_then(|t| t.trim_end_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("no tag in {attr}"));
    let repeated = parts.iter().any(|p| p == "repeated");
    let message = || Scalar::Message(resolve_path(module, &innermost_type(ty)));
    let (ty, map) = match kind.as_str() {
        "btree_map" | "map" => {
            let (k, v) = value
                .split_once(',')
                .unwrap_or_else(|| panic!("map attribute {attr}"));
            assert_eq!(
                k.trim(),
                "string",
                "only string-keyed maps are expected: {attr}"
            );
            (scalar(v.trim(), &message), true)
        }
        other => (scalar(other, &message), false),
    };
    PbField {
        tag,
        name,
        ty,
        repeated,
        map,
    }
}

fn scalar(kind: &str, message: &dyn Fn() -> Scalar) -> Scalar {
    match kind {
        "string" => Scalar::String,
        "bytes" => Scalar::Bytes,
        "bool" => Scalar::Bool,
        "int32" => Scalar::Int32,
        "int64" => Scalar::Int64,
        "double" => Scalar::Double,
        "message" => message(),
        other => panic!("protobuf field kind {other} is not handled by src/api/protobuf"),
    }
}

/// The message path inside Option/Vec/Box/BTreeMap wrappers.
fn innermost_type(ty: &str) -> String {
    // rustfmt leaves a trailing comma in multi-line generic arguments.
    let ty = ty.trim_end_matches(',').replace(",>", ">");
    let mut t = ty.as_str();
    loop {
        let before = t;
        for w in [
            "::core::option::Option<",
            "::prost::alloc::vec::Vec<",
            "::prost::alloc::boxed::Box<",
        ] {
            if let Some(rest) = t.strip_prefix(w) {
                t = rest.strip_suffix('>').expect("balanced wrapper");
            }
        }
        if let Some(rest) = t.strip_prefix("::prost::alloc::collections::BTreeMap<") {
            let rest = rest.strip_suffix('>').expect("balanced map");
            t = rest.split_once(',').expect("map value type").1;
        }
        if t == before {
            return t.to_string();
        }
    }
}

/// Resolves a (possibly `super::`-relative) Rust path to a message key.
fn resolve_path(module: &[String], path: &str) -> String {
    let mut base: Vec<String> = module.to_vec();
    let mut segments: Vec<&str> = path.split("::").collect();
    if segments.first() == Some(&"crate") {
        base.clear();
        segments.remove(0);
    }
    while segments.first() == Some(&"super") {
        base.pop();
        segments.remove(0);
    }
    base.extend(segments.iter().map(|s| s.to_string()));
    base.join(".")
}

// ---- k8s-openapi -------------------------------------------------------------

#[derive(Debug, Default, Clone)]
struct Def {
    /// The definition's own spelling of the type name, e.g. `CSIDriverSpec`.
    go_name: String,
    properties: Vec<String>,
    required: BTreeSet<String>,
}

/// Definitions keyed by (module, `key` of the type name), e.g.
/// ("api.core.v1", "awselasticblockstorevolumesource").
type Defs = BTreeMap<(String, String), Def>;

fn parse_openapi_dir(dir: &Path) -> Defs {
    let mut defs = Defs::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read k8s-openapi dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read k8s-openapi source");
                if let Some((name, def)) = parse_openapi_file(&text) {
                    let (prefix, short) = name.rsplit_once('.').expect("dotted definition name");
                    let module = prefix.trim_start_matches("io.k8s.").replace('-', "_");
                    defs.insert((module, key(short)), def);
                }
            }
        }
    }
    defs
}

fn parse_openapi_file(text: &str) -> Option<(String, Def)> {
    let mut lines = text.lines();
    let mut name = None;
    while let Some(line) = lines.next() {
        if line.contains("fn schema_name()") {
            let next = lines.next()?.trim();
            name = next
                .strip_suffix(".into()")
                .map(|s| s.trim_matches('"').to_string());
            break;
        }
    }
    let name = name?;
    let mut def = Def {
        go_name: name.rsplit('.').next()?.to_string(),
        ..Def::default()
    };
    let mut in_required = false;
    for line in text.lines() {
        let t = line.trim();
        if let Some((json, _)) = t.split_once("\" => Field::Key_") {
            def.properties
                .push(json.trim_start_matches('"').to_string());
        } else if t == "\"required\": [" {
            in_required = true;
        } else if in_required {
            if t.starts_with(']') {
                in_required = false;
            } else {
                def.required
                    .insert(t.trim_end_matches(',').trim_matches('"').to_string());
            }
        }
    }
    Some((name, def))
}

// ---- resolution ----------------------------------------------------------------

/// The matching key of a JSON property and a prost field name: prost-build's
/// snake_case differs from heck's today on acronyms (`podIPs` -> `pod_ips`,
/// heck says `pod_i_ps`), and some proto names differ from the JSON name in
/// case only (`uID` -> `u_id` for `uid`), so both sides drop case and
/// separators (`x-kubernetes-list-type`, `$ref` match too).
fn key(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn resolve(pb: &PbSource, defs: &Defs) -> (String, String) {
    let mut report = String::new();
    let index: HashMap<String, usize> = pb
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| (format!("{}.{}", m.module, m.name), i))
        .collect();
    // Every JSON name by its snake form, for messages without a definition.
    let mut global: BTreeMap<String, String> = BTreeMap::new();
    for def in defs.values() {
        for p in &def.properties {
            global.entry(key(p)).or_insert_with(|| p.clone());
        }
    }
    // A message's own definition.
    let own: Vec<Option<&Def>> = pb
        .messages
        .iter()
        .map(|m| defs.get(&(m.module.clone(), key(&m.name))))
        .collect();
    // Inline (`json:",inline"`) members: a message field the definition has
    // no property for, whose own fields (see `covered`) are properties of the
    // definition. Such a message without a definition of its own takes the
    // parent's (VolumeSource inside Volume). Only own definitions count: a
    // type may have been flattened differently in another version.
    let mut adopted: Vec<Option<&Def>> = vec![None; pb.messages.len()];
    let mut inline: BTreeSet<(usize, u32)> = BTreeSet::new();
    loop {
        let mut changed = false;
        for (i, m) in pb.messages.iter().enumerate() {
            let Some(def) = own[i].or(adopted[i]) else {
                continue;
            };
            let props: BTreeSet<String> = def.properties.iter().map(|p| key(p)).collect();
            for f in &m.fields {
                let Scalar::Message(target) = &f.ty else {
                    continue;
                };
                if f.repeated
                    || f.map
                    || props.contains(&key(&f.name))
                    || inline.contains(&(i, f.tag))
                {
                    continue;
                }
                let sub = index[target];
                if covered(pb, &index, sub, &props, 0) {
                    inline.insert((i, f.tag));
                    if own[sub].is_none() && adopted[sub].is_none() {
                        adopted[sub] = Some(def);
                    }
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    // Otherwise the same type's definition in another version of its group
    // names the fields (alpha/beta versions k8s-openapi does not carry).
    let def_of: Vec<Option<&Def>> = pb
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            own[i].or(adopted[i]).or_else(|| {
                let group = m.module.rsplit_once('.').map_or("", |(g, _)| g);
                defs.iter()
                    .find(|((module, name), _)| {
                        *name == key(&m.name)
                            && module.rsplit_once('.').is_some_and(|(g, _)| g == group)
                    })
                    .map(|(_, d)| d)
            })
        })
        .collect();
    let mut out = String::from(
        "// @generated by build.rs from the k8s-pb and k8s-openapi sources.\n\
         pub static MESSAGES: &[Message] = &[\n",
    );
    for (i, m) in pb.messages.iter().enumerate() {
        let def = def_of[i];
        let go_name = own[i].map_or(m.name.as_str(), |d| d.go_name.as_str());
        let by_snake: HashMap<String, &String> = def
            .map(|d| d.properties.iter().map(|p| (key(p), p)).collect())
            .unwrap_or_default();
        let mut fields = m.fields.clone();
        fields.sort_by_key(|f| f.tag);
        let _ = write!(
            out,
            "    Message {{ module: {:?}, name: {:?}, fields: &[",
            m.module, go_name
        );
        for f in &fields {
            let is_inline = inline.contains(&(i, f.tag));
            let json = match by_snake.get(&key(&f.name)) {
                Some(json) => json.to_string(),
                None => {
                    let guess = global
                        .get(&key(&f.name))
                        .cloned()
                        .unwrap_or_else(|| f.name.to_lower_camel_case());
                    if def.is_some() && !is_inline {
                        let _ = writeln!(report, "{}.{} {} -> {guess}", m.module, m.name, f.name);
                    }
                    guess
                }
            };
            let required = def.is_some_and(|d| d.required.contains(&json));
            let ty = match &f.ty {
                Scalar::String => "Ty::String".to_string(),
                Scalar::Bytes => "Ty::Bytes".to_string(),
                Scalar::Bool => "Ty::Bool".to_string(),
                Scalar::Int32 => "Ty::Int32".to_string(),
                Scalar::Int64 => "Ty::Int64".to_string(),
                Scalar::Double => "Ty::Double".to_string(),
                Scalar::Message(key) => format!(
                    "Ty::Message({})",
                    index
                        .get(key)
                        .unwrap_or_else(|| panic!("unknown message {key}"))
                ),
            };
            let shape = match (f.map, f.repeated) {
                (true, _) => "Shape::Map",
                (false, true) => "Shape::Repeated",
                (false, false) if is_inline => "Shape::Inline",
                (false, false) => "Shape::Single",
            };
            let _ = write!(
                out,
                " Field {{ tag: {}, json: {:?}, ty: {ty}, shape: {shape}, required: {required} }},",
                f.tag, json
            );
        }
        out.push_str(" ] },\n");
    }
    out.push_str("];\n\npub static GROUPS: &[(&str, &str)] = &[\n");
    for (group, module) in &pb.groups {
        let _ = writeln!(out, "    ({group:?}, {module:?}),");
    }
    out.push_str("];\n");
    (out, report)
}

/// Whether message `m` reads as part of the definition with `props`: at
/// least three quarters of its fields are properties there, directly or
/// through a nested inline member (k8s-pb may be a release ahead of
/// k8s-openapi, so a new field or two may be missing from `props`).
fn covered(
    pb: &PbSource,
    index: &HashMap<String, usize>,
    m: usize,
    props: &BTreeSet<String>,
    depth: u32,
) -> bool {
    let fields = &pb.messages[m].fields;
    let hits = fields
        .iter()
        .filter(|f| {
            props.contains(&key(&f.name))
                || matches!(&f.ty, Scalar::Message(k)
                    if !f.repeated && !f.map && depth < 4 && covered(pb, index, index[k], props, depth + 1))
        })
        .count();
    hits > 0 && hits * 4 >= fields.len() * 3
}
