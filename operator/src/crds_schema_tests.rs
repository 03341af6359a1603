//! What a real API server checks when `crds/*.yaml` is applied, checked here on the committed
//! files: the structural-schema rules of `apiextensions.k8s.io/v1`, list-map keys, defaults
//! that validate, Kubernetes' formats, printer columns, and CEL rules that compile, stay in
//! scope and within the cost budget (kube-cel), with the bounds the cost estimator needs.

use std::path::PathBuf;

use kube_cel::{analyze_rule, compile_schema, ScopeContext, WarningKind};
use serde_json::{json, Map, Value};

fn crd_files() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let value: Value = serde_yaml::from_str(&text).unwrap();
        out.push((
            path.file_name().unwrap().to_string_lossy().into_owned(),
            value,
        ));
    }
    assert_eq!(out.len(), 2, "expected both CRDs in {}", dir.display());
    out
}

fn versions(crd: &Value) -> &Vec<Value> {
    crd["spec"]["versions"].as_array().unwrap()
}

fn root_schema(version: &Value) -> &Value {
    &version["schema"]["openAPIV3Schema"]
}

/// Keywords `apiextensions.k8s.io/v1` refuses anywhere in a schema.
const FORBIDDEN: &[&str] = &[
    "$ref",
    "$schema",
    "definitions",
    "id",
    "patternProperties",
    "dependencies",
    "additionalItems",
];

/// Keywords a value validation inside anyOf/oneOf/allOf/not may not carry.
const NOT_IN_JUNCTORS: &[&str] = &[
    "type",
    "default",
    "nullable",
    "description",
    "title",
    "additionalProperties",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
];

/// Formats the API server recognizes (anything else draws a warning from 1.34 on).
const FORMATS: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
    "date-time",
    "int32",
    "int64",
    "float",
    "double",
];

struct Walk {
    problems: Vec<String>,
}

impl Walk {
    fn problem(&mut self, path: &str, what: impl Into<String>) {
        self.problems.push(format!("{path}: {}", what.into()));
    }

