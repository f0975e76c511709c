//! pgherald's GraphQL scalar values: juniper's four, plus exact 64-bit
//! integers, so an int8 in a `JSON` row image (3000000000) is written as that
//! number, never as a float (`3000000000.0`), and already-encoded JSON, so a
//! subscription item rendered once is written into every frame as is.

use std::fmt;
use std::sync::Arc;

use derive_more::with_trait::{Display, From, TryInto};
use juniper::ScalarValue;
use serde::{Deserialize, Deserializer, Serialize, de};

/// A scalar value in a GraphQL request or response.
#[derive(Clone, Debug, Display, From, PartialEq, ScalarValue, Serialize, TryInto)]
#[serde(untagged)]
pub enum Scalar {
    /// A GraphQL `Int`.
    #[value(to_float, to_int)]
    Int(i32),
    /// An integer beyond `Int` (JSON output of int8 values).
    Long(i64),
    /// A number written exactly as Postgres wrote it (JSON output of
    /// numerics a float would change).
    Exact(ExactNumber),
    /// A GraphQL `Float`.
    #[value(to_float)]
    Float(f64),
    /// A GraphQL `String` (and the custom scalars carried as text).
    #[value(as_str, to_string)]
    String(String),
    /// A GraphQL `Boolean`.
    #[value(to_bool)]
    Boolean(bool),
    /// A value already encoded as JSON (a subscription item, rendered once
    /// for every subscriber that wants the same of the same event). Output
    /// only: no client input deserialises or parses to it, and it converts
    /// to no primitive.
    Encoded(Encoded),
}

/// JSON text, written out as it is.
#[derive(Clone, Debug)]
pub struct Encoded(pub Arc<serde_json::value::RawValue>);

impl fmt::Display for Encoded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.get())
    }
}

impl PartialEq for Encoded {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.get() == other.0.get()
    }
}

impl Serialize for Encoded {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// The text of a JSON number, written out as a number.
#[derive(Clone, Debug, Display, PartialEq)]
pub struct ExactNumber(pub String);

impl Serialize for ExactNumber {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serde_json::value::RawValue::from_string(self.0.clone())
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl de::Visitor<'_> for Visitor {
            type Value = Scalar;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a GraphQL scalar value")
            }

            fn visit_bool<E: de::Error>(self, b: bool) -> Result<Scalar, E> {
                Ok(Scalar::Boolean(b))
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Scalar, E> {
                Ok(i32::try_from(n).map_or(Scalar::Long(n), Scalar::Int))
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Scalar, E> {
                // Beyond i64 only a float can hold it (as JSON.parse would).
                Ok(i64::try_from(n).map_or(Scalar::Float(n as f64), |n| {
                    i32::try_from(n).map_or(Scalar::Long(n), Scalar::Int)
                }))
            }

            fn visit_f64<E: de::Error>(self, f: f64) -> Result<Scalar, E> {
                Ok(Scalar::Float(f))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Scalar, E> {
                Ok(Scalar::String(s.to_owned()))
            }

            fn visit_string<E: de::Error>(self, s: String) -> Result<Scalar, E> {
                Ok(Scalar::String(s))
            }
        }

        de.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_integers_stay_integers_both_ways() {
        assert_eq!(
            serde_json::to_string(&Scalar::Long(3_000_000_000)).unwrap(),
            "3000000000"
        );
        assert_eq!(
            serde_json::from_str::<Scalar>("3000000000").unwrap(),
            Scalar::Long(3_000_000_000)
        );
        assert_eq!(serde_json::from_str::<Scalar>("7").unwrap(), Scalar::Int(7));
        assert_eq!(
            serde_json::to_string(&Scalar::Exact(ExactNumber("100.10".into()))).unwrap(),
            "100.10"
        );
    }

    #[test]
    fn encoded_json_is_written_as_is_and_never_read_from_input() {
        let raw = serde_json::value::RawValue::from_string(r#"{"b":1,"a":[true]}"#.into()).unwrap();
        let value = juniper::Value::scalar(Scalar::Encoded(Encoded(Arc::from(raw))));
        let frame = juniper::Value::<Scalar>::object(
            [("changes", value)]
                .into_iter()
                .collect::<juniper::Object<_>>(),
        );
        assert_eq!(
            serde_json::to_string(&frame).unwrap(),
            r#"{"changes":{"b":1,"a":[true]}}"#
        );
        for input in [r#""{\"a\":1}""#, "1", "true", "2.5", "3000000000"] {
            let parsed = serde_json::from_str::<Scalar>(input).unwrap();
            assert!(!matches!(parsed, Scalar::Encoded(_)), "{input}: {parsed:?}");
        }
        assert!(serde_json::from_str::<Scalar>(r#"{"a":1}"#).is_err());
        assert!(serde_json::from_str::<Scalar>("[1]").is_err());
    }
}
