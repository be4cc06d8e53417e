//! `pattern`: Go RE2 regular expressions, run with the `regex` crate.
//!
//! Both are RE2-style engines with the same syntax for what CRDs use; the differences
//! that matter are the Perl classes, which are ASCII in Go and Unicode in Rust: they are
//! rewritten to their ASCII forms. Compiled patterns are cached (bounded).

use regex::{Regex, RegexBuilder};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Patterns kept compiled; the cache is emptied when it is full.
const CACHE_SIZE: usize = 1024;
/// Compiled size limit: a pattern over it is refused as invalid rather than stall a write.
const SIZE_LIMIT: usize = 4 << 20;

type Compiled = Result<Arc<Regex>, String>;

static CACHE: Mutex<Option<HashMap<String, Compiled>>> = Mutex::new(None);

/// The compiled pattern, or why it does not compile (in Go's words where they are known).
pub(crate) fn compile(pattern: &str) -> Compiled {
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let map = cache.get_or_insert_with(HashMap::new);
    if let Some(c) = map.get(pattern) {
        return c.clone();
    }
    let compiled = RegexBuilder::new(&to_rust(pattern))
        .size_limit(SIZE_LIMIT)
        .nest_limit(250)
        .build()
        .map(Arc::new)
        .map_err(|e| go_error(pattern, &e));
    if map.len() >= CACHE_SIZE {
        map.clear();
    }
    map.insert(pattern.to_string(), compiled.clone());
    compiled
}

/// Go's `\d`, `\w`, `\s`, `\b` are ASCII: the same meaning in Rust's syntax.
fn to_rust(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut chars = pattern.chars().peekable();
    let mut in_class = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(n) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let rep = match (in_class, n) {
                    (false, 'd') => Some("[0-9]"),
                    (false, 'D') => Some("[^0-9]"),
                    (false, 'w') => Some("[0-9A-Za-z_]"),
                    (false, 'W') => Some("[^0-9A-Za-z_]"),
                    (false, 's') => Some(r"[\t\n\f\r ]"),
                    (false, 'S') => Some(r"[^\t\n\f\r ]"),
                    (false, 'b') => Some(r"(?-u:\b)"),
                    (false, 'B') => Some(r"(?-u:\B)"),
                    (true, 'd') => Some("0-9"),
                    (true, 'w') => Some("0-9A-Za-z_"),
                    (true, 's') => Some(r"\t\n\f\r "),
                    (true, 'D') => Some("[:^digit:]"),
                    (true, 'W') => Some("[:^word:]"),
                    (true, 'S') => Some("[:^space:]"),
                    _ => None,
                };
                match rep {
                    Some(r) => out.push_str(r),
                    None => {
                        out.push('\\');
                        out.push(n);
                    }
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                // A `]` (after an optional `^`) first in a class is a literal.
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    out.push_str(r"\]");
                    chars.next();
                }
            }
            '[' if in_class && chars.peek() == Some(&':') => {
                // `[:alpha:]` inside a class.
                out.push('[');
                for d in chars.by_ref() {
                    out.push(d);
                    if d == ']' {
                        break;
                    }
                }
            }
            '[' => out.push_str(r"\["),
            ']' if in_class => {
                in_class = false;
                out.push(']');
            }
            '&' | '~' if in_class && chars.peek() == Some(&c) => {
                // Rust reads `&&` and `~~` in a class as set operations; Go as literals.
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Go's `regexp.Compile` error text for the common mistakes; Rust's otherwise.
fn go_error(pattern: &str, e: &regex::Error) -> String {
    let rust = e.to_string();
    let why = rust
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: "))
        .unwrap_or(rust.trim())
        .to_string();
    let go = if why.contains("unclosed character class") {
        // Go quotes the class, from its `[` to the end.
        let class = pattern.rfind('[').map_or(pattern, |i| &pattern[i..]);
        format!("missing closing ]: `{class}`")
    } else if why.contains("unclosed group") {
        format!("missing closing ): `{pattern}`")
    } else if why.contains("unopened group") {
        format!("unexpected ): `{pattern}`")
    } else if why.contains("look-around") {
        let at = ["(?=", "(?!", "(?<=", "(?<!"]
            .iter()
            .filter_map(|l| pattern.find(l).map(|i| (i, *l)))
            .min();
        match at {
            Some((_, l)) => format!("invalid or unsupported Perl syntax: `{}`", &l[..3]),
            None => "invalid or unsupported Perl syntax".to_string(),
        }
    } else if why.contains("repetition operator missing expression") {
        "missing argument to repetition operator".to_string()
    } else {
        why
    };
    format!("error parsing regexp: {go}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perl_classes_are_ascii_and_errors_are_data() {
        let d = compile(r"^\d+$").expect("compiles");
        assert!(d.is_match("123"));
        assert!(!d.is_match("١٢٣"), "Arabic digits are not \\d in Go");
        let w = compile(r"^[\w-]+$").expect("compiles");
        assert!(w.is_match("a_b-c") && !w.is_match("é"));
        assert!(compile("([").is_err());
        assert!(compile("^(?=a)").is_err());
        assert!(compile("[a&&b]").expect("compiles").is_match("&"));
        assert!(compile("[]a]").expect("compiles").is_match("]"));
    }
}
