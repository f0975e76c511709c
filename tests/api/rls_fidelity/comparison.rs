//! The comparison both properties make: one authorizer call for every
//! (context, row image) cell of a table, checked cell by cell against live
//! RLS, and every restricted image against the role's column privileges.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures::future::try_join_all;
use pgherald::auth::Caller;
use pgherald::db::as_of::AsOf;
use pgherald::db::authorizer::{self, Check, Moment};
use pgherald::db::policy_shape::Arm;
use pgherald::db::routes::{self, Shape};
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value};
use tokio_postgres::types::ToSql;

use super::{Context, Harness, Stats, Table, bump};
use crate::helpers::hold_snapshot;

/// Deterministic Fisher–Yates (splitmix64), so checks reach the authorizer
/// in an order unrelated to contexts and images.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut x = seed;
    for i in (1..items.len()).rev() {
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        items.swap(i, (z % (i as u64 + 1)) as usize);
    }
}

fn pk_text(image: &Value, column: &str) -> String {
    match &image[column] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Live RLS: `visible[c][i]` is whether `contexts[c]` sees `images[i]`
/// through a real SELECT by primary key as the login role.
async fn live_visibility(
    h: &Harness,
    table: &Table,
    contexts: &[Context],
    images: &[Arc<Value>],
) -> Result<Vec<Vec<bool>>, TestCaseError> {
    let condition = table
        .pk
        .iter()
        .enumerate()
        .map(|(n, (column, ty))| format!("{column} = ${}::text::{ty}", n + 1))
        .collect::<Vec<_>>()
        .join(" and ");
    let sql = format!(
        "select exists(select 1 from {} where {condition})",
        table.name
    );
    let keys: Vec<Vec<String>> = images
        .iter()
        .map(|image| table.pk.iter().map(|(c, _)| pk_text(image, c)).collect())
        .collect();
    let mut live = h.live.lock().await;
    let mut out = Vec::with_capacity(contexts.len());
    for ctx in contexts {
        // A role that may not select the key sees nothing (a live SELECT
        // would fail with permission denied).
        let may_select: bool = h
            .app
            .admin
            .query_one(
                "select bool_and(has_column_privilege($1::text::name, $2::text, c, 'SELECT'))
                   from unnest($3::text[]) c",
                &[
                    &ctx.caller.role,
                    &table.name,
                    &table
                        .pk
                        .iter()
                        .map(|(c, _)| c.to_string())
                        .collect::<Vec<_>>(),
                ],
            )
            .await
            .unwrap()
            .get(0);
        if !may_select {
            out.push(vec![false; images.len()]);
            continue;
        }
        let fail = |e: tokio_postgres::Error| {
            TestCaseError::fail(format!(
                "live check on {} as {}: {e}",
                table.name, ctx.label
            ))
        };
        let tx = live.transaction().await.map_err(fail)?;
        tx.execute(
            "select herald.set_context($1, $2)",
            &[&ctx.caller.role, ctx.caller.claims.as_ref()],
        )
        .await
        .map_err(fail)?;
        let statement = tx.prepare(&sql).await.map_err(fail)?;
        let seen = try_join_all(keys.iter().map(|key| {
            let (tx, statement) = (&tx, &statement);
            async move {
                let params: Vec<&(dyn ToSql + Sync)> =
                    key.iter().map(|k| k as &(dyn ToSql + Sync)).collect();
                Ok::<bool, tokio_postgres::Error>(tx.query_one(statement, &params).await?.get(0))
            }
        }))
        .await
        .map_err(fail)?;
        tx.rollback().await.map_err(fail)?;
        out.push(seen);
    }
    Ok(out)
}

/// What the routing path makes of one (context, image) cell.
#[derive(Clone, Copy, Debug)]
enum Routed {
    /// Its route decides: visible or not.
    Decided(bool),
    /// Its route says the context cannot see it (the authorizer is not asked).
    Away,
    /// The authorizer is asked.
    Asked,
}

/// The routing path, as the hub takes it: routes derived for each context's
/// role and keys computed for each context, both in one exported snapshot
/// of the data the live checks read; then each cell routed.
async fn routed_visibility(
    h: &Harness,
    relid: u32,
    contexts: &[Context],
    images: &[Arc<Value>],
) -> Result<Vec<Vec<Routed>>, TestCaseError> {
    let (holder, at) = hold_snapshot(&h.app.app_url).await;
    let at = Some(at);
    let as_of = AsOf {
        before: at.clone(),
        after: at,
        versions: None,
    };
    let mut roles: Vec<(u32, String)> = contexts
        .iter()
        .map(|c| (relid, c.caller.role.clone()))
        .collect();
    roles.sort_unstable();
    roles.dedup();
    let fail = |e: pgherald::db::DbError| TestCaseError::fail(format!("routing: {e}"));
    let mut authz = h.authz.lock().await;
    let derived = routes::derive(&mut authz, &roles, &as_of)
        .await
        .map_err(fail)?
        .expect("the snapshot is held");
    let route_of = |c: &Context| {
        let at = roles.iter().position(|(_, r)| *r == c.caller.role).unwrap();
        derived.routes[at].clone()
    };
    let callers: Vec<&Caller> = contexts.iter().map(|c| &c.caller).collect();
    let questions: Vec<(usize, Arc<[Arm]>)> = contexts
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match route_of(c)?.shape {
            Shape::Keyed { ref arms, .. } if !arms.is_empty() => Some((i, arms.clone())),
            _ => None,
        })
        .collect();
    let keys = routes::keys(&mut authz, &callers, &questions, &as_of)
        .await
        .map_err(fail)?
        .expect("the snapshot is held");
    drop(authz);
    let mut out = Vec::with_capacity(contexts.len());
    for (i, c) in contexts.iter().enumerate() {
        let Some(route) = route_of(c) else {
            out.push(vec![Routed::Asked; images.len()]);
            continue;
        };
        let keys: Option<Option<Arc<[String]>>> = match &route.shape {
            Shape::Everyone => Some(None),
            Shape::Keyed { arms, .. } if arms.is_empty() => Some(Some(Arc::from(vec![]))),
            Shape::Keyed { .. } => questions
                .iter()
                .position(|(q, _)| *q == i)
                .and_then(|q| keys[q].as_ref())
                .map(|k| Some(k.after.clone())),
        };
        let Some(keys) = keys else {
            // Keys not computable for this context: the authorizer decides.
            out.push(vec![Routed::Asked; images.len()]);
            continue;
        };
        out.push(
            images
                .iter()
                .map(|image| match route.verdict(image, keys.as_deref()) {
                    Some(visible) => Routed::Decided(visible),
                    None if !route.admits(image, keys.as_deref()) => Routed::Away,
                    None => Routed::Asked,
                })
                .collect(),
        );
    }
    holder.batch_execute("commit").await.unwrap();
    Ok(out)
}

