//! Cursors: opaque strings naming how far a subscriber has consumed the
//! event stream, so it can resume on any instance with nothing missed and
//! nothing repeated.
//!
//! A cursor `(low, high, id)` means: consumed every event whose transaction is
//! visible in `low`, plus those visible in `high` with an outbox id up to `id`.
//! It also carries the database identity, because transaction ids repeat on a
//! restored or failed-over database.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
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

#[derive(Serialize, Deserialize)]
struct Wire {
    v: u8,
    db: String,
    lo: String,
    hi: String,
    id: i64,
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

    /// The opaque string handed to clients.
    pub fn encode(&self) -> String {
        let wire = Wire {
            v: 1,
            db: self.identity.clone(),
            lo: self.low.to_string(),
            hi: self.high.to_string(),
            id: self.id,
        };
        let json = serde_json::to_vec(&wire).expect("cursor serializes");
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Parses a string made by [`Cursor::encode`].
    pub fn decode(s: &str) -> Result<Self, CursorDecodeError> {
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| CursorDecodeError)?;
        let wire: Wire = serde_json::from_slice(&bytes).map_err(|_| CursorDecodeError)?;
        if wire.v != 1 {
            return Err(CursorDecodeError);
        }
        Ok(Cursor {
            identity: wire.db,
            low: wire.lo.parse().map_err(|_| CursorDecodeError)?,
            high: wire.hi.parse().map_err(|_| CursorDecodeError)?,
            id: wire.id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor {
            identity: "abc:1:1".into(),
            low: "5:9:6".parse().unwrap(),
            high: "6:12:".parse().unwrap(),
            id: 42,
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        assert!(Cursor::decode("not a cursor").is_err());
        assert!(Cursor::decode("").is_err());
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
