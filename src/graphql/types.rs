//! The generic API's types: `Change` and `ChangeOp`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use juniper::{GraphQLEnum, graphql_object};

use super::json::Json;
use super::scalar::Scalar;
use crate::events::Op;
use crate::events::cursor::CursorCodec;
use crate::events::delivery::Delivery;

/// The database operation behind a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, GraphQLEnum)]
pub enum ChangeOp {
    /// A row was inserted.
    Insert,
    /// A row was updated.
    Update,
    /// A row was deleted.
    Delete,
    /// The table was truncated: every row is gone (`row` and `old` are null).
    Truncate,
}

impl From<ChangeOp> for Op {
    fn from(op: ChangeOp) -> Op {
        match op {
            ChangeOp::Insert => Op::Insert,
            ChangeOp::Update => Op::Update,
            ChangeOp::Delete => Op::Delete,
            ChangeOp::Truncate => Op::Truncate,
        }
    }
}

impl From<Op> for ChangeOp {
    fn from(op: Op) -> ChangeOp {
        match op {
            Op::Insert => ChangeOp::Insert,
            Op::Update => ChangeOp::Update,
            Op::Delete => ChangeOp::Delete,
            Op::Truncate => ChangeOp::Truncate,
        }
    }
}

/// A committed change of a tracked table, as the caller may see it.
pub struct Change {
    pub(crate) delivery: Delivery,
    pub(crate) cursors: Arc<CursorCodec>,
}

#[graphql_object(scalar = Scalar)]
impl Change {
    /// Resume point just after this change (pass as `after`).
    fn cursor(&self) -> String {
        self.cursors
            .encode(&self.delivery.cursor(self.cursors.identity()))
    }

    /// The database operation.
    fn op(&self) -> ChangeOp {
        self.delivery.event.op.into()
    }

    /// `schema.table`.
    fn table(&self) -> &str {
        &self.delivery.event.table
    }

    /// The new version of the row; null for deletes and when the caller may not see it.
    fn row(&self) -> Option<Json> {
        self.delivery.row.clone().map(Json)
    }

    /// The old version of the row; null for inserts and when the caller could not see it.
    fn old(&self) -> Option<Json> {
        self.delivery.old.clone().map(Json)
    }

    /// When the change was made.
    fn committed_at(&self) -> DateTime<Utc> {
        self.delivery.event.committed_at
    }
}
