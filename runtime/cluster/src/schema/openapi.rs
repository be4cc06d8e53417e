//! kube-openapi's schema validator (`validate.SchemaValidator`) as apiextensions-apiserver
//! runs it on custom resources: the same checks in the same order, the same messages,
//! the same choice of which alternative's errors an `anyOf`/`oneOf` reports (the one with
//! the most passing checks), and CRD validation ratcheting on updates (an error in a value
//! that the update did not change is dropped).

use super::field::{FieldError, GoValue, Kind};
use super::{formats, pattern};
use serde_json::{Map, Value};
use std::collections::HashSet;

/// Nesting beyond this (data or schema) is refused rather than recursed into.
pub(crate) const MAX_DEPTH: usize = 256;

/// kube-openapi's error codes, as far as apiextensions tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Code {
    InvalidType,
    Required,
    TooLong,
    Enum,
    MaxItems,
    TooManyProperties,
    /// Any other `errors.Validation` (pattern, minimum, ...): `field.Invalid`.
    Validation,
    /// Not a `Validation` (combinator and range messages): `field.Invalid` at no path.
    Plain,
}

#[derive(Debug, Clone)]
struct OaError {
    code: Code,
    name: String,
    value: GoValue,
    valid: i64,
    values: Vec<Value>,
    message: String,
}

impl OaError {
    fn new(code: Code, name: &str, value: GoValue, message: String) -> Self {
        Self {
            code,
            name: name.to_string(),
            value,
            valid: -1,
            values: Vec::new(),
            message,
        }
    }

    fn plain(message: String) -> Self {
        Self::new(Code::Plain, "", GoValue::Nil, message)
    }
}

/// A `validate.Result`: errors without repeats, and how many checks passed.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    errors: Vec<OaError>,
    /// The messages, once there are many (few are compared in place).
    seen: Option<HashSet<String>>,
    matches: usize,
}

impl Outcome {
    fn add(&mut self, e: OaError) {
        const FEW: usize = 32;
        if self.errors.len() < FEW {
            if self.errors.iter().any(|x| x.message == e.message) {
                return;
            }
        } else {
            let errors = &self.errors;
            let seen = self
                .seen
                .get_or_insert_with(|| errors.iter().map(|x| x.message.clone()).collect());
            if !seen.insert(e.message.clone()) {
                return;
            }
        }
        self.errors.push(e);
    }

    fn merge(&mut self, other: Outcome) {
        for e in other.errors {
            self.add(e);
        }
        self.matches += other.matches;
    }

    fn inc(&mut self) {
        self.matches += 1;
    }

    fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }

    fn error(e: OaError) -> Self {
        let mut o = Self::default();
        o.add(e);
        o
    }

    /// `kubeOpenAPIResultToFieldErrors`: the field errors, under `base` (`None` for the
    /// object itself; `status` for the status subresource).
    pub(crate) fn into_field_errors(self, base: Option<&str>) -> Vec<FieldError> {
        let at = |name: &str| -> String {
            let name = name.strip_prefix('.').unwrap_or(name);
            match (base, name.is_empty()) {
                (Some(b), true) => b.to_string(),
                (None, true) => "<nil>".to_string(),
                (Some(b), false) => format!("{b}.{name}"),
                (None, false) => name.to_string(),
            }
        };
        let blank = |v: GoValue| match v {
            GoValue::Nil => GoValue::Str(String::new()),
            v => v,
        };
        self.errors
            .into_iter()
            .map(|e| {
                let name = if e.name == "." { "" } else { e.name.as_str() };
                match e.code {
                    Code::Plain => {
                        FieldError::invalid(at(""), GoValue::Str(String::new()), e.message)
                    }
                    Code::Required => FieldError::required(at(name)),
                    Code::Enum => {
                        let values: Vec<String> = e
                            .values
                            .iter()
                            .map(|v| match v {
                                Value::String(s) => super::field::go_quote(s),
                                v => super::field::go_quote(&super::field::go_json(v)),
                            })
                            .collect();
                        let detail = if values.is_empty() {
                            String::new()
                        } else {
                            format!("supported values: {}", values.join(", "))
                        };
                        FieldError::new(Kind::NotSupported, at(name), e.value, detail)
                    }
                    Code::TooLong => {
                        let detail = match e.valid {
                            1 => "may not be more than 1 byte".to_string(),
                            n if n >= 0 => format!("may not be more than {n} bytes"),
                            _ => "value is too long".to_string(),
                        };
                        FieldError::new(Kind::TooLong, at(name), GoValue::Omit, detail)
                    }
                    Code::MaxItems | Code::TooManyProperties => {
                        let detail = match e.valid {
                            1 => "must have at most 1 item".to_string(),
                            n if n >= 0 => format!("must have at most {n} items"),
                            _ => "has too many items".to_string(),
                        };
                        FieldError::new(Kind::TooMany, at(name), e.value, detail)
                    }
                    Code::InvalidType => {
                        FieldError::new(Kind::TypeInvalid, at(name), blank(e.value), e.message)
                    }
                    Code::Validation => FieldError::invalid(at(name), blank(e.value), e.message),
                }
            })
            .collect()
    }
}