    /// A structural node: typed, no forbidden keywords, consistent.
    fn node(&mut self, path: &str, s: &Value, in_array_items: bool) {
        let Some(m) = s.as_object() else {
            self.problem(path, "schema is not an object");
            return;
        };
        for k in FORBIDDEN {
            if m.contains_key(*k) {
                self.problem(path, format!("{k} is not allowed in a CRD schema"));
            }
        }
        if m.get("uniqueItems") == Some(&Value::Bool(true)) {
            self.problem(path, "uniqueItems: true is not allowed");
        }
        let escape = m.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
            || m.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        let ty = m.get("type").and_then(Value::as_str).unwrap_or_default();
        if ty.is_empty() && !escape {
            self.problem(path, "type is missing (structural schemas type every node)");
        }
        if !ty.is_empty()
            && !["object", "array", "string", "integer", "number", "boolean"].contains(&ty)
        {
            self.problem(path, format!("unknown type {ty}"));
        }
        if m.contains_key("properties") && m.contains_key("additionalProperties") {
            self.problem(path, "properties and additionalProperties together");
        }
        if m.get("additionalProperties") == Some(&Value::Bool(false)) {
            self.problem(path, "additionalProperties: false is not allowed");
        }
        if let Some(f) = m.get("format").and_then(Value::as_str) {
            if !FORMATS.contains(&f) {
                self.problem(path, format!("format {f:?} is not one Kubernetes knows"));
            }
        }
        if ty == "array" {
            match m.get("items") {
                Some(items) if items.is_object() => {
                    self.node(&format!("{path}.items"), items, true)
                }
                _ => self.problem(path, "an array needs one items schema"),
            }
            self.list_type(path, m);
        } else if m.contains_key("items") {
            self.problem(path, "items on a non-array");
        }
        if let Some(props) = m.get("properties").and_then(Value::as_object) {
            if ty != "object" {
                self.problem(path, "properties on a non-object");
            }
            for (k, v) in props {
                self.node(&format!("{path}.{k}"), v, false);
            }
            if let Some(required) = m.get("required").and_then(Value::as_array) {
                for r in required {
                    if !props.contains_key(r.as_str().unwrap_or_default()) {
                        self.problem(path, format!("required {r} is not a property"));
                    }
                }
            }
        }
        if let Some(ap) = m.get("additionalProperties").filter(|v| v.is_object()) {
            self.node(&format!("{path}.additionalProperties"), ap, false);
        }
        for j in ["anyOf", "oneOf", "allOf"] {
            for (i, sub) in m
                .get(j)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                self.junctor(&format!("{path}.{j}[{i}]"), sub, m);
            }
        }
        if let Some(not) = m.get("not") {
            self.junctor(&format!("{path}.not"), not, m);
        }
        if let Some(d) = m.get("default") {
            if let Err(e) = validate_value(s, d) {
                self.problem(path, format!("default {d} does not validate: {e}"));
            }
            if in_array_items {
                // Allowed, but a default on list items is applied to every element: keep an
                // eye on it.
            }
        }
        if let Some(e) = m.get("enum").and_then(Value::as_array) {
            for v in e {
                if let Err(err) = validate_type(ty, v, m.get("nullable") == Some(&json!(true))) {
                    self.problem(path, format!("enum value {v}: {err}"));
                }
            }
        }
        if let Some(rules) = m.get("x-kubernetes-validations") {
            self.rules(path, s, rules);
        }
    }

    /// A value validation under anyOf/oneOf/allOf/not: no types, defaults or docs, and only
    /// properties the structural node declares.
    fn junctor(&mut self, path: &str, sub: &Value, parent: &Map<String, Value>) {
        let Some(m) = sub.as_object() else {
            self.problem(path, "not an object");
            return;
        };
        for k in NOT_IN_JUNCTORS {
            if m.contains_key(*k) {
                self.problem(
                    path,
                    format!("{k} is not allowed inside anyOf/oneOf/allOf/not"),
                );
            }
        }
        for k in FORBIDDEN {
            if m.contains_key(*k) {
                self.problem(path, format!("{k} is not allowed"));
            }
        }
        if let Some(props) = m.get("properties").and_then(Value::as_object) {
            let declared = parent.get("properties").and_then(Value::as_object);
            for (k, v) in props {
                if declared.is_none_or(|d| !d.contains_key(k)) {
                    self.problem(
                        path,
                        format!("property {k} is not declared outside the junctor"),
                    );
                }
                self.junctor(&format!("{path}.{k}"), v, &Map::new());
            }
        }
    }

    fn list_type(&mut self, path: &str, m: &Map<String, Value>) {
        let items = m.get("items").and_then(Value::as_object);
        let item_type = items
            .and_then(|i| i.get("type"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        match m.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("map") => {
                if item_type != "object" {
                    self.problem(path, "a list-type map needs object items");
                }
                let keys = m
                    .get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if keys.is_empty() {
                    self.problem(path, "a list-type map needs x-kubernetes-list-map-keys");
                }
                let required: Vec<&str> = items
                    .and_then(|i| i.get("required"))
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                for k in keys {
                    let k = k.as_str().unwrap_or_default();
                    let prop = items
                        .and_then(|i| i.get("properties"))
                        .and_then(|p| p.get(k));
                    let Some(prop) = prop else {
                        self.problem(
                            path,
                            format!("list-map key {k} is not a property of the items"),
                        );
                        continue;
                    };
                    if !required.contains(&k) && prop.get("default").is_none() {
                        self.problem(
                            path,
                            format!("list-map key {k} must be required or defaulted"),
                        );
                    }
                    if prop.get("nullable") == Some(&json!(true)) {
                        self.problem(path, format!("list-map key {k} must not be nullable"));
                    }
                    let t = prop.get("type").and_then(Value::as_str).unwrap_or_default();
                    if !["string", "integer", "number", "boolean"].contains(&t) {
                        self.problem(path, format!("list-map key {k} must be a scalar"));
                    }
                }
            }
            Some("set") => {
                if !["string", "integer", "number", "boolean"].contains(&item_type) {
                    self.problem(path, "a list-type set needs scalar items");
                }
            }
            Some("atomic") | None => {
                if m.contains_key("x-kubernetes-list-map-keys") {
                    self.problem(path, "list-map keys without list-type map");
                }
            }
            Some(other) => self.problem(path, format!("unknown list-type {other}")),
        }
    }

    /// CEL rules: a message without line breaks, compiles, in scope, within the cost budget;
    /// transition rules need bounded values (maxItems/maxLength) for the estimator.
    fn rules(&mut self, path: &str, s: &Value, rules: &Value) {
        let Some(list) = rules.as_array() else {
            self.problem(path, "x-kubernetes-validations is not a list");
            return;
        };
        let compiled = compile_schema(s);
        for e in compiled.compilation_errors() {
            self.problem(path, format!("CEL rule does not compile: {e}"));
        }
        for r in list {
            let rule = r["rule"].as_str().unwrap_or_default();
            if rule.is_empty() {
                self.problem(path, "a validation without a rule");
            }
            match r.get("message").and_then(Value::as_str) {
                Some(m) if m.trim().is_empty() || m.contains('\n') => self.problem(
                    path,
                    format!("rule {rule:?}: message must be one non-empty line"),
                ),
                Some(_) => {}
                None => self.problem(
                    path,
                    format!("rule {rule:?}: give it a message saying what to fix"),
                ),
            }
            for w in analyze_rule(rule, &compiled, ScopeContext::CrdValidation) {
                if w.kind == WarningKind::WrongScope && binds_macro_variable(rule, &w.message) {
                    // kube-cel counts the variable of `filter(x, ...)` as a free one.
                    continue;
                }
                if matches!(w.kind, WarningKind::CostExceeded | WarningKind::WrongScope) {
                    self.problem(path, format!("rule {rule:?}: {}", w.message));
                }
            }
            if rule.contains("metadata.name") && rule.contains("matches(") {
                self.problem(
                    path,
                    format!("rule {rule:?}: a regex over metadata.name (no maxLength) is estimated over the per-rule budget"),
                );
            }
            if rule.contains("oldSelf") {
                unbounded(path, s, &mut self.problems, rule);
            }
        }
    }
}

