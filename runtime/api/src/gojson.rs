//! Go's `encoding/json` text, where Bosun must write bytes exactly as a Go program does
//! (Kruise's hashes, kube-apiserver's messages).

/// Appends `s` as a JSON string the way Go's `encoding/json` writes it: HTML-safe
/// (`<`, `>`, `&`, U+2028 and U+2029 as `\u` escapes), `\b` and `\f` short forms (Go
/// 1.22 and later), other control characters as `\u00XX`.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_go_escapes_them() {
        let mut out = String::new();
        write_string(&mut out, "a\"b\\<&>\n\u{8}\u{1}\u{2028}é");
        assert_eq!(out, r#""a\"b\\\u003c\u0026\u003e\n\b\u0001\u2028é""#);
    }
}