/// The columns of `image` that `role` may select in `table`, found by
/// really selecting each one as that role (as the login role, with the role
/// set transaction-locally; a refused column rolls back to a savepoint).
async fn privileged_columns(
    h: &Harness,
    table: &Table,
    role: &str,
    image: &Value,
) -> BTreeSet<String> {
    let mut live = h.live.lock().await;
    let tx = live.transaction().await.unwrap();
    tx.execute("select herald.set_context($1, '{}')", &[&role])
        .await
        .unwrap();
    let mut allowed = BTreeSet::new();
    for column in image.as_object().expect("row images are objects").keys() {
        tx.batch_execute("savepoint herald_column").await.unwrap();
        let sql = format!(
            "select \"{}\" from {} where false",
            column.replace('"', "\"\""),
            table.name
        );
        match tx.batch_execute(&sql).await {
            Ok(()) => {
                allowed.insert(column.clone());
                tx.batch_execute("release savepoint herald_column")
                    .await
                    .unwrap();
            }
            Err(e) => {
                let code = e.code().map(|c| c.code().to_owned());
                assert_eq!(
                    code.as_deref(),
                    Some("42501"),
                    "selecting {column} as {role}: {e}"
                );
                tx.batch_execute("rollback to savepoint herald_column")
                    .await
                    .unwrap();
            }
        }
    }
    tx.rollback().await.unwrap();
    allowed
}