/// True when the variable a scope warning names is bound by a macro of `rule`
/// (`all`, `exists`, `exists_one`, `filter`, `map`: `(x, ...)`).
fn binds_macro_variable(rule: &str, message: &str) -> bool {
    let Some(var) = message.split('\'').nth(1) else {
        return false;
    };
    ["all", "exists", "exists_one", "filter", "map"]
        .iter()
        .any(|m| rule.contains(&format!(".{m}({var},")))
}

/// Every array below `s` has maxItems and every string maxLength (or an enum/format that
/// bounds it): what a rule comparing whole values needs to stay within the cost budget.
fn unbounded(path: &str, s: &Value, problems: &mut Vec<String>, rule: &str) {
    let ty = s["type"].as_str().unwrap_or_default();
    match ty {
        "array" if s.get("maxItems").is_none() => problems.push(format!(
            "{path}: rule {rule:?} compares a list without maxItems"
        )),
        "string"
            if s.get("maxLength").is_none()
                && s.get("enum").is_none()
                && s.get("format").is_none() =>
        {
            problems.push(format!(
                "{path}: rule {rule:?} compares a string without maxLength"
            ))
        }
        _ => {}
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            unbounded(&format!("{path}.{k}"), v, problems, rule);
        }
    }
    if let Some(items) = s.get("items") {
        unbounded(&format!("{path}.items"), items, problems, rule);
    }
}

fn validate_type(ty: &str, v: &Value, nullable: bool) -> Result<(), String> {
    let ok = match (ty, v) {
        (_, Value::Null) => nullable,
        ("object", Value::Object(_))
        | ("array", Value::Array(_))
        | ("string", Value::String(_))
        | ("boolean", Value::Bool(_))
        | ("number", Value::Number(_)) => true,
        ("integer", Value::Number(n)) => n.is_i64() || n.is_u64(),
        ("", _) => true,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{v} is not of type {ty}"))
    }
}

