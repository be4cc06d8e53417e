//! Field errors as apimachinery's `field.Error` renders them: the text of a 422 message
//! (`spec.a: Invalid value: 3: ...`) and the `causes` of its Status, with Go's value
//! formatting (`%q` strings, `%v` floats, `json.Marshal` for the rest).

use serde_json::{Value, json};
use std::fmt::Write as _;

/// apimachinery's `field.ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `FieldValueRequired`.
    Required,
    /// `FieldValueInvalid`.
    Invalid,
    /// `FieldValueTypeInvalid`.
    TypeInvalid,
    /// `FieldValueNotSupported`.
    NotSupported,
    /// `FieldValueTooLong`.
    TooLong,
    /// `FieldValueTooMany`.
    TooMany,
    /// `FieldValueDuplicate`.
    Duplicate,
    /// `FieldValueForbidden`.
    Forbidden,
}

impl Kind {
    /// The `reason` of a Status cause.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Required => "FieldValueRequired",
            Self::Invalid => "FieldValueInvalid",
            Self::TypeInvalid => "FieldValueTypeInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::TooLong => "FieldValueTooLong",
            Self::TooMany => "FieldValueTooMany",
            Self::Duplicate => "FieldValueDuplicate",
            Self::Forbidden => "FieldValueForbidden",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Self::Required => "Required value",
            Self::Invalid | Self::TypeInvalid => "Invalid value",
            Self::NotSupported => "Unsupported value",
            Self::TooLong => "Too long",
            Self::TooMany => "Too many",
            Self::Duplicate => "Duplicate value",
            Self::Forbidden => "Forbidden",
        }
    }
}

/// A bad value as Go holds it in an `interface{}`: the type decides how it prints.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum GoValue {
    /// Not printed (`<value omitted>`).
    Omit,
    /// `nil`.
    Nil,
    /// A string, printed `%q`.
    Str(String),
    /// An `int64` (what JSON integers decode to).
    Int(i64),
    /// A `float64`.
    Float(f64),
    /// A bool.
    Bool(bool),
    /// A map or slice, printed as JSON.
    Json(Value),
}

impl GoValue {
    /// A JSON value as Go's unstructured decoding types it: integers that fit are `int64`,
    /// other numbers `float64`.
    pub(crate) fn of(v: &Value) -> Self {
        match v {
            Value::Null => Self::Nil,
            Value::Bool(b) => Self::Bool(*b),
            Value::String(s) => Self::Str(s.clone()),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Self::Int(i),
                None => Self::Float(n.as_f64().unwrap_or(0.0)),
            },
            Value::Array(_) | Value::Object(_) => Self::Json(v.clone()),
        }
    }

    /// Go's `%v`.
    pub(crate) fn go_v(&self) -> String {
        match self {
            Self::Omit => "{}".into(),
            Self::Nil => "<nil>".into(),
            Self::Str(s) => s.clone(),
            Self::Int(i) => i.to_string(),
            Self::Float(f) => go_float(*f),
            Self::Bool(b) => b.to_string(),
            Self::Json(v) => go_json(v),
        }
    }
}

/// One field error.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldError {
    /// What is wrong.
    pub kind: Kind,
    /// The path (`spec.a[0].b`), `<nil>` when the error names none.
    pub field: String,
    /// The value printed after the type.
    pub value: GoValue,
    /// The explanation after the value.
    pub detail: String,
}

impl FieldError {
    /// `field.Required`.
    pub(crate) fn required(field: impl Into<String>) -> Self {
        Self::new(Kind::Required, field, GoValue::Omit, "")
    }

    /// `field.Invalid`.
    pub(crate) fn invalid(
        field: impl Into<String>,
        value: GoValue,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(Kind::Invalid, field, value, detail)
    }

