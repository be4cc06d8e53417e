//! Kubernetes resource quantities (`100m`, `1Gi`, `0.5`) in the form Go's
//! `resource.Quantity` writes them back (`k8s.io/apimachinery/pkg/api/resource`, v0.32).
//!
//! A quantity the Go type reads keeps its text when that text is already canonical and
//! took the exact (int64) path; otherwise it is rewritten: `0.1` becomes `100m`, `1024Mi`
//! becomes `1Gi`, `1000` becomes `1k`, `1.5` becomes `1500m`. [`canonical`] reproduces
//! that, including its quirks: a leading `+` of canonical text is kept (`+100m`), digits
//! finer than a nano are rounded up to the next nano (`0.1n` is `1n`), binary values are
//! capped at 2^63-1, and a decimal exponent past `E` (10^18) loses its suffix as Go's
//! does.
//!
//! Not reproduced: values whose digits do not fit 128 bits once scaled (Go uses big
//! integers); [`canonical`] refuses them with [`Error::OutOfRange`] rather than guess.

/// A quantity that does not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The text is not a quantity (Go's `ErrFormatWrong`, `ErrNumeric` or `ErrSuffix`).
    #[error(
        "quantity {0:?} is not a number with an optional suffix (n, u, m, k, M, G, T, P, E, Ki..Ei or e<exponent>)"
    )]
    Format(String),
    /// The quantity reads but its digits outgrow what this implementation handles.
    #[error("quantity {0:?} is outside the range this implementation canonicalises")]
    OutOfRange(String),
}

/// How a quantity was written, which decides how it is written back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// `12e6`.
    DecimalExponent,
    /// `12Mi`.
    BinarySI,
    /// `12M`.
    DecimalSI,
}

/// A value `unscaled * 10^exp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Amount {
    unscaled: i128,
    exp: i32,
}

/// The text Go's `resource.Quantity` marshals for `text` after reading it (its
/// `UnmarshalJSON` then `MarshalJSON`): the canonical form, or `text` itself, trimmed,
/// when Go keeps it.
pub fn canonical(text: &str) -> Result<String, Error> {
    let s = text.trim();
    if s.is_empty() {
        return Err(Error::Format(text.to_owned()));
    }
    if s == "0" {
        return Ok("0".to_owned());
    }
    let wrong = || Error::Format(text.to_owned());
    let out_of_range = || Error::OutOfRange(text.to_owned());
    let parts = split(s).ok_or_else(wrong)?;
    let (base, exponent, format) = interpret(parts.suffix).ok_or_else(wrong)?;

    // Go's exact path: an int64 value and a scale no finer than nano.
    let (precision, mut scale, mantissa) = match format {
        Format::DecimalExponent | Format::DecimalSI => (
            18 - (parts.num.len() + parts.denom.len()) as i64,
            i64::from(exponent),
            1i64,
        ),
        Format::BinarySI if exponent >= 0 && parts.denom.is_empty() => {
            // Go computes int32(float32(exponent)*3/10); exponents are multiples of 10.
            let approx = i64::from(exponent) * 3 / 10;
            (
                15 - parts.num.len() as i64 - approx - 1,
                0,
                1i64 << exponent,
            )
        }
        Format::BinarySI => (-1, 0, 1),
    };
    if precision >= 0 {
        scale -= parts.denom.len() as i64;
        if scale >= -9 {
            let shifted = format!("{}{}", parts.num, parts.denom);
            let value: i64 = shifted.parse().map_err(|_| wrong())?;
            if let Some(result) = int64_multiply(value, mantissa) {
                let keep = match format {
                    Format::BinarySI => exponent % 10 == 0 && value & 0x07 != 0,
                    _ => scale % 3 == 0 && !shifted.ends_with("000") && !shifted.starts_with('0'),
                };
                if keep {
                    return Ok(s.to_owned());
                }
                let result = if parts.positive { result } else { -result };
                let amount = Amount {
                    unscaled: i128::from(result),
                    exp: scale as i32,
                };
                return write(amount, format).ok_or_else(out_of_range);
            }
        }
    }

    // Go's arbitrary-precision path.
    let digits = format!("{}{}", parts.num, parts.denom);
    let mut unscaled: i128 = digits.parse().map_err(|_| out_of_range())?;
    let mut exp = -(parts.denom.len() as i64);
    if base == 10 {
        exp += i64::from(exponent);
    } else {
        unscaled = 1i128
            .checked_shl(exponent as u32)
            .and_then(|m| unscaled.checked_mul(m))
            .ok_or_else(out_of_range)?;
    }
    let exp = i32::try_from(exp).map_err(|_| out_of_range())?;
    let mut amount = Amount { unscaled, exp };
    let mut format = format;
    if amount.unscaled != 0 && amount.exp < -9 {
        // Round up (away from zero) to nano.
        let divisor = pow10(-9 - amount.exp).ok_or_else(out_of_range)?;
        let (q, r) = (amount.unscaled / divisor, amount.unscaled % divisor);
        amount = Amount {
            unscaled: if r == 0 { q } else { q + 1 },
            exp: -9,
        };
    }
    if format == Format::BinarySI {
        let one = pow10(-amount.exp.min(0)).ok_or_else(out_of_range)?;
        let scaled = |v: i128| v.checked_mul(one);
        let max = scaled(i128::from(i64::MAX)).ok_or_else(out_of_range)?;
        if amount.exp >= 0 {
            let value = amount
                .unscaled
                .checked_mul(pow10(amount.exp).ok_or_else(out_of_range)?)
                .ok_or_else(out_of_range)?;
            if value > i128::from(i64::MAX) {
                amount = Amount {
                    unscaled: i128::from(i64::MAX),
                    exp: 0,
                };
            }
        } else if amount.unscaled > max {
            amount = Amount {
                unscaled: i128::from(i64::MAX),
                exp: 0,
            };
        } else if amount.unscaled > 0 && amount.unscaled < one {
            format = Format::DecimalSI;
        }
    }
    if !parts.positive {
        amount.unscaled = -amount.unscaled;
    }
    write(amount, format).ok_or_else(out_of_range)
}

