//! Routes: for a (table, role), how a caller's visible rows can be told
//! apart without asking the authorizer per caller. Derived from the table's
//! policies ([`super::policy_shape`]), vetted here against the catalog, and
//! used by [`crate::events::routing`] with each caller's keys, which this
//! module also computes (`herald.route_keys`, migrations/V10).
//!
//! A route is only derived when everything its keys depend on is known to
//! change visibly: the catalogs (their fingerprint, `herald.routing_version`,
//! travels with every held snapshot) and rows of tracked tables (their
//! changes are events). Functions must be built-in and pure (or a
//! privilege or setting lookup), or SQL functions whose bodies pass the same
//! vetting; nothing that reads the time, an untracked table or a view.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use deadpool_postgres::Pool;
use futures::future::BoxFuture;
use serde_json::{Value as Json, json};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Transaction};

use super::DbError;
use super::as_of::{self, AsOf, Moment};
use super::node_tree;
use super::policy_shape::{self, Arm, Policy, Reach};
use crate::auth::Caller;

/// Built-in stable functions whose results depend only on the session
/// (settings, role, privileges), not on the time or on table contents.
const SESSION_FUNCTIONS: [&str; 12] = [
    "current_setting",
    "pg_has_role",
    "has_table_privilege",
    "has_column_privilege",
    "has_any_column_privilege",
    "has_schema_privilege",
    "has_function_privilege",
    "has_sequence_privilege",
    "has_database_privilege",
    "row_security_active",
    "current_schema",
    "current_schemas",
];

/// How deep SQL functions calling SQL functions are followed.
const MAX_FUNCTION_DEPTH: usize = 8;

/// Which rows of a table a role's callers may see, in routable form.
#[derive(Debug, PartialEq, Eq)]
pub enum Shape {
    /// Row-level security does not restrict the role: every row.
    Everyone,
    /// Rows whose `column` holds one of the caller's keys, computed by `arms`.
    Keyed {
        /// The column compared.
        column: String,
        /// What a caller's keys are computed by.
        arms: Arc<[Arm]>,
        /// Whether holding a key is the whole policy (else the authorizer
        /// still decides among the routed callers).
        exact: bool,
        /// Tracked tables the keys are read from: an event on one of them
        /// may change them.
        reads: Vec<u32>,
    },
}

/// A route for one (table, role).
#[derive(Debug, PartialEq, Eq)]
pub struct Route {
    /// How its rows are told apart.
    pub shape: Shape,
    /// The columns the role may select.
    pub columns: Arc<[String]>,
}

impl Route {
    /// Whether a caller with `keys` (its keys at the image's moment; `None`
    /// for [`Shape::Everyone`]) may see `image`, when the route alone
    /// decides that; `None` when the authorizer must.
    pub fn verdict(&self, image: &Json, keys: Option<&[String]>) -> Option<bool> {
        let visible = match (&self.shape, keys) {
            (Shape::Everyone, _) => true,
            (
                Shape::Keyed {
                    column,
                    exact: true,
                    ..
                },
                Some(keys),
            ) => holds_key(image.get(column.as_str()), keys),
            _ => return None,
        };
        Some(visible && !self.columns.is_empty())
    }

    /// Whether a caller with `keys` (at the image's moment) might see
    /// `image`: `false` only when its policies cannot let it.
    pub fn admits(&self, image: &Json, keys: Option<&[String]>) -> bool {
        match (&self.shape, keys) {
            (Shape::Keyed { column, .. }, Some(keys)) => {
                holds_key(image.get(column.as_str()), keys)
            }
            _ => true,
        }
    }
}

/// Whether an image's value is one of `keys` (sorted; Postgres's text form:
/// integers, uuids and text render the same in JSON and in SQL).
fn holds_key(value: Option<&Json>, keys: &[String]) -> bool {
    let Some(text) = key_text(value) else {
        return false;
    };
    keys.binary_search_by(|k| k.as_str().cmp(&text)).is_ok()
}