    pub(crate) fn new(
        kind: Kind,
        field: impl Into<String>,
        value: GoValue,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            field: field.into(),
            value,
            detail: detail.into(),
        }
    }

    /// `ErrorBody()`: what follows the field name.
    pub(crate) fn body(&self) -> String {
        let mut s = self.kind.text().to_string();
        let omitted = matches!(self.kind, Kind::Required | Kind::Forbidden | Kind::TooLong)
            || self.value == GoValue::Omit;
        if !omitted {
            s.push_str(": ");
            match &self.value {
                GoValue::Str(v) => s.push_str(&go_quote(v)),
                GoValue::Nil => s.push_str("null"),
                v @ (GoValue::Int(_) | GoValue::Float(_) | GoValue::Bool(_)) => {
                    s.push_str(&v.go_v())
                }
                GoValue::Json(v) => s.push_str(&go_json(v)),
                GoValue::Omit => {}
            }
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }

    /// A Status cause.
    pub(crate) fn cause(&self) -> Value {
        json!({"reason": self.kind.reason(), "message": self.body(), "field": self.field})
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// An `ErrorList` aggregated as `NewInvalid` words it: one error alone, several in
/// brackets, repeated texts once.
pub(crate) fn aggregate(errors: &[FieldError]) -> String {
    let mut seen = std::collections::HashSet::new();
    let texts: Vec<String> = errors
        .iter()
        .map(ToString::to_string)
        .filter(|t| seen.insert(t.clone()))
        .collect();
    match texts.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// Go's `strconv.Quote`.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() || c == '\u{feff}' => {
                if (c as u32) < 0x10000 {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                } else {
                    let _ = write!(out, "\\U{:08x}", c as u32);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%v` of a `float64` (`strconv.FormatFloat(f, 'g', -1, 64)`): the shortest digits,
/// in exponent form when the decimal exponent is below -4 or at least 6 (`1e+06`,
/// `123456`, `1e-05`).
pub(crate) fn go_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-tripping digits: `d.ddde±x`.
    let e = format!("{f:e}");
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (neg, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if neg { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.abs());
    }
    // Plain decimal form.
    let nd = digits.len() as i32;
    let s = if exp >= nd - 1 {
        format!("{digits}{}", "0".repeat((exp - nd + 1) as usize))
    } else if exp >= 0 {
        let (int, frac) = digits.split_at((exp + 1) as usize);
        format!("{int}.{frac}")
    } else {
        format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
    };
    format!("{sign}{s}")
}

/// Go's `encoding/json` of a decoded JSON value: sorted keys, HTML characters escaped,
/// floats without a trailing `.0`.
pub(crate) fn go_json(v: &Value) -> String {
    let mut out = String::new();
    write_go_json(v, &mut out);
    out
}

fn write_go_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_i64() {
            Some(i) => out.push_str(&i.to_string()),
            None => out.push_str(&go_json_float(n.as_f64().unwrap_or(0.0))),
        },
        Value::String(s) => write_go_json_string(s, out),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_go_json_string(k, out);
                out.push(':');
                write_go_json(&m[k], out);
            }
            out.push('}');
        }
    }
}

fn write_go_json_string(s: &str, out: &mut String) {
    bosun_api::gojson::write_string(out, s);
}

/// `encoding/json` floats: `'f'` form unless the exponent is below -6 or at least 21.
fn go_json_float(f: f64) -> String {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = go_float(f);
        // Go trims `e-07` to `e-7` in JSON.
        return s.replace("e-0", "e-").replace("e+0", "e+");
    }
    let s = format!("{f}");
    s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_go_does() {
        for (f, want) in [
            (1000.0, "1000"),
            (1e7, "1e+07"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (12345678.5, "1.23456785e+07"),
            (-0.000001, "-1e-06"),
            (0.0001, "0.0001"),
            (1.5, "1.5"),
            (1e21, "1e+21"),
            (123456789012.5, "1.234567890125e+11"),
            (1e20, "1e+20"),
        ] {
            assert_eq!(go_float(f), want, "{f}");
        }
    }

    #[test]
    fn bodies_follow_field_error() {
        let e = FieldError::new(
            Kind::TooLong,
            "spec.name",
            GoValue::Omit,
            "may not be more than 5 bytes",
        );
        assert_eq!(
            e.to_string(),
            "spec.name: Too long: may not be more than 5 bytes"
        );
        let e = FieldError::new(
            Kind::NotSupported,
            "spec.mode",
            GoValue::Str("c".into()),
            "supported values: \"a\", \"b\"",
        );
        assert_eq!(
            e.body(),
            "Unsupported value: \"c\": supported values: \"a\", \"b\""
        );
        let e = FieldError::new(
            Kind::NotSupported,
            "x",
            GoValue::Json(json!({"b": "<", "a": 1.0})),
            "",
        );
        assert_eq!(e.body(), "Unsupported value: {\"a\":1,\"b\":\"\\u003c\"}");
        assert_eq!(go_quote("a\"b\n\u{1}"), "\"a\\\"b\\n\\x01\"");
    }
}