/// The pieces of a quantity's text (Go's `parseQuantityString`).
struct Parts<'a> {
    positive: bool,
    num: &'a str,
    denom: &'a str,
    suffix: &'a str,
}

fn split(s: &str) -> Option<Parts<'_>> {
    let b = s.as_bytes();
    let end = b.len();
    let mut pos = 0;
    let mut positive = true;
    match b.first() {
        Some(b'-') => {
            positive = false;
            pos += 1;
        }
        Some(b'+') => pos += 1,
        _ => {}
    }
    while pos < end && b[pos] == b'0' {
        pos += 1;
    }
    if pos >= end {
        return Some(Parts {
            positive,
            num: "0",
            denom: "",
            suffix: "",
        });
    }
    let start = pos;
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    let num = if pos == start { "0" } else { &s[start..pos] };
    let mut denom = "";
    if pos < end && b[pos] == b'.' {
        pos += 1;
        let start = pos;
        while pos < end && b[pos].is_ascii_digit() {
            pos += 1;
        }
        denom = &s[start..pos];
    }
    let suffix_start = pos;
    while pos < end && b"eEinumkKMGTP".contains(&b[pos]) {
        pos += 1;
    }
    if pos < end && (b[pos] == b'-' || b[pos] == b'+') {
        pos += 1;
    }
    while pos < end && b[pos].is_ascii_digit() {
        pos += 1;
    }
    (pos == end).then_some(Parts {
        positive,
        num,
        denom,
        suffix: &s[suffix_start..],
    })
}

const DECIMAL_SUFFIXES: [(&str, i32); 10] = [
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("", 0),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];
const BINARY_SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

/// A suffix's base, exponent and format (Go's `suffixHandler.interpret`).
fn interpret(suffix: &str) -> Option<(u32, i32, Format)> {
    if let Some((_, e)) = DECIMAL_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Some((10, *e, Format::DecimalSI));
    }
    if let Some(i) = BINARY_SUFFIXES[1..].iter().position(|s| *s == suffix) {
        return Some((2, 10 * (i as i32 + 1), Format::BinarySI));
    }
    let rest = suffix
        .strip_prefix('e')
        .or_else(|| suffix.strip_prefix('E'))?;
    if rest.is_empty() {
        return None;
    }
    // Go parses an int64 and truncates it to int32.
    let parsed: i64 = rest.parse().ok()?;
    Some((10, parsed as i32, Format::DecimalExponent))
}

fn int64_multiply(a: i64, b: i64) -> Option<i64> {
    a.checked_mul(b)
}

fn pow10(n: i32) -> Option<i128> {
    10i128.checked_pow(u32::try_from(n).ok()?)
}