/// The old value at the same place, for ratcheting.
#[derive(Clone, Copy)]
pub(crate) struct Old<'a> {
    value: Option<&'a Value>,
}

impl<'a> Old<'a> {
    pub(crate) fn none() -> Self {
        Self { value: None }
    }

    pub(crate) fn of(v: Option<&'a Value>) -> Self {
        Self { value: v }
    }

    fn key(self, k: &str) -> Self {
        Self {
            value: self.value.and_then(|v| v.get(k)),
        }
    }

    /// The old items of a list, by their keys: only `x-kubernetes-list-type: map` items
    /// correlate (other lists are atomic: a changed list is checked whole).
    fn items(self, schema: &Value) -> Items<'a> {
        let Some(Value::Array(old)) = self.value else {
            return Items::default();
        };
        if schema.get("x-kubernetes-list-type").and_then(Value::as_str) != Some("map") {
            return Items::default();
        }
        let keys: Vec<String> = schema
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        if keys.is_empty() {
            return Items::default();
        }
        let mut by_key = std::collections::HashMap::new();
        for o in old.iter().filter(|o| o.is_object()) {
            by_key.entry(list_key(&keys, o)).or_insert(o);
        }
        Items { keys, by_key }
    }
}

/// Old list items by their map keys.
#[derive(Default)]
struct Items<'a> {
    keys: Vec<String>,
    by_key: std::collections::HashMap<String, &'a Value>,
}

impl<'a> Items<'a> {
    fn old(&self, item: &Value) -> Old<'a> {
        if self.keys.is_empty() {
            return Old::none();
        }
        Old::of(self.by_key.get(&list_key(&self.keys, item)).copied())
    }
}

fn list_key(keys: &[String], v: &Value) -> String {
    let parts: Vec<Option<&Value>> = keys.iter().map(|k| v.get(k)).collect();
    serde_json::to_string(&parts).unwrap_or_default()
}

/// A schema node, read from the CRD's JSON.
struct S<'a>(&'a Value);

impl<'a> S<'a> {
    fn get(&self, k: &str) -> Option<&'a Value> {
        self.0.get(k)
    }
    fn flag(&self, k: &str) -> bool {
        self.get(k).and_then(Value::as_bool) == Some(true)
    }
    fn f64(&self, k: &str) -> Option<f64> {
        self.get(k).and_then(Value::as_f64)
    }
    fn i64(&self, k: &str) -> Option<i64> {
        self.get(k)
            .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
    }
    fn str(&self, k: &str) -> &'a str {
        self.get(k).and_then(Value::as_str).unwrap_or("")
    }
    fn list(&self, k: &str) -> &'a [Value] {
        self.get(k)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
    fn types(&self) -> Types<'a> {
        if self.flag("x-kubernetes-int-or-string") {
            return Types {
                list: ["integer", "string"],
                len: 2,
            };
        }
        match self.str("type") {
            "" => Types {
                list: ["", ""],
                len: 0,
            },
            t => Types {
                list: [t, ""],
                len: 1,
            },
        }
    }
    fn format(&self) -> Option<&'a str> {
        let types = self.types();
        let single = if types.len == 1 { types.list[0] } else { "" };
        formats::effective(self.str("format"), single)
    }
}