/// The property for one table: every current row image of `table` against
/// every context, in one authorizer call, compared cell by cell with live
/// RLS; plus the column restriction of every (context, image). `forbidden`
/// columns must be absent from every restricted image.
pub(super) async fn compare_table(
    h: &Harness,
    table: &Table,
    contexts: &[Context],
    seed: u64,
    forbidden: &[&str],
    stats: &Cell<Stats>,
    note: &str,
) -> Result<(), TestCaseError> {
    let admin = &h.app.admin;
    let relid: u32 = admin
        .query_one("select $1::text::regclass::oid", &[&table.name])
        .await
        .unwrap()
        .get(0);
    let order = table
        .pk
        .iter()
        .map(|(c, _)| *c)
        .collect::<Vec<_>>()
        .join(", ");
    let images: Vec<Arc<Value>> = admin
        .query(
            &format!("select to_jsonb(t) from {} t order by {order}", table.name),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| Arc::new(r.get::<_, Value>(0)))
        .collect();
    if images.is_empty() {
        return Ok(());
    }

    // One call for the table: every context × every image, shuffled.
    let mut cells: Vec<(usize, usize)> = (0..contexts.len())
        .flat_map(|c| (0..images.len()).map(move |i| (c, i)))
        .collect();
    shuffle(&mut cells, seed ^ u64::from(relid));
    let checks: Vec<Check> = cells
        .iter()
        .map(|&(c, i)| Check {
            context: c,
            relid,
            image: images[i].clone(),
            moment: Moment::Now,
        })
        .collect();
    let callers: Vec<&Caller> = contexts.iter().map(|c| &c.caller).collect();
    let verdicts = {
        let mut authz = h.authz.lock().await;
        authorizer::authorize(&mut authz, &callers, &checks)
            .await
            .map_err(|e| {
                TestCaseError::fail(format!(
                    "authorize on {} with {} contexts failed: {e:?}\n{note}",
                    table.name,
                    contexts.len()
                ))
            })?
    };

    let live = live_visibility(h, table, contexts, &images).await?;
    let routed = routed_visibility(h, relid, contexts, &images).await?;

    let mut problems = Vec::new();
    for (k, &(c, i)) in cells.iter().enumerate() {
        let decided = verdicts.visible(k);
        let actual = live[c][i];
        bump(stats, |s| {
            if decided {
                s.visible += 1
            } else {
                s.hidden += 1
            }
        });
        if decided != actual {
            problems.push(format!(
                "{}: context {} ({}) image {}: authorizer says {decided}, live RLS says {actual}",
                table.name, contexts[c].label, contexts[c].caller.claims, images[i]
            ));
        }
        match routed[c][i] {
            Routed::Decided(visible) if visible != actual => problems.push(format!(
                "{}: context {} ({}) image {}: its route says {visible}, live RLS says {actual}",
                table.name, contexts[c].label, contexts[c].caller.claims, images[i]
            )),
            Routed::Decided(_) => bump(stats, |s| s.routed += 1),
            Routed::Away if actual => problems.push(format!(
                "{}: context {} ({}) image {}: routed away, but live RLS shows it",
                table.name, contexts[c].label, contexts[c].caller.claims, images[i]
            )),
            Routed::Away => bump(stats, |s| s.routed_away += 1),
            Routed::Asked => {}
        }
        if contexts[c].sees_nothing && (decided || actual) {
            problems.push(format!(
                "{}: context {} must see nothing, but sees {} (authorizer {decided}, live {actual})",
                table.name, contexts[c].label, images[i]
            ));
        }
    }

    let mut allowed: HashMap<&str, BTreeSet<String>> = HashMap::new();
    for (c, ctx) in contexts.iter().enumerate() {
        let role = ctx.caller.role.as_str();
        if !allowed.contains_key(role) {
            let columns = privileged_columns(h, table, role, &images[0]).await;
            allowed.insert(role, columns);
        }
        let columns = &allowed[role];
        for image in &images {
            let restricted = verdicts.restrict(c, relid, image);
            let expected: Map<String, Value> = image
                .as_object()
                .expect("row images are objects")
                .iter()
                .filter(|(k, _)| columns.contains(k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if restricted.as_ref() != &Value::Object(expected.clone()) {
                problems.push(format!(
                    "{}: restrict for context {} kept {:?}, role may select {:?} (image {image})",
                    table.name,
                    ctx.label,
                    restricted
                        .as_object()
                        .map(|o| o.keys().cloned().collect::<Vec<_>>()),
                    columns
                ));
            }
            for column in forbidden {
                if restricted.get(column).is_some() {
                    problems.push(format!(
                        "{}: restrict for context {} kept forbidden column {column}",
                        table.name, ctx.label
                    ));
                }
            }
            if expected.len() < image.as_object().map_or(0, Map::len) {
                bump(stats, |s| s.narrowed += 1);
            }
        }
    }

    if problems.is_empty() {
        return Ok(());
    }
    let total = problems.len();
    problems.truncate(8);
    Err(TestCaseError::fail(format!(
        "{total} problem(s) on {} ({} contexts × {} images), first ones:\n  {}\n{note}",
        table.name,
        contexts.len(),
        images.len(),
        problems.join("\n  ")
    )))
}