/// Validate `v` against structural schema `s` (what the API server does with defaults).
fn validate_value(s: &Value, v: &Value) -> Result<(), String> {
    let ty = s["type"].as_str().unwrap_or_default();
    validate_type(ty, v, s.get("nullable") == Some(&json!(true)))?;
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            return Err(format!("{v} is not one of {e:?}"));
        }
    }
    match v {
        Value::String(text) => {
            let n = text.chars().count() as u64;
            if s.get("maxLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| n > m)
            {
                return Err("longer than maxLength".into());
            }
            if s.get("minLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| n < m)
            {
                return Err("shorter than minLength".into());
            }
            if let Some(p) = s.get("pattern").and_then(Value::as_str) {
                if !regex_matches(p, text) {
                    return Err(format!("does not match {p}"));
                }
            }
        }
        Value::Array(items) => {
            let n = items.len() as u64;
            if s.get("maxItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| n > m)
            {
                return Err("more than maxItems".into());
            }
            if s.get("minItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| n < m)
            {
                return Err("fewer than minItems".into());
            }
            for i in items {
                validate_value(&s["items"], i)?;
            }
        }
        Value::Object(fields) => {
            for r in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if !fields.contains_key(r.as_str().unwrap_or_default()) {
                    return Err(format!("required {r} missing"));
                }
            }
            for (k, fv) in fields {
                match s.get("properties").and_then(|p| p.get(k)) {
                    Some(ps) => validate_value(ps, fv)?,
                    None => return Err(format!("unknown field {k}")),
                }
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or_default();
            if s.get("minimum")
                .and_then(Value::as_f64)
                .is_some_and(|m| x < m)
            {
                return Err("below minimum".into());
            }
            if s.get("maximum")
                .and_then(Value::as_f64)
                .is_some_and(|m| x > m)
            {
                return Err("above maximum".into());
            }
        }
        _ => {}
    }
    Ok(())
}

/// RE2-style `matches` through CEL (the API server evaluates patterns with Go's RE2).
fn regex_matches(pattern: &str, text: &str) -> bool {
    use kube_cel::cel::{Context, Program, Value as CelValue};
    let program = Program::compile("text.matches(pattern)").unwrap();
    let mut ctx = Context::default();
    ctx.add_variable_from_value("text", text.to_string());
    ctx.add_variable_from_value("pattern", pattern.to_string());
    matches!(program.execute(&ctx), Ok(CelValue::Bool(true)))
}

#[test]
fn committed_crds_are_structural_schemas() {
    let mut walk = Walk { problems: vec![] };
    for (file, crd) in crd_files() {
        assert_eq!(crd["apiVersion"], "apiextensions.k8s.io/v1", "{file}");
        assert_eq!(crd["kind"], "CustomResourceDefinition", "{file}");
        let plural = crd["spec"]["names"]["plural"].as_str().unwrap();
        let group = crd["spec"]["group"].as_str().unwrap();
        assert_eq!(
            crd["metadata"]["name"],
            format!("{plural}.{group}"),
            "{file}"
        );
        let storage = versions(&crd)
            .iter()
            .filter(|v| v["storage"] == json!(true))
            .count();
        assert_eq!(storage, 1, "{file}: exactly one storage version");
        for v in versions(&crd) {
            let root = root_schema(v);
            let path = format!("{file}:{}", v["name"].as_str().unwrap());
            assert_eq!(root["type"], "object", "{path}: the root is an object");
            if let Some(meta) = root.get("properties").and_then(|p| p.get("metadata")) {
                let props = meta["properties"].as_object().cloned().unwrap_or_default();
                for k in props.keys() {
                    if k != "name" && k != "generateName" {
                        walk.problem(&path, format!("metadata.{k} may not be restricted"));
                    }
                }
            }
            walk.node(&format!("{path}:openAPIV3Schema"), root, false);
        }
    }
    assert!(
        walk.problems.is_empty(),
        "the API server would refuse or warn:\n{}",
        walk.problems.join("\n")
    );
}

#[test]
fn printer_columns_are_valid() {
    for (file, crd) in crd_files() {
        for v in versions(&crd) {
            for c in v["additionalPrinterColumns"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let t = c["type"].as_str().unwrap_or_default();
                assert!(
                    ["integer", "number", "string", "boolean", "date"].contains(&t),
                    "{file}: column {c}"
                );
                assert!(
                    c["jsonPath"].as_str().unwrap_or_default().starts_with('.'),
                    "{file}: {c}"
                );
                assert!(
                    !c["name"].as_str().unwrap_or_default().is_empty(),
                    "{file}: {c}"
                );
            }
        }
    }
}

#[test]
fn every_field_is_documented_for_kubectl_explain() {
    fn walk(path: &str, s: &Value, missing: &mut Vec<String>) {
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                let p = format!("{path}.{k}");
                if v["description"]
                    .as_str()
                    .unwrap_or_default()
                    .trim()
                    .is_empty()
                {
                    missing.push(p.clone());
                }
                walk(&p, v, missing);
            }
        }
        if let Some(items) = s.get("items") {
            walk(&format!("{path}[]"), items, missing);
        }
    }
    let mut missing = Vec::new();
    for (file, crd) in crd_files() {
        for v in versions(&crd) {
            walk(&file, root_schema(v), &mut missing);
        }
    }
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:?}"
    );
}

/// The checker itself catches what a real API server refuses.
#[test]
fn the_checker_catches_non_structural_schemas() {
    let bad = json!({
        "type": "object",
        "properties": {
            "a": {"description": "untyped"},
            "b": {"type": "object", "properties": {"x": {"type": "string"}},
                  "additionalProperties": {"type": "string"}},
            "c": {"type": "string", "anyOf": [{"type": "string", "description": "no"}]},
            "d": {"type": "array", "items": {"type": "object", "properties": {"k": {"type": "string"}}},
                  "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"]},
            "e": {"type": "string", "default": "toolong", "maxLength": 3},
            "f": {"$ref": "#/definitions/x", "type": "string"},
            "g": {"type": "integer", "format": "uint32"},
            "h": {"type": "object", "properties": {"l": {"type": "array", "items": {"type": "string"}}},
                  "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "immutable"}]},
            "i": {"type": "string", "default": "x", "pattern": "^[0-9]+$"},
        }
    });
    let mut walk = Walk { problems: vec![] };
    walk.node("t", &bad, false);
    let all = walk.problems.join("\n");
    for expected in [
        "t.a: type is missing",
        "t.b: properties and additionalProperties",
        "t.c.anyOf[0]: type is not allowed",
        "t.d: list-map key k must be required or defaulted",
        "t.e: default \"toolong\" does not validate",
        "t.f: $ref is not allowed",
        "t.g: format \"uint32\"",
        "t.h.l: rule \"self == oldSelf\" compares a list without maxItems",
        "t.i: default \"x\" does not validate",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
}
