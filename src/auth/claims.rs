//! Checks on verified claims that the JWT library does not make.

use serde_json::Value;

/// Whether any string or member name in `value`, at any depth, holds
/// U+0000. Postgres' jsonb refuses it (`unsupported Unicode escape
/// sequence`), so such claims could never be set as `request.jwt.claims`.
pub(super) fn contains_nul(value: &Value) -> bool {
    // An explicit stack: claims nest as deep as the JSON parser allows.
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::String(s) if s.contains('\0') => return true,
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => {
                if map.keys().any(|k| k.contains('\0')) {
                    return true;
                }
                stack.extend(map.values());
            }
            _ => {}
        }
    }
    false
}

/// A NumericDate claim (seconds since the epoch) as whole seconds, the way
/// the JWT library reads it: a non-negative integer, or a non-negative
/// finite number rounded. `None` when absent or of another type.
pub(super) fn numeric_date(claims: &Value, name: &str) -> Option<i64> {
    let value = claims.get(name)?;
    if let Some(n) = value.as_u64() {
        return Some(i64::try_from(n).unwrap_or(i64::MAX));
    }
    let f = value.as_f64()?;
    (f.is_finite() && f >= 0.0).then(|| {
        let r = f.round();
        if r >= i64::MAX as f64 {
            i64::MAX
        } else {
            r as i64
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nul_is_found_in_strings_and_names_at_any_depth() {
        assert!(!contains_nul(&json!({"sub": "u", "a": [1, {"b": "c"}]})));
        assert!(contains_nul(&json!({"sub": "u\u{0}"})));
        assert!(contains_nul(&json!({"a": {"b": [1, ["x\u{0}y"]]}})));
        assert!(contains_nul(&json!({"a": {"k\u{0}": 1}})));
        // The two-character text `\0` is not a NUL.
        assert!(!contains_nul(&json!({"sub": "\\u0000"})));
    }

    #[test]
    fn numeric_dates_read_integers_and_rounded_numbers() {
        let claims = json!({"a": 5, "b": 5.6, "c": "5", "d": -1, "e": 1e300});
        assert_eq!(numeric_date(&claims, "a"), Some(5));
        assert_eq!(numeric_date(&claims, "b"), Some(6));
        assert_eq!(numeric_date(&claims, "c"), None);
        assert_eq!(numeric_date(&claims, "d"), None);
        assert_eq!(numeric_date(&claims, "e"), Some(i64::MAX));
        assert_eq!(numeric_date(&claims, "zz"), None);
    }
}