/// The schema's types: none, one, or integer and string (`x-kubernetes-int-or-string`).
#[derive(Clone, Copy)]
struct Types<'a> {
    list: [&'a str; 2],
    len: usize,
}

impl<'a> Types<'a> {
    fn as_slice(&self) -> &[&'a str] {
        &self.list[..self.len]
    }
    fn contains(&self, t: &str) -> bool {
        self.as_slice().contains(&t)
    }
    fn is_empty(&self) -> bool {
        self.len == 0
    }
    fn join(&self) -> String {
        self.as_slice().join(",")
    }
}

/// What Go's `reflect.Kind` of a decoded JSON value is, as the validators ask.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Nil,
    Bool,
    Str,
    Int,
    Float,
    Slice,
    Map,
}

fn shape(v: &Value) -> Shape {
    match v {
        Value::Null => Shape::Nil,
        Value::Bool(_) => Shape::Bool,
        Value::String(_) => Shape::Str,
        Value::Number(n) if n.as_i64().is_some() => Shape::Int,
        Value::Number(_) => Shape::Float,
        Value::Array(_) => Shape::Slice,
        Value::Object(_) => Shape::Map,
    }
}

/// A number as Go holds it after unstructured decoding.
#[derive(Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn of(v: &Value) -> Option<Self> {
        let n = v.as_number()?;
        Some(match n.as_i64() {
            Some(i) => Self::Int(i),
            None => Self::Float(n.as_f64()?),
        })
    }
    fn f64(self) -> f64 {
        match self {
            Self::Int(i) => i as f64,
            Self::Float(f) => f,
        }
    }
    fn go(self) -> GoValue {
        match self {
            Self::Int(i) => GoValue::Int(i),
            Self::Float(f) => GoValue::Float(f),
        }
    }
}

/// Validates `data` against `schema` at `path` (`""` at the root), ratcheting against `old`.
pub(crate) fn validate(schema: &Value, data: &Value, path: &str, old: Old<'_>) -> Outcome {
    node(schema, data, path, old, 0)
}

/// A ratcheting validator: errors in a value equal to the old one are dropped.
fn node(schema: &Value, data: &Value, path: &str, old: Old<'_>, depth: usize) -> Outcome {
    let res = schema_validate(schema, data, path, old, depth);
    if !res.is_valid() && old.value == Some(data) {
        return Outcome {
            matches: res.matches,
            ..Outcome::default()
        };
    }
    res
}

/// `SchemaValidator.Validate`.
fn schema_validate(
    schema: &Value,
    data: &Value,
    path: &str,
    old: Old<'_>,
    depth: usize,
) -> Outcome {
    let mut result = Outcome::default();
    if depth > MAX_DEPTH {
        result.add(OaError::plain(format!(
            "{path} is nested deeper than {MAX_DEPTH} levels"
        )));
        return result;
    }
    let s = S(schema);
    let kind = shape(data);
    if kind == Shape::Nil {
        result.merge(type_validate(&s, data, path));
        result.merge(common_validate(&s, data, path));
        return result;
    }
    let format = s.format();
    // type
    if !s.types().is_empty() || format.is_some() {
        result.merge(type_validate(&s, data, path));
        result.inc();
    }
    // schema props (allOf, oneOf, anyOf, not)
    result.merge(props_validate(&s, data, path, old, depth));
    result.inc();
    // string
    if let Value::String(v) = data {
        result.merge(string_validate(&s, v, path));
        result.inc();
        // format
        if let Some(f) = format.filter(|f| formats::known(f)) {
            if !formats::validates(f, v) {
                result.add(OaError::new(
                    Code::InvalidType,
                    path,
                    GoValue::Str(v.clone()),
                    format!(
                        "{path} in body must be of type {f}: {}",
                        super::field::go_quote(v)
                    ),
                ));
            }
            result.inc();
        }
    }
    // number
    if let Some(n) = Num::of(data) {
        result.merge(number_validate(&s, n, path));
        result.inc();
    }
    // slice
    if let Value::Array(items) = data {
        result.merge(slice_validate(&s, items, path, old, depth));
        result.inc();
    }
    // common (enum)
    result.merge(common_validate(&s, data, path));
    result.inc();
    // object
    if let Value::Object(m) = data {
        result.merge(object_validate(&s, m, path, old, depth));
        result.inc();
    }
    result.inc();
    result
}

