//! Row images as Postgres writes them, with every number kept exact.
//!
//! `to_jsonb` writes a numeric as its exact decimal (`100.10`,
//! `12345678901234567890.5`), which a float cannot hold. Reading an image,
//! a number whose text a float or a 64-bit integer would not reproduce is
//! kept as its text behind a marker: a string starting with NUL, which no
//! Postgres `jsonb` string can contain, so the marker is never ambiguous.
//! Everything that consumes images knows the marker: GraphQL output writes
//! the digits back as a JSON number (or a `BigFloat` string), filters compare
//! it as a decimal, and images sent back to Postgres ([`ExactJson`]) carry it
//! as the original number.

use std::error::Error;

use bytes::{BufMut, BytesMut};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

/// Starts a string that stands for the number written after it.
const MARKER: &str = "\u{0}#";

/// The exact text of a number kept behind the marker, if `s` is one.
pub fn exact_number(s: &str) -> Option<&str> {
    s.strip_prefix(MARKER)
}

/// The JSON value of `text`, numbers kept exact.
pub fn parse(text: &str) -> serde_json::Result<Value> {
    match mark_inexact_numbers(text) {
        Some(marked) => serde_json::from_str(&marked),
        None => serde_json::from_str(text),
    }
}

/// `text` with each number that would not survive parsing rewritten as a
/// marked string; `None` when every number survives (the common case).
fn mark_inexact_numbers(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < bytes.len()
                    && matches!(bytes[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let number = &text[start..i];
                if !survives(number) {
                    let buf = out.get_or_insert_with(|| String::with_capacity(text.len() + 16));
                    buf.push_str(&text[copied..start]);
                    buf.push_str("\"\\u0000#");
                    buf.push_str(number);
                    buf.push('"');
                    copied = i;
                }
            }
            _ => i += 1,
        }
    }
    let mut buf = out?;
    buf.push_str(&text[copied..]);
    Some(buf)
}

/// Whether parsing `number` and writing it back gives the same text.
fn survives(number: &str) -> bool {
    match serde_json::from_str::<serde_json::Number>(number) {
        Ok(n) => n.to_string() == number,
        Err(_) => false,
    }
}

/// A `json`/`jsonb` column read with [`parse`].
#[derive(Debug)]
pub struct Jsonb(pub Value);

impl<'a> FromSql<'a> for Jsonb {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        let text = if *ty == Type::JSONB {
            // Binary jsonb: a version byte, then the text.
            match raw.split_first() {
                Some((1, text)) => text,
                _ => return Err("unsupported jsonb encoding version".into()),
            }
        } else {
            raw
        };
        Ok(Jsonb(parse(std::str::from_utf8(text)?)?))
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB)
    }
}

/// A value sent to Postgres as `jsonb`, marked numbers written as numbers.
#[derive(Debug)]
pub struct ExactJson<'a>(pub &'a Value);

impl Serialize for ExactJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::String(s) => match exact_number(s) {
                Some(number) => RawValue::from_string(number.to_owned())
                    .map_err(serde::ser::Error::custom)?
                    .serialize(serializer),
                None => serializer.serialize_str(s),
            },
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&ExactJson(item))?;
                }
                seq.end()
            }
            Value::Object(fields) => {
                let mut map = serializer.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, &ExactJson(v))?;
                }
                map.end()
            }
            other => other.serialize(serializer),
        }
    }
}

impl ToSql for ExactJson<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        if *ty == Type::JSONB {
            out.put_u8(1);
        }
        serde_json::to_writer(out.writer(), self)?;
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(*ty, Type::JSON | Type::JSONB)
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn numbers_a_float_would_change_are_kept_as_their_text() {
        let v = parse(r#"{"a": 100.10, "b": 1.5, "c": 3000000000, "d": "x\"1.10", "e": [12345678901234567890.5, 0.10]}"#).unwrap();
        assert_eq!(exact_number(v["a"].as_str().unwrap()), Some("100.10"));
        assert_eq!(v["b"], json!(1.5));
        assert_eq!(v["c"], json!(3_000_000_000u64));
        assert_eq!(v["d"], json!("x\"1.10"));
        assert_eq!(
            exact_number(v["e"][0].as_str().unwrap()),
            Some("12345678901234567890.5")
        );
        assert_eq!(exact_number(v["e"][1].as_str().unwrap()), Some("0.10"));
    }

    #[test]
    fn marked_numbers_go_back_to_postgres_as_numbers() {
        let v = parse(r#"{"a": 100.10, "s": "plain", "n": [1, 2.50]}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&ExactJson(&v)).unwrap(),
            r#"{"a":100.10,"n":[1,2.50],"s":"plain"}"#
        );
    }
}
