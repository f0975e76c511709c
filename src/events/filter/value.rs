//! Values as the filter compares them: one [`Scalar`] per filter value,
//! parsed once; floats with Postgres's NaN order, uuids as 128-bit numbers,
//! and jsonb equality. Numbers are in [`super::number`], dates and times in
//! [`super::time`]. Each reader accepts what `to_jsonb(row)` produces;
//! filter values go through the same readers plus range checks.

use crate::db::jsonb::exact_number;
use std::cmp::Ordering;

use serde_json::Value;

use super::number::Num;

/// A filter value, parsed once.
#[derive(Clone, Debug)]
pub(super) enum Scalar {
    /// int2/int4/int8/numeric.
    Num(Num),
    /// float4/float8 (a float4 widened, which is exact).
    Float(f64),
    /// bool.
    Bool(bool),
    /// Text kinds and the text form of other types.
    Text(String),
    /// uuid.
    Uuid(u128),
    /// Microseconds since 2000-01-01 (timestamps) or days since then (dates);
    /// `i64::MIN`/`i64::MAX` are -infinity/infinity, as in Postgres.
    Time(i64),
    /// Position of an enum label in sort order.
    Enum(usize),
    /// json/jsonb.
    Json(Value),
    /// An array; `None` elements are NULLs.
    Array(Vec<Option<Scalar>>),
}

impl Scalar {
    /// Order of two values of the same kind (`None` for different kinds).
    pub(super) fn compare(&self, other: &Scalar) -> Option<Ordering> {
        Some(match (self, other) {
            (Scalar::Num(a), Scalar::Num(b)) => a.cmp(b),
            (Scalar::Float(a), Scalar::Float(b)) => float_cmp(*a, *b),
            (Scalar::Bool(a), Scalar::Bool(b)) => a.cmp(b),
            (Scalar::Text(a), Scalar::Text(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Scalar::Uuid(a), Scalar::Uuid(b)) => a.cmp(b),
            (Scalar::Time(a), Scalar::Time(b)) => a.cmp(b),
            (Scalar::Enum(a), Scalar::Enum(b)) => a.cmp(b),
            _ => return None,
        })
    }
}

/// Postgres's float order: NaN equals NaN and sorts above everything; -0 = 0.
pub(super) fn float_cmp(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).expect("neither is NaN"),
    }
}

/// Reads a float4 (`single`) or float8 from a JSON number or string
/// (`NaN`, `Infinity`, `-Infinity` or a decimal); a float4 is rounded to
/// single precision from its text, as Postgres's `float4in` does.
pub(super) fn read_float(v: &Value, single: bool) -> Option<f64> {
    match v {
        Value::Number(n) if !single => n.as_f64(),
        Value::Number(n) => parse_float(&n.to_string(), single),
        Value::String(s) => parse_float(exact_number(s).unwrap_or(s), single),
        _ => None,
    }
}

/// Parses a float's text: a decimal or a special value. Out-of-range
/// decimals become infinite (the caller decides whether that is an error).
pub(super) fn parse_float(text: &str, single: bool) -> Option<f64> {
    let value = match Num::parse(text)? {
        Num::NaN => f64::NAN,
        Num::PosInf => f64::INFINITY,
        Num::NegInf => f64::NEG_INFINITY,
        Num::Finite(_) if single => f64::from(text.parse::<f32>().ok()?),
        Num::Finite(_) => text.parse::<f64>().ok()?,
    };
    Some(value)
}

/// A float's text as Postgres reads it back to the same value.
pub(super) fn float_text(x: f64, single: bool) -> String {
    if x.is_nan() {
        "NaN".into()
    } else if x == f64::INFINITY {
        "Infinity".into()
    } else if x == f64::NEG_INFINITY {
        "-Infinity".into()
    } else if single {
        // Shortest text of the single-precision value.
        (x as f32).to_string()
    } else {
        x.to_string()
    }
}

/// Parses a uuid: 32 hex digits, hyphenated 8-4-4-4-12 or not, optionally
/// in braces, any case.
pub(super) fn parse_uuid(text: &str) -> Option<u128> {
    let inner = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(text);
    let hex: String = match inner.len() {
        32 => inner.to_owned(),
        36 => {
            let b = inner.as_bytes();
            if [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
                return None;
            }
            inner.chars().filter(|&c| c != '-').collect()
        }
        _ => return None,
    };
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u128::from_str_radix(&hex, 16).ok()
}

/// The canonical (lowercase, hyphenated) text of a uuid.
pub(super) fn uuid_text(u: u128) -> String {
    let h = format!("{u:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// jsonb equality: numbers by exact value (`1` = `1.0`), objects regardless
/// of key order, everything else structurally.
pub(super) fn jsonb_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x == y => true,
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| jsonb_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| jsonb_eq(v, w)))
        }
        _ => match (Num::read_json_number(a), Num::read_json_number(b)) {
            (Some(x), Some(y)) => x == y,
            (None, None) => a == b,
            _ => false,
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn floats_order_nan_last_and_round_float4_from_text() {
        assert_eq!(float_cmp(f64::NAN, f64::NAN), Ordering::Equal);
        assert_eq!(float_cmp(f64::NAN, f64::INFINITY), Ordering::Greater);
        assert_eq!(float_cmp(-0.0, 0.0), Ordering::Equal);
        assert_eq!(
            read_float(&json!("NaN"), false).map(f64::is_nan),
            Some(true)
        );
        assert_eq!(read_float(&json!(0.1), true), Some(f64::from(0.1f32)));
        assert_eq!(read_float(&json!("0.1"), false), Some(0.1));
        assert_eq!(float_text(f64::from(0.1f32), true), "0.1");
        assert_eq!(float_text(f64::NEG_INFINITY, false), "-Infinity");
    }

    #[test]
    fn uuids_parse_in_any_case_and_print_canonically() {
        let u = parse_uuid("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11").unwrap();
        assert_eq!(uuid_text(u), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
        assert_eq!(parse_uuid("{a0eebc999c0b4ef8bb6d6bb9bd380a11}"), Some(u));
        assert_eq!(parse_uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1"), None);
        assert_eq!(parse_uuid("g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), None);
    }

    #[test]
    fn jsonb_equality_is_by_value() {
        assert!(jsonb_eq(
            &json!({"a": 1, "b": [1.0]}),
            &json!({"b": [1], "a": 1.00})
        ));
        assert!(!jsonb_eq(&json!([1]), &json!(1)));
        assert!(!jsonb_eq(&json!({"a": 1}), &json!({"a": 1, "b": null})));
        assert!(!jsonb_eq(&json!("1"), &json!(1)));
        // A number kept exact as its text (crate::db::jsonb) is a number.
        let exact = crate::db::jsonb::parse(r#"{"a": 1.10}"#).unwrap();
        assert!(jsonb_eq(&exact, &json!({"a": 1.1})));
        assert!(!jsonb_eq(&exact, &json!({"a": "1.10"})));
    }
}