fn type_name(kind: Shape) -> (&'static str, &'static str) {
    match kind {
        Shape::Nil => ("null", ""),
        Shape::Bool => ("boolean", ""),
        Shape::Str => ("string", ""),
        Shape::Int => ("integer", "int64"),
        Shape::Float => ("number", "float64"),
        Shape::Slice => ("array", ""),
        Shape::Map => ("object", ""),
    }
}

/// swag's `IsFloat64AJSONInteger`.
fn is_json_integer(f: f64) -> bool {
    const MAX: f64 = 9_007_199_254_740_991.0;
    if !f.is_finite() || !(-MAX..=MAX).contains(&f) {
        return false;
    }
    let g = f.trunc();
    if f == g {
        return true;
    }
    let diff = (f - g).abs();
    diff / (f.abs() + g.abs()).min(f64::MAX) < 1e-9
}

/// `typeValidator`.
fn type_validate(s: &S<'_>, data: &Value, path: &str) -> Outcome {
    let mut result = Outcome::default();
    result.inc();
    let types = s.types();
    let kind = shape(data);
    let invalid = |want: &str, got: &str| {
        Outcome::error(OaError::new(
            Code::InvalidType,
            path,
            GoValue::Str(got.to_string()),
            format!(
                "{path} in body must be of type {want}: {}",
                super::field::go_quote(got)
            ),
        ))
    };
    if kind == Shape::Nil {
        if !types.is_empty() && !types.contains("null") && !s.flag("nullable") {
            return invalid(&types.join(), "null");
        }
        return result;
    }
    let (sch_type, fmt) = type_name(kind);
    let format = s.format().unwrap_or_default();
    let is_float_int = kind == Shape::Float
        && is_json_integer(data.as_f64().unwrap_or(f64::NAN))
        && types.contains("integer");
    let is_int_float = kind == Shape::Int && types.contains("number");
    if kind != Shape::Str
        && kind != Shape::Slice
        && !format.is_empty()
        && !(types.contains(sch_type) || fmt == format || is_float_int || is_int_float)
    {
        return invalid(format, fmt);
    }
    // A string format on a string (or array) is the format validator's concern.
    let numeric = types.contains("number") || types.contains("integer");
    if !(numeric || format.is_empty()) && (kind == Shape::Str || kind == Shape::Slice) {
        return result;
    }
    if !(types.contains(sch_type) || is_float_int || is_int_float) {
        return invalid(&types.join(), sch_type);
    }
    result
}