/// An image's value as a key: its text form (`None` for NULL and for values
/// no key can hold).
pub fn key_text(value: Option<&Json>) -> Option<std::borrow::Cow<'_, str>> {
    match value {
        Some(Json::String(s)) => Some(std::borrow::Cow::Borrowed(s.as_str())),
        Some(Json::Number(n)) => Some(std::borrow::Cow::Owned(n.to_string())),
        _ => None,
    }
}

/// Routes derived in one snapshot.
#[derive(Debug)]
pub struct Derived {
    /// The catalogs' fingerprint in that snapshot.
    pub version: String,
    /// Per asked (table, role): its route, or `None` when not routable.
    pub routes: Vec<Option<Arc<Route>>>,
}

/// One caller's keys for one route, at a batch's two moments.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MomentKeys {
    /// As of the batch's start (old images).
    pub before: Arc<[String]>,
    /// As of its end (new images).
    pub after: Arc<[String]>,
}

/// Where routes and keys come from: the database in the service; the hub
/// takes it as a parameter so that unit tests can run without one.
pub trait RouteSource: Send + Sync {
    /// [`derive`]s the routes of `pairs` (table, role).
    fn derive<'a>(
        &'a self,
        pairs: &'a [(u32, String)],
        as_of: &'a AsOf,
    ) -> BoxFuture<'a, Result<Option<Derived>, DbError>>;

    /// Computes the [`keys`] of callers.
    fn keys<'a>(
        &'a self,
        callers: &'a [&'a Caller],
        questions: &'a [(usize, Arc<[Arm]>)],
        as_of: &'a AsOf,
    ) -> BoxFuture<'a, Result<Option<Vec<Option<MomentKeys>>>, DbError>>;
}

/// Routes and keys from the database, over pooled connections.
pub struct PgRoutes {
    pool: Pool,
}

impl PgRoutes {
    /// Routes with connections from `pool`.
    pub fn new(pool: Pool) -> PgRoutes {
        PgRoutes { pool }
    }
}

impl RouteSource for PgRoutes {
    fn derive<'a>(
        &'a self,
        pairs: &'a [(u32, String)],
        as_of: &'a AsOf,
    ) -> BoxFuture<'a, Result<Option<Derived>, DbError>> {
        Box::pin(async move {
            let mut client = self.pool.get().await?;
            derive(&mut client, pairs, as_of).await
        })
    }

    fn keys<'a>(
        &'a self,
        callers: &'a [&'a Caller],
        questions: &'a [(usize, Arc<[Arm]>)],
        as_of: &'a AsOf,
    ) -> BoxFuture<'a, Result<Option<Vec<Option<MomentKeys>>>, DbError>> {
        Box::pin(async move {
            let mut client = self.pool.get().await?;
            keys(&mut client, callers, questions, as_of).await
        })
    }
}

