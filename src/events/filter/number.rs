//! Exact decimals for int2/int4/int8/numeric values, in filters and in row
//! images (JSON numbers or strings holding the decimal text), compared
//! without going through f64.

use crate::db::jsonb::exact_number;
use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;

/// A numeric value, in Postgres's order: -Infinity < finite < Infinity < NaN.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Num {
    /// `-Infinity`.
    NegInf,
    /// A finite decimal.
    Finite(Decimal),
    /// `Infinity`.
    PosInf,
    /// `NaN` (equal to itself, above everything).
    NaN,
}

/// An exact decimal: `0.d1d2d3… × 10^exp`, digits without leading or
/// trailing zeros (none at all for zero, which is never negative).
// Hash with the derived Eq: digits are normalized, so equal values have
// equal fields.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Decimal {
    negative: bool,
    digits: Vec<u8>,
    exp: i64,
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        let sign = |d: &Decimal| match (d.negative, d.digits.is_empty()) {
            (_, true) => 0,
            (true, false) => -1,
            (false, false) => 1,
        };
        let by_sign = sign(self).cmp(&sign(other));
        if by_sign != Ordering::Equal || sign(self) == 0 {
            return by_sign;
        }
        // Same sign, both non-zero: magnitude by exponent, then digits (no
        // trailing zeros, so a prefix is the smaller number).
        let magnitude = self
            .exp
            .cmp(&other.exp)
            .then_with(|| self.digits.cmp(&other.digits));
        if self.negative {
            magnitude.reverse()
        } else {
            magnitude
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Decimal {
    /// Parses `[+-]digits[.digits][e[+-]digits]` (at least one digit).
    fn parse(text: &str) -> Option<Decimal> {
        let bytes = text.as_bytes();
        let (negative, mut i) = match bytes.first() {
            Some(b'-') => (true, 1),
            Some(b'+') => (false, 1),
            _ => (false, 0),
        };
        let mut digits = Vec::new();
        let mut seen_point = false;
        let mut seen_digit = false;
        // Value = 0.digits × 10^exp: each integer digit raises exp, each
        // zero before the first significant digit lowers it again.
        let mut exp: i64 = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'0'..=b'9' => {
                    seen_digit = true;
                    if !seen_point {
                        exp += 1;
                    }
                    if bytes[i] == b'0' && digits.is_empty() {
                        exp -= 1;
                    } else {
                        digits.push(bytes[i]);
                    }
                }
                b'.' if !seen_point => seen_point = true,
                b'e' | b'E' => break,
                _ => return None,
            }
            i += 1;
        }
        if !seen_digit {
            return None;
        }
        let mut exp10: i64 = 0;
        if i < bytes.len() {
            // Exponent.
            let rest = &text[i + 1..];
            let digits_part = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits_part.is_empty()
                || digits_part.len() > 12
                || !digits_part.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            exp10 = rest.parse().ok()?;
        }
        while digits.last() == Some(&b'0') {
            digits.pop();
        }
        if digits.is_empty() {
            return Some(Decimal::zero());
        }
        Some(Decimal {
            negative,
            digits,
            exp: exp + exp10,
        })
    }

    /// An integer.
    fn from_i64(i: i64) -> Decimal {
        let mut digits = i.unsigned_abs().to_string().into_bytes();
        let exp = digits.len() as i64;
        while digits.last() == Some(&b'0') {
            digits.pop();
        }
        if digits.is_empty() {
            return Decimal::zero();
        }
        Decimal {
            negative: i < 0,
            digits,
            exp,
        }
    }

    fn zero() -> Decimal {
        Decimal {
            negative: false,
            digits: Vec::new(),
            exp: 0,
        }
    }

    /// Number of significant digits.
    pub(super) fn precision(&self) -> usize {
        self.digits.len()
    }

    /// Power of ten of the first significant digit, plus one.
    pub(super) fn exponent(&self) -> i64 {
        self.exp
    }
}

