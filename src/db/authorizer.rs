//! Row-level security for events: for a batch of row images and the distinct
//! security contexts that want them, one database round trip says which
//! context may see which image, and which columns it may select.
//!
//! The work happens in `herald.authorize` (migrations/V1), which switches
//! role and claims transaction-locally per context and evaluates the table's
//! SELECT policies on each image, as Postgres would for a stored row.

use std::collections::HashMap;
use std::sync::Arc;

use deadpool_postgres::Pool;
use futures::future::BoxFuture;
use serde_json::{Map, Value};

use crate::auth::Caller;

use super::DbError;
use super::jsonb::ExactJson;

/// One question: may `contexts[context]` see `image`, a row of table `relid`?
#[derive(Debug)]
pub struct Check {
    /// Index into the contexts slice.
    pub context: usize,
    /// The table.
    pub relid: u32,
    /// The row image.
    pub image: Arc<Value>,
}

/// The answers to a batch of [`Check`]s.
#[derive(Debug, Default)]
pub struct Verdicts {
    visible: Vec<bool>,
    columns: HashMap<(usize, u32), Arc<[String]>>,
}

impl Verdicts {
    /// Verdicts from their parts: `visible[i]` answers check `i`; `columns`
    /// lists what each (context, table) may select.
    pub fn from_parts(visible: Vec<bool>, columns: HashMap<(usize, u32), Arc<[String]>>) -> Self {
        Verdicts { visible, columns }
    }

    /// Whether check `i` passed.
    pub fn visible(&self, i: usize) -> bool {
        self.visible.get(i).copied().unwrap_or(false)
    }

    /// `image` reduced to the columns `context` may select in `relid`.
    pub fn restrict(&self, context: usize, relid: u32, image: &Arc<Value>) -> Arc<Value> {
        let Some(columns) = self.columns.get(&(context, relid)) else {
            return Arc::new(Value::Object(Map::new()));
        };
        let Value::Object(fields) = image.as_ref() else {
            return image.clone();
        };
        if fields.keys().all(|k| columns.iter().any(|c| c == k)) {
            return image.clone();
        }
        let kept = fields
            .iter()
            .filter(|(k, _)| columns.iter().any(|c| c == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Arc::new(Value::Object(kept))
    }
}

/// Answers a batch of checks. The database in the service; the hub takes it
/// as a parameter so that unit tests can drive it without Postgres.
pub trait Authorize: Send + Sync {
    /// The verdicts for `checks` under `contexts`.
    fn authorize<'a>(
        &'a self,
        contexts: &'a [&'a Caller],
        checks: &'a [Check],
    ) -> BoxFuture<'a, Result<Verdicts, DbError>>;
}

/// The authorizer of the service: `herald.authorize` over a pooled connection.
#[derive(Clone)]
pub struct PgAuthorizer {
    pool: Pool,
}

impl PgAuthorizer {
    /// Authorizes with connections from `pool`.
    pub fn new(pool: Pool) -> PgAuthorizer {
        PgAuthorizer { pool }
    }
}

impl Authorize for PgAuthorizer {
    fn authorize<'a>(
        &'a self,
        contexts: &'a [&'a Caller],
        checks: &'a [Check],
    ) -> BoxFuture<'a, Result<Verdicts, DbError>> {
        Box::pin(async move {
            if checks.is_empty() {
                return Ok(Verdicts::default());
            }
            let mut client = self.pool.get().await?;
            authorize(&mut client, contexts, checks).await
        })
    }
}

/// Evaluates `checks` under `contexts` in one transaction.
pub async fn authorize(
    client: &mut tokio_postgres::Client,
    contexts: &[&Caller],
    checks: &[Check],
) -> Result<Verdicts, DbError> {
    if checks.is_empty() {
        return Ok(Verdicts::default());
    }
    let context_json: Value = contexts
        .iter()
        .map(|c| serde_json::json!({"role": c.role, "claims": c.claims.as_ref()}))
        .collect();
    let ctx: Vec<i32> = checks.iter().map(|c| c.context as i32).collect();
    let rel: Vec<u32> = checks.iter().map(|c| c.relid).collect();
    // Each distinct image is sent once (checks share images through `Arc`s:
    // one event's row checked under many contexts) and referred to by index.
    let mut images: Vec<ExactJson> = Vec::new();
    // Keyed by address (as an integer, so the future stays `Send`).
    let mut index_of: HashMap<usize, i32> = HashMap::new();
    let img: Vec<i32> = checks
        .iter()
        .map(|c| {
            *index_of
                .entry(Arc::as_ptr(&c.image) as usize)
                .or_insert_with(|| {
                    images.push(ExactJson(c.image.as_ref()));
                    images.len() as i32 // 1-based, as SQL arrays
                })
        })
        .collect();

    let tx = client.transaction().await?;
    let rows = tx
        .query(
            "select chk, visible, context, relid, columns from herald.authorize($1, $2, $3, $4, $5)",
            &[&context_json, &ctx, &rel, &img, &images],
        )
        .await?;
    tx.commit().await?;

    let mut verdicts = Verdicts {
        visible: vec![false; checks.len()],
        columns: HashMap::new(),
    };
    for row in rows {
        match row.get::<_, Option<i32>>("chk") {
            // Check numbers are 1-based (SQL ordinality).
            Some(chk) => {
                if let Some(slot) = verdicts.visible.get_mut(chk as usize - 1) {
                    *slot = row.get::<_, bool>("visible");
                }
            }
            None => {
                let context: i32 = row.get("context");
                let relid: u32 = row.get("relid");
                let columns: Vec<String> = row.get("columns");
                verdicts
                    .columns
                    .insert((context as usize, relid), columns.into());
            }
        }
    }
    Ok(verdicts)
}