/// `schemaPropsValidator`: allOf, oneOf, anyOf, not.
fn props_validate(s: &S<'_>, data: &Value, path: &str, old: Old<'_>, depth: usize) -> Outcome {
    let mut main = Outcome::default();
    let quoted = super::field::go_quote(path);
    let any_of = s.list("anyOf");
    if !any_of.is_empty() {
        let mut best: Option<Outcome> = None;
        let mut first_success: Option<Outcome> = None;
        let mut succeeded = false;
        for alt in any_of {
            let r = schema_validate(alt, data, path, old, depth + 1);
            if r.is_valid() {
                best = None;
                succeeded = true;
                first_success.get_or_insert(r);
                break;
            }
            if best.as_ref().is_none_or(|b| r.matches > b.matches) {
                best = Some(r);
            }
        }
        if !succeeded {
            main.add(OaError::plain(format!(
                "{quoted} must validate at least one schema (anyOf)"
            )));
        }
        if let Some(b) = best {
            main.merge(b);
        } else if let Some(f) = first_success {
            main.merge(f);
        }
    }
    let one_of = s.list("oneOf");
    if !one_of.is_empty() {
        let mut best: Option<Outcome> = None;
        let mut first_success: Option<Outcome> = None;
        let mut validated = 0;
        for alt in one_of {
            let r = schema_validate(alt, data, path, old, depth + 1);
            if r.is_valid() {
                validated += 1;
                best = None;
                if first_success.is_none() {
                    first_success = Some(r);
                }
                continue;
            }
            if validated == 0 && best.as_ref().is_none_or(|b| r.matches > b.matches) {
                best = Some(r);
            }
        }
        if validated != 1 {
            let more = if validated == 0 {
                "Found none valid".to_string()
            } else {
                format!("Found {validated} valid alternatives")
            };
            main.add(OaError::plain(format!(
                "{quoted} must validate one and only one schema (oneOf). {more}"
            )));
            if let Some(b) = best {
                main.merge(b);
            }
        } else if let Some(f) = first_success {
            main.merge(f);
        }
    }
    let all_of = s.list("allOf");
    if !all_of.is_empty() {
        let mut validated = 0;
        for alt in all_of {
            let r = schema_validate(alt, data, path, old, depth + 1);
            if r.is_valid() {
                validated += 1;
            }
            main.merge(r);
        }
        if validated != all_of.len() {
            let more = if validated == 0 {
                ". None validated"
            } else {
                ""
            };
            main.add(OaError::plain(format!(
                "{quoted} must validate all the schemas (allOf){more}"
            )));
        }
    }
    if let Some(not) = s.get("not").filter(|n| n.is_object())
        && schema_validate(not, data, path, old, depth + 1).is_valid()
    {
        main.add(OaError::plain(format!(
            "{quoted} must not validate the schema (not)"
        )));
    }
    main.inc();
    main
}

/// `stringValidator`: the first failing of maxLength, minLength, pattern.
fn string_validate(s: &S<'_>, v: &str, path: &str) -> Outcome {
    let len = v.chars().count() as i64;
    let value = || GoValue::Str(v.to_string());
    if let Some(max) = s.i64("maxLength")
        && len > max
    {
        let mut e = OaError::new(
            Code::TooLong,
            path,
            value(),
            format!("{path} in body should be at most {max} chars long"),
        );
        e.valid = max;
        return Outcome::error(e);
    }
    if let Some(min) = s.i64("minLength")
        && len < min
    {
        return Outcome::error(OaError::new(
            Code::Validation,
            path,
            value(),
            format!("{path} in body should be at least {min} chars long"),
        ));
    }
    let pat = s.str("pattern");
    if !pat.is_empty() {
        let failed = |shown: String| {
            Outcome::error(OaError::new(
                Code::Validation,
                path,
                value(),
                format!("{path} in body should match '{shown}'"),
            ))
        };
        match pattern::compile(pat) {
            Ok(re) if re.is_match(v) => {}
            Ok(_) => return failed(pat.to_string()),
            Err(why) => return failed(format!("{pat}, but pattern is invalid: {why}")),
        }
    }
    Outcome::default()
}

