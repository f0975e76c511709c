//! Cursors: opaque strings naming how far a subscriber has consumed the
//! event stream, so it can resume on any instance with nothing missed and
//! nothing repeated.
//!
//! A cursor `(low, high, id)` means: consumed every event whose transaction is
//! visible in `low`, plus those visible in `high` with an outbox id up to `id`.
//! It also carries the database identity, because transaction ids repeat on a
//! restored or failed-over database.
//!
//! Cursors are signed (HMAC-SHA256) with a key every instance reads from the
//! database (`herald.cursor_key()`): an edited cursor is refused rather than
//! replaying whatever it names.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use serde::{Deserialize, Serialize};

use super::snapshot::Snapshot;

/// A position in the event stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// `herald.server_identity()` of the database the position belongs to.
    pub identity: String,
    /// Everything visible in this snapshot is consumed.
    pub low: Snapshot,
    /// Of what `high` adds to `low`, events with an id up to `id` are consumed.
    pub high: Snapshot,
    /// Last consumed outbox id inside `high`.
    pub id: i64,
}

/// A cursor string that cannot be decoded.
#[derive(Debug, thiserror::Error)]
#[error("invalid cursor")]
pub struct CursorDecodeError;

/// Why a client's cursor was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CursorError {
    /// Not a cursor at all.
    #[error("invalid cursor")]
    Invalid,
    /// Made by another database (restored, failed over, or another deployment).
    #[error("cursor is from another database; resync required")]
    Foreign,
    /// Its signature does not match: it was edited.
    #[error("invalid cursor: it was altered")]
    Altered,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    v: u8,
    db: String,
    lo: String,
    hi: String,
    id: i64,
    /// HMAC of the fields above (base64url), absent in unsigned form.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    sig: String,
}

/// Signs and checks the cursors of one database.
pub struct CursorCodec {
    identity: Arc<str>,
    key: hmac::Key,
}

impl CursorCodec {
    /// A codec for the database `identity`, signing with `key`.
    pub fn new(identity: Arc<str>, key: &[u8]) -> CursorCodec {
        CursorCodec {
            identity,
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    /// The database identity cursors carry.
    pub fn identity(&self) -> &Arc<str> {
        &self.identity
    }

    /// A cursor meaning "everything visible in `snapshot`".
    pub fn at(&self, snapshot: Snapshot) -> Cursor {
        Cursor::at(self.identity.to_string(), snapshot)
    }

    /// The signed string handed to clients.
    pub fn encode(&self, cursor: &Cursor) -> String {
        let mut wire = cursor.wire();
        let tag = hmac::sign(
            &self.key,
            &serde_json::to_vec(&wire).expect("cursor serializes"),
        );
        wire.sig = URL_SAFE_NO_PAD.encode(tag.as_ref());
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wire).expect("cursor serializes"))
    }

    /// The cursor `text` names, if this database signed it.
    pub fn decode(&self, text: &str) -> Result<Cursor, CursorError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| CursorError::Invalid)?;
        let mut wire: Wire = serde_json::from_slice(&bytes).map_err(|_| CursorError::Invalid)?;
        let signature = std::mem::take(&mut wire.sig);
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| CursorError::Invalid)?;
        let signed = serde_json::to_vec(&wire).expect("cursor serializes");
        if hmac::verify(&self.key, &signed, &signature).is_err() {
            return Err(if wire.db != *self.identity {
                CursorError::Foreign
            } else {
                CursorError::Altered
            });
        }
        if wire.db != *self.identity {
            return Err(CursorError::Foreign);
        }
        Cursor::from_wire(wire).map_err(|_| CursorError::Invalid)
    }
}

impl Cursor {
    /// A cursor meaning "everything visible in `snapshot`".
    pub fn at(identity: String, snapshot: Snapshot) -> Self {
        Cursor {
            identity,
            low: snapshot.clone(),
            high: snapshot,
            id: 0,
        }
    }

    /// Whether the event `(xid, id)` is already consumed at this cursor.
    pub fn consumed(&self, xid: u64, id: i64) -> bool {
        self.low.sees(xid) || (self.high.sees(xid) && id <= self.id)
    }

    fn wire(&self) -> Wire {
        Wire {
            v: 1,
            db: self.identity.clone(),
            lo: self.low.to_string(),
            hi: self.high.to_string(),
            id: self.id,
            sig: String::new(),
        }
    }

    fn from_wire(wire: Wire) -> Result<Self, CursorDecodeError> {
        if wire.v != 1 {
            return Err(CursorDecodeError);
        }
        let cursor = Cursor {
            identity: wire.db,
            low: wire.lo.parse().map_err(|_| CursorDecodeError)?,
            high: wire.hi.parse().map_err(|_| CursorDecodeError)?,
            id: wire.id,
        };
        // `high` is the later snapshot: it covers everything `low` does.
        if !cursor.high.covers(&cursor.low) {
            return Err(CursorDecodeError);
        }
        Ok(cursor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codec() -> CursorCodec {
        CursorCodec::new("abc:1:1".into(), b"key")
    }

    fn cursor() -> Cursor {
        Cursor {
            identity: "abc:1:1".into(),
            low: "5:9:6".parse().unwrap(),
            high: "6:12:".parse().unwrap(),
            id: 42,
        }
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = cursor();
        assert_eq!(codec().decode(&codec().encode(&c)).unwrap(), c);
        assert_eq!(codec().decode("not a cursor"), Err(CursorError::Invalid));
        assert_eq!(codec().decode(""), Err(CursorError::Invalid));
    }

    /// `text` with the JSON field `field` set to `value`, signature kept.
    fn edit(text: &str, field: &str, value: serde_json::Value) -> String {
        let mut json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(text).unwrap()).unwrap();
        json[field] = value;
        URL_SAFE_NO_PAD.encode(json.to_string())
    }

    #[test]
    fn edited_unsigned_and_foreign_cursors_are_refused() {
        let text = codec().encode(&cursor());
        for (field, value) in [
            ("lo", serde_json::json!("1:1:")),
            ("hi", serde_json::json!("99:99:")),
            ("id", serde_json::json!(0)),
            ("sig", serde_json::json!("")),
        ] {
            assert_eq!(
                codec().decode(&edit(&text, field, value)),
                Err(CursorError::Altered),
                "{field}"
            );
        }
        assert_eq!(
            codec().decode(&edit(&text, "db", serde_json::json!("other:1:1"))),
            Err(CursorError::Foreign)
        );
        let other_key = CursorCodec::new("abc:1:1".into(), b"another key");
        assert_eq!(other_key.decode(&text), Err(CursorError::Altered));
        let other_db = CursorCodec::new("xyz:2:1".into(), b"key");
        assert_eq!(other_db.decode(&text), Err(CursorError::Foreign));
    }

    #[test]
    fn consumed_covers_low_and_the_prefix_of_high() {
        let c = Cursor {
            identity: String::new(),
            low: "5:9:6".parse().unwrap(),
            high: "9:12:".parse().unwrap(),
            id: 42,
        };
        assert!(c.consumed(5, 100));
        assert!(c.consumed(6, 40));
        assert!(!c.consumed(6, 43));
        assert!(!c.consumed(12, 1));
    }
}
