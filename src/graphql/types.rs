//! GraphQL object types: `Change` and the demo SaaS rows.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use juniper::{GraphQLEnum, GraphQLObject, graphql_object};
use tokio_postgres::Row;

use super::context::Context;
use super::json::Json;
use crate::events::Op;
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
}

impl From<ChangeOp> for Op {
    fn from(op: ChangeOp) -> Op {
        match op {
            ChangeOp::Insert => Op::Insert,
            ChangeOp::Update => Op::Update,
            ChangeOp::Delete => Op::Delete,
        }
    }
}

impl From<Op> for ChangeOp {
    fn from(op: Op) -> ChangeOp {
        match op {
            Op::Insert => ChangeOp::Insert,
            Op::Update => ChangeOp::Update,
            Op::Delete => ChangeOp::Delete,
        }
    }
}

/// A committed change of a tracked table, as the caller may see it.
pub struct Change {
    pub(crate) delivery: Delivery,
    pub(crate) identity: Arc<str>,
}

#[graphql_object(context = Context)]
impl Change {
    /// Resume point just after this change (pass as `after`).
    fn cursor(&self) -> String {
        self.delivery.cursor(&self.identity).encode()
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

/// A notification for one user.
#[derive(Clone, Debug, GraphQLObject)]
pub struct Notification {
    /// Id.
    pub id: String,
    /// Tenant it belongs to.
    pub tenant_id: String,
    /// Recipient.
    pub user_id: String,
    /// Kind, free text.
    pub kind: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: Option<String>,
    /// Extra data.
    pub data: Json,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When the recipient read it.
    pub read_at: Option<DateTime<Utc>>,
}

impl Notification {
    /// Columns to select, in the order [`Notification::from_row`] reads them.
    pub const COLUMNS: &'static str =
        "id::text, tenant_id::text, user_id::text, kind, title, body, data, created_at, read_at";

    /// From a row selected with [`Notification::COLUMNS`].
    pub fn from_row(row: &Row) -> Notification {
        Notification {
            id: row.get(0),
            tenant_id: row.get(1),
            user_id: row.get(2),
            kind: row.get(3),
            title: row.get(4),
            body: row.get(5),
            data: Json(Arc::new(row.get(6))),
            created_at: row.get(7),
            read_at: row.get(8),
        }
    }

    /// From a row image delivered by the hub.
    pub fn from_image(image: &serde_json::Value) -> Option<Notification> {
        let s = |k: &str| image.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let t = |k: &str| {
            image
                .get(k)
                .and_then(|v| v.as_str())
                .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
                .map(|d| d.with_timezone(&Utc))
        };
        Some(Notification {
            id: s("id")?,
            tenant_id: s("tenant_id")?,
            user_id: s("user_id")?,
            kind: s("kind").unwrap_or_default(),
            title: s("title").unwrap_or_default(),
            body: s("body"),
            data: Json(Arc::new(
                image
                    .get("data")
                    .cloned()
                    .unwrap_or(serde_json::Value::Null),
            )),
            created_at: t("created_at")?,
            read_at: t("read_at"),
        })
    }
}

/// A document shared within a tenant.
#[derive(Clone, Debug, GraphQLObject)]
pub struct Document {
    /// Id.
    pub id: String,
    /// Tenant it belongs to.
    pub tenant_id: String,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl Document {
    /// Columns to select, in the order [`Document::from_row`] reads them.
    pub const COLUMNS: &'static str = "id::text, tenant_id::text, title, body, updated_at";

    /// From a row selected with [`Document::COLUMNS`].
    pub fn from_row(row: &Row) -> Document {
        Document {
            id: row.get(0),
            tenant_id: row.get(1),
            title: row.get(2),
            body: row.get(3),
            updated_at: row.get(4),
        }
    }
}

/// A user.
#[derive(Clone, Debug, GraphQLObject)]
pub struct User {
    /// Id.
    pub id: String,
    /// Email.
    pub email: String,
    /// Display name.
    pub display_name: Option<String>,
}

/// A tenant.
#[derive(Clone, Debug, GraphQLObject)]
pub struct Tenant {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
}
