//! Fidelity of the authorizer's row-level-security replay (DESIGN.md §4).
//!
//! For random data, `herald.authorize` — called the way production calls it:
//! one call per table carrying every security context and every row image —
//! must decide, for every (context, row) cell, exactly what live RLS decides
//! for the same context: as the login role, `begin; select
//! herald.set_context(role, claims); select exists(select 1 from <table>
//! where <pk> = ...); rollback`. `Verdicts::restrict` must keep exactly the
//! columns the role may select (`has_column_privilege`).
//!
//! Two properties share that comparison:
//! * the demo schema (tenants, users, memberships, notifications, documents)
//!   with random tenants, users, memberships, notifications and documents,
//!   callers for every user, for unknown users, without `sub`, and with a
//!   `sub` that is not a uuid; half the cases narrow the `notifications` grant
//!   to a column list so that `restrict` must drop `body` and `data`;
//! * a custom table with mixed policies: two permissive SELECT policies, a
//!   restrictive one, an UPDATE-only policy and policies for another role
//!   (neither of which may count for `app_user`'s SELECT).
//!
//! Each property reuses one database; cases clear the tables they fill.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures::future::try_join_all;
use pgherald::auth::Caller;
use pgherald::db::authorizer::{self, Check};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRng, TestRunner};
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};

use crate::helpers::{TestApp, spawn_app};

/// A table under test: name and primary key columns with their SQL types.
struct Table {
    name: &'static str,
    pk: &'static [(&'static str, &'static str)],
}

const TENANTS: Table = Table {
    name: "public.tenants",
    pk: &[("id", "uuid")],
};
const USERS: Table = Table {
    name: "public.users",
    pk: &[("id", "uuid")],
};
const MEMBERSHIPS: Table = Table {
    name: "public.memberships",
    pk: &[("tenant_id", "uuid"), ("user_id", "uuid")],
};
const NOTIFICATIONS: Table = Table {
    name: "public.notifications",
    pk: &[("id", "uuid")],
};
const DOCUMENTS: Table = Table {
    name: "public.documents",
    pk: &[("id", "uuid")],
};
const ITEMS: Table = Table {
    name: "public.items",
    pk: &[("id", "int4")],
};

/// `app_user` may select every column of notifications (as migrated).
const NOTIFICATIONS_FULL_GRANT: &str = "
    revoke select on public.notifications from app_user;
    grant select on public.notifications to app_user;";

/// `app_user` may select all notification columns but `body` and `data`.
const NOTIFICATIONS_COLUMN_GRANT: &str = "
    revoke select on public.notifications from app_user;
    grant select (id, tenant_id, user_id, kind, title, created_at, read_at)
      on public.notifications to app_user;";

/// The custom table of the second property, its policies and its tracking.
const ITEMS_SETUP: &str = "
    do $$
    begin
      create role some_other_role nologin;
    exception when duplicate_object or unique_violation then
      null; -- cluster-wide; another test (process) made it first
    end
    $$;
    create table public.items (id serial primary key, owner text, level int, tenant text);
    alter table public.items enable row level security;
    create policy items_owner on public.items for select
      using (owner = current_setting('request.jwt.claims', true)::jsonb ->> 'sub');
    create policy items_level_zero on public.items for select
      using (level = 0);
    create policy items_not_blocked on public.items as restrictive for select
      using (tenant <> 'blocked');
    create policy items_update_anything on public.items for update
      using (true);
    create policy items_other_role_sees_all on public.items for select to some_other_role
      using (true);
    create policy items_other_role_sees_nothing on public.items as restrictive for all
      to some_other_role using (false);
    grant select on public.items to app_user;
    select herald.track('public.items');";

/// Owners of items, and the `sub`s callers of the second property pick from.
const OWNERS: [&str; 5] = ["alice", "bob", "carol", "7", ""];
/// Tenants of items (`blocked` is hidden by the restrictive policy).
const ITEM_TENANTS: [&str; 3] = ["a", "b", "blocked"];