impl fmt::Display for Decimal {
    /// Plain notation, no exponent: `-12.5`, `0.001`, `1200`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.digits.is_empty() {
            return f.write_str("0");
        }
        if self.negative {
            f.write_str("-")?;
        }
        let digits = std::str::from_utf8(&self.digits).expect("ASCII digits");
        let len = self.digits.len() as i64;
        if self.exp <= 0 {
            write!(f, "0.{}{digits}", "0".repeat((-self.exp) as usize))
        } else if self.exp >= len {
            write!(f, "{digits}{}", "0".repeat((self.exp - len) as usize))
        } else {
            let (int, frac) = digits.split_at(self.exp as usize);
            write!(f, "{int}.{frac}")
        }
    }
}

impl Num {
    /// Parses a decimal, `NaN`, `Infinity` or `-Infinity` (case-insensitive,
    /// `inf` too), as Postgres's numeric input does.
    pub(super) fn parse(text: &str) -> Option<Num> {
        let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
        if unsigned.eq_ignore_ascii_case("infinity") || unsigned.eq_ignore_ascii_case("inf") {
            Some(if text.starts_with('-') {
                Num::NegInf
            } else {
                Num::PosInf
            })
        } else if text.eq_ignore_ascii_case("nan") {
            Some(Num::NaN)
        } else {
            Decimal::parse(text).map(Num::Finite)
        }
    }

    /// A JSON number (its shortest text) or a string holding the text.
    pub(super) fn read(v: &Value) -> Option<Num> {
        match v {
            Value::Number(n) => {
                if let Some(i) = n.as_i64() {
                    // The common case, without the text detour.
                    return Some(Num::Finite(Decimal::from_i64(i)));
                }
                Num::parse(&n.to_string())
            }
            Value::String(s) => Num::parse(exact_number(s).unwrap_or(s)),
            _ => None,
        }
    }

    /// A JSON number inside a json/jsonb value: a number, or one kept exact
    /// as its text (see [`crate::db::jsonb`]); strings are not numbers here.
    pub(super) fn read_json_number(v: &Value) -> Option<Num> {
        match v {
            Value::Number(_) => Num::read(v),
            Value::String(s) => exact_number(s).and_then(Num::parse),
            _ => None,
        }
    }
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Num::NegInf => f.write_str("-Infinity"),
            Num::Finite(d) => d.fmt(f),
            Num::PosInf => f.write_str("Infinity"),
            Num::NaN => f.write_str("NaN"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn num(s: &str) -> Num {
        Num::parse(s).unwrap_or_else(|| panic!("{s} parses"))
    }

    #[test]
    fn decimals_compare_exactly_beyond_f64() {
        assert!(num("9007199254740993") > num("9007199254740992"));
        assert_eq!(num("1.50"), num("1.5"));
        assert_eq!(num("-0.000"), num("0"));
        assert_eq!(num("0.0012e3"), num("1.2"));
        assert_eq!(num("12e-1"), num("1.2"));
        assert!(num("-2") < num("-1.999999999999999999999"));
        assert!(num("0.1") < num("0.10000000000000000001"));
        assert!(num("100") > num("99.99999999999999999999"));
        assert!(num("-Infinity") < num("-1e300"));
        assert!(num("1e300") < num("Infinity"));
        assert!(num("Infinity") < num("NaN"));
        assert_eq!(num("NaN"), num("nan"));
        for bad in ["", "-", ".", "1.2.3", "1e", "e5", "0x10", " 1", "1 ", "--1"] {
            assert!(Num::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn decimals_print_plainly_and_read_both_json_forms() {
        for (text, plain) in [
            ("001.2300", "1.23"),
            ("-0.00012", "-0.00012"),
            ("12e3", "12000"),
            ("-0", "0"),
            (
                "123456789012345678901234567890.5",
                "123456789012345678901234567890.5",
            ),
        ] {
            assert_eq!(num(text).to_string(), plain, "{text}");
        }
        assert_eq!(Num::read(&json!(1.5)), Some(num("1.5")));
        assert_eq!(Num::read(&json!(-42)), Some(num("-42")));
        assert_eq!(
            Num::read(&json!(u64::MAX)),
            Some(num("18446744073709551615"))
        );
        assert_eq!(
            Num::read(&json!("9007199254740993")),
            Some(num("9007199254740993"))
        );
        assert_eq!(Num::read(&json!(true)), None);
    }
}
