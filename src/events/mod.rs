//! The event pipeline: the outbox reader, the listener that drives it, the
//! relay that wakes it for tables in relay mode, the hub that routes events
//! to subscriptions, the renderings the deliveries of an event share, and the
//! cursors clients resume from.

pub mod backlog;
pub mod batches;
pub mod catchup;
pub mod cursor;
pub mod delivery;
pub mod feed;
pub mod filter;
pub mod hub;
mod index;
pub mod listener;
pub mod moments;
pub mod outbox;
pub mod privileges;
pub mod queue;
mod registry;
pub mod relay;
pub mod renderings;
mod route_index;
pub mod routing;
pub mod snapshot;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The database operation behind an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// A row was inserted.
    Insert,
    /// A row was updated.
    Update,
    /// A row was deleted.
    Delete,
    /// The table was truncated (no row images).
    Truncate,
}

impl Op {
    /// Parses the `op` column of `herald.events`.
    pub fn from_sql(s: &str) -> Option<Op> {
        match s {
            "INSERT" => Some(Op::Insert),
            "UPDATE" => Some(Op::Update),
            "DELETE" => Some(Op::Delete),
            "TRUNCATE" => Some(Op::Truncate),
            _ => None,
        }
    }

    /// Bit for [`OpSet`].
    fn bit(self) -> u8 {
        match self {
            Op::Insert => 1,
            Op::Update => 2,
            Op::Delete => 4,
            Op::Truncate => 8,
        }
    }
}

/// A set of operations a subscription wants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpSet(u8);

impl OpSet {
    /// Every operation.
    pub const ALL: OpSet = OpSet(15);

    /// The set of the given operations.
    pub fn of(ops: impl IntoIterator<Item = Op>) -> OpSet {
        OpSet(ops.into_iter().fold(0, |acc, op| acc | op.bit()))
    }

    /// Whether `op` is in the set.
    pub fn contains(self, op: Op) -> bool {
        self.0 & op.bit() != 0
    }
}

/// One committed row change, as read from `herald.events`.
#[derive(Debug)]
pub struct Event {
    /// Outbox id: commit order for any one row, and the order inside a batch.
    pub id: i64,
    /// The writing transaction.
    pub xid: u64,
    /// The table's oid.
    pub relid: u32,
    /// `schema.table`, quoted where needed.
    pub table: Arc<str>,
    /// What happened.
    pub op: Op,
    /// The new row image (inserts and updates).
    pub new_row: Option<Arc<Value>>,
    /// The old row image (updates and deletes).
    pub old_row: Option<Arc<Value>>,
    /// When the change was captured.
    pub committed_at: DateTime<Utc>,
}