/// A security context under test.
struct Context {
    caller: Caller,
    /// Human-readable, for failure messages.
    label: String,
    /// Whether this context must see no row at all.
    sees_nothing: bool,
}

fn context(label: String, claims: Value, sees_nothing: bool) -> Context {
    Context {
        caller: Caller {
            role: "app_user".into(),
            claims: Arc::new(claims),
            exp: None,
        },
        label,
        sees_nothing,
    }
}

/// One migrated database and the connections the property uses.
struct Harness {
    app: TestApp,
    /// Login role: runs the authorizer.
    authz: Mutex<Client>,
    /// Login role: runs the live RLS checks.
    live: Mutex<Client>,
}

async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

async fn harness() -> Harness {
    let app = spawn_app().await;
    let authz = connect(&app.app_url).await;
    let live = connect(&app.app_url).await;
    Harness {
        app,
        authz: Mutex::new(authz),
        live: Mutex::new(live),
    }
}

/// What the runs observed, to prove the properties were not vacuous.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    /// Cells the authorizer (and live RLS) found visible.
    visible: usize,
    /// Cells found hidden.
    hidden: usize,
    /// Restricted images that lost at least one column.
    narrowed: usize,
}

fn bump(stats: &Cell<Stats>, f: impl FnOnce(&mut Stats)) {
    let mut s = stats.get();
    f(&mut s);
    stats.set(s);
}

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