/// Go's `Quantity.CanonicalizeBytes`; `None` when the digits outgrow i128.
fn write(amount: Amount, format: Format) -> Option<String> {
    if amount.unscaled == 0 {
        return Some("0".to_owned());
    }
    let mut format = format;
    let mut integer = None;
    if format == Format::BinarySI {
        let value = if amount.exp >= 0 {
            amount.unscaled.checked_mul(pow10(amount.exp)?)
        } else {
            let d = pow10(-amount.exp)?;
            (amount.unscaled % d == 0).then(|| amount.unscaled / d)
        };
        match value {
            Some(v) if v.abs() >= 1024 => integer = Some(v),
            _ => format = Format::DecimalSI,
        }
    }
    if let Some(mut v) = integer {
        let mut times = 0;
        while v % 1024 == 0 && v != 0 {
            v /= 1024;
            times += 1;
        }
        return Some(format!("{v}{}", BINARY_SUFFIXES.get(times).copied()?));
    }
    let (mut m, mut e) = (amount.unscaled, amount.exp);
    while m % 10 == 0 {
        m /= 10;
        e += 1;
    }
    while e.rem_euclid(3) != 0 {
        m = m.checked_mul(10)?;
        e -= 1;
    }
    let suffix = match format {
        Format::DecimalExponent if e == 0 => String::new(),
        Format::DecimalExponent => format!("e{e}"),
        // Go finds no suffix past E (or below n) and writes none.
        _ => DECIMAL_SUFFIXES
            .iter()
            .find(|(_, x)| *x == e)
            .map(|(s, _)| (*s).to_owned())
            .unwrap_or_default(),
    };
    Some(format!("{m}{suffix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> String {
        canonical(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// apimachinery v0.32.9 `quantity_test.go` `TestQuantityParseEmit`, with its negatives.
    #[test]
    fn parse_emit_table_of_apimachinery() {
        for (input, want) in [
            ("1Ki", "1Ki"),
            ("1Mi", "1Mi"),
            ("1Gi", "1Gi"),
            ("1024Mi", "1Gi"),
            ("1000M", "1G"),
            (".001Ki", "1024m"),
            (".000001Ki", "1024u"),
            (".000000001Ki", "1024n"),
            (".000000000001Ki", "2n"),
        ] {
            assert_eq!(c(input), want, "{input}");
            assert_eq!(c(&format!("-{input}")), format!("-{want}"), "-{input}");
        }
    }

    /// apimachinery v0.32.9 `quantity_test.go` `TestQuantityString`: each canonical text
    /// reads back as itself, each alternate as the canonical one.
    #[test]
    fn string_table_of_apimachinery() {
        for (expect, alternate) in [
            ("1Gi", "1024Mi"),
            ("300Mi", "307200Ki"),
            ("6Ki", ""),
            ("1001Gi", "1025024Mi"),
            ("1Ti", "1024Gi"),
            ("5", "5000m"),
            ("500m", "0.5"),
            ("1G", "1000M"),
            ("1G", "0.001T"),
            ("1m", "1000u"),
            ("80m", ""),
            ("1080m", "1.08"),
            ("1080m", "1080000000n"),
            ("300M", ""),
            ("1T", ""),
            ("1234567M", ""),
            ("1234567m", ""),
            ("3k", ""),
            ("1025", ""),
            ("0", ""),
            ("1e9", ".001e12"),
            ("1e-3", "0.001e0"),
            ("1e-9", "1000e-12"),
            ("80e-3", ""),
            ("300e6", ""),
            ("1e12", ""),
            ("1e3", ""),
            ("3e3", ""),
            ("0", "00"),
            ("1n", ""),
            ("80n", ""),
            ("1080n", ""),
            ("1u", ""),
            ("80u", ""),
            ("1080u", ""),
        ] {
            assert_eq!(c(expect), expect);
            if !alternate.is_empty() {
                assert_eq!(c(alternate), expect, "{alternate}");
            }
        }
    }

    /// What Go keeps, trims and rewrites beyond that table (kept text is never rewritten,
    /// even with a leading `+`).
    #[test]
    fn kept_and_rewritten_text() {
        for (input, want) in [
            ("100m", "100m"),
            ("0.1", "100m"),
            ("1000", "1k"),
            ("1.5", "1500m"),
            ("+1Gi", "+1Gi"),
            ("0Gi", "0"),
            ("  250m ", "250m"),
            ("1536Mi", "1536Mi"),
            ("0.1n", "1n"),
            ("-0.1n", "-1n"),
        ] {
            assert_eq!(c(input), want, "{input}");
        }
    }

    #[test]
    fn bad_text_is_refused() {
        for bad in ["", "1Qi", "abc", "1.5.5", "1e", "--1", "1 k"] {
            assert!(
                matches!(canonical(bad), Err(Error::Format(_))),
                "{bad}: {:?}",
                canonical(bad)
            );
        }
    }
}