/// Derives the routes of `pairs` (table, role) in the snapshot of
/// `as_of.after`; `None` when it cannot be imported.
pub async fn derive(
    client: &mut Client,
    pairs: &[(u32, String)],
    as_of: &AsOf,
) -> Result<Option<Derived>, DbError> {
    let after = as_of.exported(Moment::After).await;
    let Ok(tx) = as_of::begin(client, after.as_ref()).await? else {
        return Ok(None);
    };
    let version: String = tx
        .query_one("select herald.routing_version()", &[])
        .await?
        .get(0);
    let tracked: BTreeSet<u32> = tx
        .query("select relid from herald.tracked", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut routes = Vec::with_capacity(pairs.len());
    for (relid, role) in pairs {
        routes.push(route(&tx, *relid, role, &tracked).await?.map(Arc::new));
    }
    tx.commit().await?;
    Ok(Some(Derived { version, routes }))
}

async fn route(
    tx: &Transaction<'_>,
    relid: u32,
    role: &str,
    tracked: &BTreeSet<u32>,
) -> Result<Option<Route>, DbError> {
    let rows = tx
        .query_typed(
            "select restricts, permissive, tree, expr from herald.route_policies($1, $2)",
            &[(&relid, Type::OID), (&role, Type::TEXT)],
        )
        .await?;
    let Some(first) = rows.first() else {
        // The role is gone, or the login role may not become it.
        return Ok(None);
    };
    let columns: Vec<String> = tx
        .query_typed(
            "select herald.selectable_columns($1, $2)",
            &[(&relid, Type::OID), (&role, Type::TEXT)],
        )
        .await?
        .first()
        .map(|r| r.get(0))
        .unwrap_or_default();
    let columns: Arc<[String]> = columns.into();
    if !first.get::<_, bool>("restricts") {
        return Ok(Some(Route {
            shape: Shape::Everyone,
            columns,
        }));
    }
    let policies: Vec<Policy<'_>> = rows
        .iter()
        .filter_map(|r| {
            // (RLS on and no policy: one row of nulls; nobody sees a row.)
            Some(Policy {
                permissive: r.get::<_, Option<bool>>("permissive")?,
                tree: r.get::<_, Option<&str>>("tree")?,
                expr: r.get::<_, Option<&str>>("expr")?,
            })
        })
        .collect();
    let Some(keyed) = policy_shape::keyed(&policies) else {
        return Ok(None);
    };
    let Some(reach) = vet(tx, keyed.reach).await? else {
        return Ok(None);
    };
    if !reach.tables.is_subset(tracked) {
        // Changes to an untracked table would go unseen: keys could go stale.
        return Ok(None);
    }
    let column: Option<String> = match keyed.arms.is_empty() {
        true => Some(String::new()),
        false => tx
            .query_typed(
                "select attname::text from pg_catalog.pg_attribute
                  where attrelid = $1 and attnum = $2 and not attisdropped",
                &[(&relid, Type::OID), (&(keyed.attno as i16), Type::INT2)],
            )
            .await?
            .first()
            .map(|r| r.get(0)),
    };
    let Some(column) = column else {
        return Ok(None);
    };
    Ok(Some(Route {
        shape: Shape::Keyed {
            column,
            arms: keyed.arms.into(),
            exact: keyed.exact,
            reads: reach.tables.into_iter().collect(),
        },
        columns,
    }))
}

/// `reach` with the tables every SQL function in it reads, or `None` when a
/// function may depend on something routing cannot see change.
async fn vet(tx: &Transaction<'_>, mut reach: Reach) -> Result<Option<Reach>, DbError> {
    let mut seen: BTreeSet<u32> = BTreeSet::new();
    for _ in 0..MAX_FUNCTION_DEPTH {
        let pending: Vec<u32> = reach.functions.difference(&seen).copied().collect();
        if pending.is_empty() {
            return Ok(Some(reach));
        }
        seen.extend(&pending);
        let facts = tx
            .query_typed(
                "select fn, name, builtin, volatility::text, language::text, body_tree, body_view
                   from herald.function_facts($1)",
                &[(&pending, Type::OID_ARRAY)],
            )
            .await?;
        if facts.len() != pending.len() {
            return Ok(None);
        }
        for f in &facts {
            let volatility: &str = f.get("volatility");
            if f.get::<_, bool>("builtin") {
                let pure = volatility == "i"
                    || (volatility == "s" && SESSION_FUNCTIONS.contains(&f.get("name")));
                if !pure {
                    return Ok(None);
                }
                continue;
            }
            let body: Option<&str> = f.get("body_tree");
            let sql = f.get::<_, &str>("language") == "sql" && volatility != "v";
            let Some(body) = body.filter(|_| sql) else {
                return Ok(None);
            };
            let Ok(node_tree::Value::List(queries)) = node_tree::parse(body) else {
                return Ok(None);
            };
            let [node_tree::Value::Node(query)] = queries.as_slice() else {
                return Ok(None);
            };
            let view: Option<u32> = f.get("body_view");
            if policy_shape::vet_query(query, &mut reach, view).is_none() {
                return Ok(None);
            }
        }
    }
    Ok(None)
}

/// For each question (a caller, the arms of its route), the caller's keys
/// at both moments of `as_of`; `None` for a caller whose keys could not be
/// computed, and `Ok(None)` when a moment's snapshot cannot be imported.
pub async fn keys(
    client: &mut Client,
    callers: &[&Caller],
    questions: &[(usize, Arc<[Arm]>)],
    as_of: &AsOf,
) -> Result<Option<Vec<Option<MomentKeys>>>, DbError> {
    let mut out: Vec<Option<MomentKeys>> = vec![Some(MomentKeys::default()); questions.len()];
    for after in [false, true] {
        let moment = match after {
            false => Moment::Before,
            true => Moment::After,
        };
        let Some(at) = as_of.exported(moment).await else {
            return Ok(None);
        };
        let Some(found) = keys_at(client, callers, questions, &at).await? else {
            return Ok(None);
        };
        for (slot, keys) in out.iter_mut().zip(found) {
            match (slot.as_mut(), keys) {
                // (The same keys at both moments, most often: kept once.)
                (Some(k), Some(keys)) if after && keys == k.before => k.after = k.before.clone(),
                (Some(k), Some(keys)) if after => k.after = keys,
                (Some(k), Some(keys)) => k.before = keys,
                _ => *slot = None,
            }
        }
    }
    Ok(Some(out))
}

async fn keys_at(
    client: &mut Client,
    callers: &[&Caller],
    questions: &[(usize, Arc<[Arm]>)],
    at: &as_of::ExportedSnapshot,
) -> Result<Option<Vec<Option<Arc<[String]>>>>, DbError> {
    // Keyed by address (as an integer, so the future stays `Send`): callers
    // of one route share its arms.
    let mut arm_ids: HashMap<usize, i32> = HashMap::new();
    let mut arms: Vec<Json> = Vec::new();
    let mut route: Vec<i32> = Vec::with_capacity(questions.len());
    for (_, a) in questions {
        let id = *arm_ids
            .entry(Arc::as_ptr(a) as *const () as usize)
            .or_insert_with(|| {
                arms.push(json!(
                    a.iter()
                        .map(|arm| match arm {
                            Arm::Scalar(sql) => json!({ "scalar": sql }),
                            Arm::Set(sql) => json!({ "set": sql }),
                        })
                        .collect::<Vec<_>>()
                ));
                arms.len() as i32
            });
        route.push(id);
    }
    let roles: Vec<&str> = callers.iter().map(|c| c.role.as_str()).collect();
    let claims: Vec<String> = callers.iter().map(|c| c.claims.to_string()).collect();
    let ctx: Vec<i32> = questions.iter().map(|(c, _)| *c as i32).collect();
    let Ok(tx) = as_of::begin(client, Some(at)).await? else {
        return Ok(None);
    };
    let rows = tx
        .query_typed(
            "select chk, keys, failed from herald.route_keys($1, $2, $3, $4, $5)",
            &[
                (&roles, Type::TEXT_ARRAY),
                (&claims, Type::TEXT_ARRAY),
                (&ctx, Type::INT4_ARRAY),
                (&route, Type::INT4_ARRAY),
                (&arms, Type::JSONB_ARRAY),
            ],
        )
        .await?;
    tx.commit().await?;
    let mut out: Vec<Option<Arc<[String]>>> = vec![None; questions.len()];
    for row in rows {
        let chk = row.get::<_, i32>("chk") as usize;
        if row.get::<_, bool>("failed") {
            continue;
        }
        if let Some(slot) = chk.checked_sub(1).and_then(|i| out.get_mut(i)) {
            let mut keys: Vec<String> = row.get("keys");
            keys.sort_unstable();
            *slot = Some(keys.into());
        }
    }
    Ok(Some(out))
}