/// The columns of `image` that `role` may select in `table`, per
/// `has_column_privilege` (asked by column name, as the owner).
async fn privileged_columns(
    h: &Harness,
    table: &Table,
    role: &str,
    image: &Value,
) -> BTreeSet<String> {
    h.app
        .admin
        .query(
            "select k from jsonb_object_keys($1) k \
             where has_column_privilege($2::text::name, $3::text, k, 'SELECT')",
            &[image, &role, &table.name],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The property for one table: every current row image of `table` against
/// every context, in one authorizer call, compared cell by cell with live
/// RLS; plus the column restriction of every (context, image). `forbidden`
/// columns must be absent from every restricted image.
async fn compare_table(
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

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn runner(cases: u32) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 300,
        max_shrink_time: 30_000,
        ..Config::default()
    };
    let rng = TestRng::deterministic_rng(config.rng_algorithm);
    TestRunner::new_with_rng(config, rng)
}

// ---------------------------------------------------------------------------
// Property 1: the demo schema.

#[derive(Clone, Debug)]
struct Demo {
    tenants: usize,
    users: usize,
    /// `memberships[u][t]`: the role of user `u` in tenant `t`, if a member.
    memberships: Vec<Vec<Option<&'static str>>>,
    /// (recipient, tenant, has body).
    notifications: Vec<(usize, usize, bool)>,
    /// Tenant of each document.
    documents: Vec<usize>,
    /// Callers with a well-formed uuid `sub` that is no user.
    strangers: usize,
    /// Narrow the notifications grant to a column list (no body, no data).
    column_grant: bool,
    shuffle: u64,
}

fn demo_strategy() -> impl Strategy<Value = Demo> {
    (2usize..=4, 3usize..=8)
        .prop_flat_map(|(t, u)| {
            (
                Just(t),
                Just(u),
                vec(
                    vec(option::of(prop_oneof![Just("member"), Just("admin")]), t),
                    u,
                ),
                vec((0..u, 0..t, any::<bool>()), 0..=12),
                vec(0..t, 0..=8),
                1usize..=2,
                any::<bool>(),
                any::<u64>(),
            )
        })
        .prop_map(
            |(
                tenants,
                users,
                memberships,
                notifications,
                documents,
                strangers,
                column_grant,
                shuffle,
            )| Demo {
                tenants,
                users,
                memberships,
                notifications,
                documents,
                strangers,
                column_grant,
                shuffle,
            },
        )
}

async fn demo_case(h: &Harness, s: &Demo, stats: &Cell<Stats>) -> Result<(), TestCaseError> {
    let app = &h.app;
    app.sql("truncate public.tenants, public.users cascade")
        .await;
    app.sql(if s.column_grant {
        NOTIFICATIONS_COLUMN_GRANT
    } else {
        NOTIFICATIONS_FULL_GRANT
    })
    .await;

    let mut tenants = Vec::new();
    for t in 0..s.tenants {
        tenants.push(app.tenant(&format!("tenant {t}")).await);
    }
    let mut users = Vec::new();
    for u in 0..s.users {
        users.push(app.user(&format!("user{u}@example.test"), &[]).await);
    }
    let mut note = String::from("data:");
    for (t, id) in tenants.iter().enumerate() {
        note.push_str(&format!("\n  tenant {t} = {id}"));
    }
    for (u, id) in users.iter().enumerate() {
        note.push_str(&format!("\n  user {u} = {id}"));
    }
    for (u, row) in s.memberships.iter().enumerate() {
        for (t, role) in row.iter().enumerate() {
            if let Some(role) = role {
                app.admin
                    .execute(
                        "insert into public.memberships (tenant_id, user_id, role) \
                         values ($1::text::uuid, $2::text::uuid, $3)",
                        &[&tenants[t], &users[u], role],
                    )
                    .await
                    .unwrap();
                note.push_str(&format!("\n  membership: user {u} in tenant {t} as {role}"));
            }
        }
    }
    for (n, &(u, t, has_body)) in s.notifications.iter().enumerate() {
        let body = has_body.then(|| format!("body {n}"));
        app.admin
            .execute(
                "insert into public.notifications (tenant_id, user_id, title, body, data) \
                 values ($1::text::uuid, $2::text::uuid, $3, $4, $5)",
                &[
                    &tenants[t],
                    &users[u],
                    &format!("notification {n}"),
                    &body,
                    &json!({"n": n}),
                ],
            )
            .await
            .unwrap();
        note.push_str(&format!("\n  notification {n}: to user {u} in tenant {t}"));
    }
    for (d, &t) in s.documents.iter().enumerate() {
        app.admin
            .execute(
                "insert into public.documents (tenant_id, title, body) \
                 values ($1::text::uuid, $2, $3)",
                &[&tenants[t], &format!("document {d}"), &format!("text {d}")],
            )
            .await
            .unwrap();
        note.push_str(&format!("\n  document {d}: in tenant {t}"));
    }
    note.push_str(&format!(
        "\n  column grant on notifications: {}",
        s.column_grant
    ));

    // The malformed `sub` goes first: the contexts after it must still be
    // evaluated normally.
    let mut contexts = vec![context(
        "sub not a uuid".into(),
        json!({"sub": "not-a-uuid", "role": "app_user"}),
        true,
    )];
    for (u, id) in users.iter().enumerate() {
        contexts.push(context(
            format!("user {u}"),
            json!({"sub": id, "role": "app_user"}),
            false,
        ));
    }
    for k in 0..s.strangers {
        contexts.push(context(
            format!("stranger {k}"),
            json!({"sub": format!("00000000-0000-4000-8000-{:012x}", k + 1), "role": "app_user"}),
            true,
        ));
    }
    contexts.push(context("no sub".into(), json!({"role": "app_user"}), true));

    if s.column_grant {
        let body: bool = app
            .admin
            .query_one(
                "select has_column_privilege('app_user', 'public.notifications', 'body', 'SELECT')",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        prop_assert!(!body, "the column grant did not take away body");
    }

    for table in [&NOTIFICATIONS, &DOCUMENTS, &USERS, &TENANTS, &MEMBERSHIPS] {
        let forbidden: &[&str] = if s.column_grant && table.name == NOTIFICATIONS.name {
            &["body", "data"]
        } else {
            &[]
        };
        compare_table(h, table, &contexts, s.shuffle, forbidden, stats, &note).await?;
    }
    Ok(())
}

#[test]
fn authorizer_agrees_with_live_rls_on_the_demo_schema() {
    let rt = runtime();
    let h = rt.block_on(harness());
    let stats = Cell::new(Stats::default());
    let result = runner(24).run(&demo_strategy(), |s| rt.block_on(demo_case(&h, &s, &stats)));
    rt.block_on(async move { drop(h) });
    if let Err(e) = result {
        panic!("{e}");
    }
    let stats = stats.get();
    assert!(
        stats.visible > 0 && stats.hidden > 0,
        "vacuous run: {stats:?}"
    );
    assert!(
        stats.narrowed > 0,
        "the column grant never narrowed an image: {stats:?}"
    );
}

// ---------------------------------------------------------------------------
// Property 2: a custom table with mixed policies.

#[derive(Clone, Debug)]
enum Sub {
    /// `{"sub": OWNERS[i]}`.
    Text(usize),
    /// `{"sub": 7}`: a JSON number, which `->> 'sub'` reads as "7".
    Number,
    /// No `sub` claim.
    Missing,
}

#[derive(Clone, Debug)]
struct Items {
    /// (owner index into OWNERS, level, tenant index into ITEM_TENANTS).
    rows: Vec<(Option<usize>, Option<i32>, Option<usize>)>,
    subs: Vec<Sub>,
    shuffle: u64,
}

fn items_strategy() -> impl Strategy<Value = Items> {
    // Nulls are rarer than values, so that rows are visible often enough.
    let row = (
        option::weighted(0.85, 0..OWNERS.len()),
        option::weighted(0.85, 0..3i32),
        option::weighted(0.85, 0..ITEM_TENANTS.len()),
    );
    let sub = prop_oneof![
        4 => (0..OWNERS.len()).prop_map(Sub::Text),
        1 => Just(Sub::Number),
        1 => Just(Sub::Missing),
    ];
    (vec(row, 0..=16), vec(sub, 1..=5), any::<u64>()).prop_map(|(rows, subs, shuffle)| Items {
        rows,
        subs,
        shuffle,
    })
}

async fn items_case(h: &Harness, s: &Items, stats: &Cell<Stats>) -> Result<(), TestCaseError> {
    let app = &h.app;
    app.sql("truncate public.items restart identity").await;
    let mut note = String::from("items:");
    for (owner, level, tenant) in &s.rows {
        let owner = owner.map(|o| OWNERS[o]);
        let tenant = tenant.map(|t| ITEM_TENANTS[t]);
        app.admin
            .execute(
                "insert into public.items (owner, level, tenant) values ($1, $2, $3)",
                &[&owner, level, &tenant],
            )
            .await
            .unwrap();
        note.push_str(&format!(
            "\n  owner {owner:?}, level {level:?}, tenant {tenant:?}"
        ));
    }
    let contexts: Vec<Context> = s
        .subs
        .iter()
        .map(|sub| match sub {
            Sub::Text(i) => context(
                format!("sub {:?}", OWNERS[*i]),
                json!({"sub": OWNERS[*i], "role": "app_user"}),
                false,
            ),
            Sub::Number => context(
                "sub 7 (number)".into(),
                json!({"sub": 7, "role": "app_user"}),
                false,
            ),
            Sub::Missing => context("no sub".into(), json!({"role": "app_user"}), false),
        })
        .collect();
    compare_table(h, &ITEMS, &contexts, s.shuffle, &[], stats, &note).await
}

#[test]
fn authorizer_agrees_with_live_rls_on_mixed_policies() {
    let rt = runtime();
    let h = rt.block_on(async {
        let h = harness().await;
        h.app.sql(ITEMS_SETUP).await;
        h
    });
    let stats = Cell::new(Stats::default());
    let result = runner(32).run(&items_strategy(), |s| {
        rt.block_on(items_case(&h, &s, &stats))
    });
    rt.block_on(async move { drop(h) });
    if let Err(e) = result {
        panic!("{e}");
    }
    let stats = stats.get();
    assert!(
        stats.visible > 0 && stats.hidden > 0,
        "vacuous run: {stats:?}"
    );
}