/// swag's `FormatFloat64`: `'f'` form, shortest digits.
fn format_f(f: f64) -> String {
    let s = format!("{f}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

/// `IsValueValidAgainstRange`: whether the value fits the schema's integer or number
/// format (a plain error otherwise).
fn in_range(n: Num, type_name: &str, format: &str, prefix: &str, path: &str) -> Option<OaError> {
    let rep = match n {
        Num::Int(i) => i.to_string(),
        Num::Float(f) => format_f(f),
    };
    let ok = match type_name {
        "integer" => match format {
            "int32" => rep.parse::<i32>().is_ok(),
            _ => rep.parse::<i64>().is_ok(),
        },
        _ => match format {
            "float" | "float32" => rep
                .parse::<f64>()
                .is_ok_and(|f| f.is_finite() && (f as f32).is_finite()),
            _ => true,
        },
    };
    if ok {
        return None;
    }
    Some(OaError::plain(if format.is_empty() {
        format!("{prefix} value must be of type {type_name} (default format) in {path}")
    } else {
        format!("{prefix} value must be of type {type_name} with format {format} in {path}")
    }))
}

/// `numberValidator`.
fn number_validate(s: &S<'_>, n: Num, path: &str) -> Outcome {
    let types = s.types();
    let (type_name, format) = match types.as_slice() {
        ["integer"] => (
            "integer",
            s.format().filter(|f| *f == "int32" || *f == "int64"),
        ),
        ["number"] => (
            "number",
            s.format().filter(|f| *f == "float" || *f == "double"),
        ),
        _ => ("", None),
    };
    let format = format.unwrap_or_default();
    let mut res = Outcome::default();
    if !type_name.is_empty()
        && let Some(e) = in_range(n, type_name, format, "Checked", path)
    {
        res.add(e);
    }
    let check = |bound: f64, prefix: &str| {
        if type_name.is_empty() {
            None
        } else {
            in_range(Num::Float(bound), type_name, format, prefix, path)
        }
    };
    let mut multiple = Outcome::default();
    if let Some(factor) = s.f64("multipleOf") {
        let native = match check(factor, "MultipleOf") {
            Some(e) => {
                multiple.add(e);
                false
            }
            None => true,
        };
        if let Some(e) = multiple_of(path, n, factor, native) {
            multiple.add(e);
        }
    }
    let mut maximum = Outcome::default();
    if let Some(max) = s.f64("maximum") {
        let native = match check(max, "Maximum boundary") {
            Some(e) => {
                maximum.add(e);
                false
            }
            None => true,
        };
        let excl = s.flag("exclusiveMaximum");
        let over = |d: f64, m: f64| if excl { d >= m } else { d > m };
        let word = if excl {
            "less than"
        } else {
            "less than or equal to"
        };
        let e = match (native, n) {
            (true, Num::Int(i)) => {
                let m = max as i64;
                (if excl { i >= m } else { i > m }).then(|| m.to_string())
            }
            _ => over(n.f64(), max).then(|| super::field::go_float(max)),
        };
        if let Some(bound) = e {
            maximum.add(OaError::new(
                Code::Validation,
                path,
                n.go(),
                format!("{path} in body should be {word} {bound}"),
            ));
        }
    }
    let mut minimum = Outcome::default();
    if let Some(min) = s.f64("minimum") {
        let native = match check(min, "Minimum boundary") {
            Some(e) => {
                minimum.add(e);
                false
            }
            None => true,
        };
        let excl = s.flag("exclusiveMinimum");
        let under = |d: f64, m: f64| if excl { d <= m } else { d < m };
        let word = if excl {
            "greater than"
        } else {
            "greater than or equal to"
        };
        let e = match (native, n) {
            (true, Num::Int(i)) => {
                let m = min as i64;
                (if excl { i <= m } else { i < m }).then(|| m.to_string())
            }
            _ => under(n.f64(), min).then(|| super::field::go_float(min)),
        };
        if let Some(bound) = e {
            minimum.add(OaError::new(
                Code::Validation,
                path,
                n.go(),
                format!("{path} in body should be {word} {bound}"),
            ));
        }
    }
    res.merge(multiple);
    res.merge(minimum);
    res.merge(maximum);
    res.inc();
    res
}

/// `MultipleOfNativeType` (integers against the truncated factor) or `MultipleOf`.
fn multiple_of(path: &str, n: Num, factor: f64, native: bool) -> Option<OaError> {
    let err = |shown: String| {
        OaError::new(
            Code::Validation,
            path,
            n.go(),
            format!("{path} in body should be a multiple of {shown}"),
        )
    };
    let positive = |shown: String| {
        OaError::new(
            Code::Validation,
            path,
            GoValue::Nil,
            format!("factor MultipleOf declared for {path} must be positive: {shown}"),
        )
    };
    match (native, n) {
        (true, Num::Int(i)) => {
            let f = factor as i64;
            if f <= 0 {
                return Some(positive(f.to_string()));
            }
            (i.wrapping_div(f).wrapping_mul(f) != i).then(|| err(f.to_string()))
        }
        _ => {
            if factor <= 0.0 {
                return Some(positive(super::field::go_float(factor)));
            }
            let d = n.f64();
            let mult = if factor < 1.0 {
                1.0 / factor * d
            } else {
                d / factor
            };
            (!is_json_integer(mult)).then(|| err(super::field::go_float(factor)))
        }
    }
}

/// `schemaSliceValidator`.
fn slice_validate(s: &S<'_>, items: &[Value], path: &str, old: Old<'_>, depth: usize) -> Outcome {
    let mut result = Outcome::default();
    if let Some(item_schema) = s.get("items").filter(|i| i.is_object()) {
        let old_items = old.items(s.0);
        for (i, item) in items.iter().enumerate() {
            let child_old = old_items.old(item);
            result.merge(node(
                item_schema,
                item,
                &format!("{path}[{i}]"),
                child_old,
                depth + 1,
            ));
        }
    }
    let size = items.len() as i64;
    if let Some(min) = s.i64("minItems")
        && size < min
    {
        result.add(OaError::new(
            Code::Validation,
            path,
            GoValue::Int(size),
            format!("{path} in body should have at least {min} items"),
        ));
    }
    if let Some(max) = s.i64("maxItems")
        && size > max
    {
        let mut e = OaError::new(
            Code::MaxItems,
            path,
            GoValue::Int(size),
            format!("{path} in body should have at most {max} items"),
        );
        e.valid = max;
        result.add(e);
    }
    if s.flag("uniqueItems") {
        let mut seen = HashSet::new();
        if !items.iter().all(|v| seen.insert(super::field::go_json(v))) {
            result.add(OaError::new(
                Code::Validation,
                path,
                GoValue::Nil,
                format!("{path} in body shouldn't contain duplicates"),
            ));
        }
    }
    result.inc();
    result
}

/// Whether `data` equals the enum value `e` after Go's `reflect` conversion to `e`'s type.
fn enum_matches(data: &Value, e: &Value) -> bool {
    if data == e {
        return true;
    }
    match (Num::of(data), e) {
        (Some(Num::Int(i)), Value::Number(en)) => match en.as_i64() {
            Some(ei) => i == ei,
            None => en.as_f64() == Some(i as f64),
        },
        (Some(Num::Float(f)), Value::Number(en)) => match en.as_i64() {
            Some(ei) => f as i64 == ei,
            None => en.as_f64() == Some(f),
        },
        // Go converts an integer to the string of that code point.
        (Some(Num::Int(i)), Value::String(s)) => {
            let c = u32::try_from(i)
                .ok()
                .and_then(char::from_u32)
                .unwrap_or('\u{fffd}');
            s.chars().eq(std::iter::once(c))
        }
        _ => false,
    }
}

/// `basicCommonValidator`: enum.
fn common_validate(s: &S<'_>, data: &Value, path: &str) -> Outcome {
    let values = s.list("enum");
    if values.is_empty() || (!data.is_null() && values.iter().any(|e| enum_matches(data, e))) {
        return Outcome::default();
    }
    let shown: Vec<String> = values.iter().map(|v| GoValue::of(v).go_v()).collect();
    let mut e = OaError::new(
        Code::Enum,
        path,
        GoValue::of(data),
        format!("{path} in body should be one of [{}]", shown.join(" ")),
    );
    e.values = values.to_vec();
    Outcome::error(e)
}

/// `objectValidator`.
fn object_validate(
    s: &S<'_>,
    val: &Map<String, Value>,
    path: &str,
    old: Old<'_>,
    depth: usize,
) -> Outcome {
    let mut res = Outcome::default();
    let n = val.len() as i64;
    if let Some(min) = s.i64("minProperties")
        && n < min
    {
        res.add(OaError::new(
            Code::Validation,
            path,
            GoValue::Int(n),
            format!("{path} in body should have at least {min} properties"),
        ));
    }
    if let Some(max) = s.i64("maxProperties")
        && n > max
    {
        let mut e = OaError::new(
            Code::TooManyProperties,
            path,
            GoValue::Int(n),
            format!("{path} in body should have at most {max} properties"),
        );
        e.valid = max;
        res.add(e);
    }
    let props = s.get("properties").and_then(Value::as_object);
    let additional = s.get("additionalProperties");
    let child_old = |k: &str| {
        if path.is_empty() && (k == "kind" || k == "apiVersion") {
            Old::none()
        } else {
            old.key(k)
        }
    };
    if additional == Some(&Value::Bool(false)) {
        for k in val.keys() {
            if !props.is_some_and(|p| p.contains_key(k)) {
                res.add(OaError::new(
                    Code::Validation,
                    path,
                    GoValue::Str(k.clone()),
                    format!("{path}.{k} in body is a forbidden property"),
                ));
            }
        }
    } else if let Some(ap) = additional.filter(|a| a.is_object()) {
        for (k, v) in val {
            if !props.is_some_and(|p| p.contains_key(k)) {
                res.merge(node(ap, v, &format!("{path}.{k}"), child_old(k), depth + 1));
            }
        }
    }
    for (name, ps) in props.into_iter().flatten() {
        if let Some(v) = val.get(name) {
            let at = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            res.merge(node(ps, v, &at, child_old(name), depth + 1));
        }
    }
    for r in s.list("required").iter().filter_map(Value::as_str) {
        if !val.contains_key(r) {
            let at = format!("{path}.{r}");
            res.add(OaError::new(
                Code::Required,
                &at,
                GoValue::Nil,
                format!("{at} in body is required"),
            ));
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(schema: Value, data: Value) -> Vec<String> {
        validate(&schema, &data, "", Old::none())
            .into_field_errors(None)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn one_of_reports_the_count_and_the_best_failure() {
        let s = json!({"type": "object", "properties": {"source": {"type": "object",
            "oneOf": [{"required": ["url"]}, {"required": ["file"]}],
            "properties": {"url": {"type": "string"}, "file": {"type": "string"}}}}});
        assert_eq!(
            errors(s.clone(), json!({"source": {"url": "a", "file": "b"}})),
            vec![
                "<nil>: Invalid value: \"\": \"source\" must validate one and only one schema (oneOf). Found 2 valid alternatives"
            ]
        );
        assert_eq!(
            errors(s, json!({"source": {}})),
            vec![
                "<nil>: Invalid value: \"\": \"source\" must validate one and only one schema (oneOf). Found none valid",
                "source.url: Required value",
            ]
        );
    }

    #[test]
    fn ratcheting_drops_errors_in_unchanged_values() {
        let s = json!({"type": "object", "properties": {
            "a": {"type": "string", "maxLength": 1}, "b": {"type": "string", "maxLength": 1}}});
        let old = json!({"a": "long", "b": "x"});
        let new = json!({"a": "long", "b": "yy"});
        let errs: Vec<String> = validate(&s, &new, "", Old::of(Some(&old)))
            .into_field_errors(None)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errs, vec!["b: Too long: may not be more than 1 byte"]);
    }

    #[test]
    fn deep_data_is_refused_not_recursed() {
        let mut schema = json!({"type": "object"});
        let mut data = json!({});
        for _ in 0..300 {
            schema = json!({"type": "object", "properties": {"a": schema}});
            data = json!({"a": data});
        }
        let errs = errors(schema, data);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains("nested deeper"), "{errs:?}");
    }

    #[test]
    fn map_list_items_ratchet_by_key() {
        let s = json!({"type": "object", "properties": {"l": {"type": "array",
            "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"],
            "items": {"type": "object", "properties": {
                "k": {"type": "string"}, "v": {"type": "string", "maxLength": 1}}}}}});
        let old = json!({"l": [{"k": "a", "v": "long"}, {"k": "b", "v": "x"}]});
        // The invalid item moved and another was added: only the new one is checked.
        let new =
            json!({"l": [{"k": "c", "v": "new"}, {"k": "b", "v": "x"}, {"k": "a", "v": "long"}]});
        let errs: Vec<String> = validate(&s, &new, "", Old::of(Some(&old)))
            .into_field_errors(None)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errs, vec!["l[0].v: Too long: may not be more than 1 byte"]);
    }
}
