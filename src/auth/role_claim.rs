//! Where in the claims the database role is: a JSON pointer (RFC 6901).
//!
//! A JSON pointer is unambiguous where a dotted path is not: claim names
//! such as `https://hasura.io/jwt/claims` hold dots and slashes. Each `/`
//! starts a member name, `~1` in a name stands for `/` and `~0` for `~`:
//!
//! | claims | pointer |
//! |---|---|
//! | `{"role": "r"}` | `/role` (the default) |
//! | `{"app_metadata": {"role": "r"}}` | `/app_metadata/role` |
//! | `{"https://hasura.io/jwt/claims": {"x-hasura-default-role": "r"}}` | `/https:~1~1hasura.io~1jwt~1claims/x-hasura-default-role` |
//! | `{"roles": ["r", "s"]}` | `/roles/0` |

use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

/// A JSON pointer to the role claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleClaim {
    text: String,
    segments: Vec<String>,
}

impl Default for RoleClaim {
    fn default() -> Self {
        "/role".parse().expect("the default role claim parses")
    }
}

impl FromStr for RoleClaim {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some(rest) = s.strip_prefix('/') else {
            return Err(format!(
                "role claim {s:?} is not a JSON pointer: it must start with \"/\" (e.g. /role or /app_metadata/role; ~1 stands for \"/\" inside a name, ~0 for \"~\")"
            ));
        };
        let segments = rest
            .split('/')
            .map(|raw| unescape(raw).ok_or_else(|| {
                format!("role claim {s:?}: \"~\" must be followed by 0 or 1 (~0 is \"~\", ~1 is \"/\")")
            }))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RoleClaim {
            text: s.to_owned(),
            segments,
        })
    }
}

impl fmt::Display for RoleClaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

impl RoleClaim {
    /// The value the pointer names in `claims`; `None` when any step of the
    /// path is missing (or names into a string or number).
    pub fn find<'a>(&self, claims: &'a Value) -> Option<&'a Value> {
        self.segments
            .iter()
            .try_fold(claims, |value, segment| match value {
                Value::Object(map) => map.get(segment),
                Value::Array(items) => index(segment).and_then(|i| items.get(i)),
                _ => None,
            })
    }

    /// Sets the value the pointer names in `claims` to `role`, creating
    /// objects along the way (minting tokens). Array steps are not created.
    pub fn insert(&self, claims: &mut Value, role: &str) {
        let mut value = claims;
        for segment in &self.segments {
            if !value.is_object() {
                *value = Value::Object(Map::new());
            }
            value = value
                .as_object_mut()
                .expect("made an object above")
                .entry(segment.clone())
                .or_insert(Value::Null);
        }
        *value = Value::String(role.to_owned());
    }
}

/// An array index as RFC 6901 writes it: digits, no leading zero.
fn index(segment: &str) -> Option<usize> {
    let digits = !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit());
    let canonical = segment == "0" || !segment.starts_with('0');
    (digits && canonical)
        .then(|| segment.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(pointer: &str, claims: Value) -> Option<Value> {
        pointer.parse::<RoleClaim>().unwrap().find(&claims).cloned()
    }

    #[test]
    fn pointers_find_top_level_nested_escaped_and_indexed_claims() {
        assert_eq!(at("/role", json!({"role": "r"})), Some(json!("r")));
        assert_eq!(
            at("/app_metadata/role", json!({"app_metadata": {"role": "r"}})),
            Some(json!("r"))
        );
        assert_eq!(
            at(
                "/https:~1~1hasura.io~1jwt~1claims/x-hasura-default-role",
                json!({"https://hasura.io/jwt/claims": {"x-hasura-default-role": "r"}})
            ),
            Some(json!("r"))
        );
        assert_eq!(at("/a~0b", json!({"a~b": "r"})), Some(json!("r")));
        assert_eq!(
            at("/roles/1", json!({"roles": ["a", "b"]})),
            Some(json!("b"))
        );
        // A dot is part of a name, not a separator.
        assert_eq!(
            at("/app_metadata.role", json!({"app_metadata.role": "r"})),
            Some(json!("r"))
        );
    }

    #[test]
    fn missing_steps_find_nothing() {
        assert_eq!(at("/app_metadata/role", json!({"role": "r"})), None);
        assert_eq!(at("/app_metadata/role", json!({"app_metadata": "x"})), None);
        assert_eq!(at("/roles/01", json!({"roles": ["a", "b"]})), None);
        assert_eq!(at("/roles/2", json!({"roles": ["a", "b"]})), None);
        assert_eq!(at("/role", json!({"Role": "r"})), None);
    }

    #[test]
    fn only_pointers_parse() {
        for bad in ["role", "app_metadata.role", "", "/a~2", "/a~"] {
            let err = bad.parse::<RoleClaim>().unwrap_err();
            assert!(!err.contains('\n'), "{err}");
        }
        assert_eq!(RoleClaim::default().to_string(), "/role");
    }

    #[test]
    fn insert_creates_the_path() {
        let claim: RoleClaim = "/https:~1~1x/role".parse().unwrap();
        let mut claims = json!({"sub": "u"});
        claim.insert(&mut claims, "r");
        assert_eq!(claims, json!({"sub": "u", "https://x": {"role": "r"}}));
        assert_eq!(claim.find(&claims), Some(&json!("r")));
    }
}
