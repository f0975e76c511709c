//! Fidelity of the authorizer's row-level-security replay (docs/architecture.md).
//!
//! For random data, `herald.authorize` — called the way production calls it:
//! one call per table carrying every security context and every row image —
//! must decide, for every (context, row) cell, exactly what live RLS decides
//! for the same context: as the login role, `begin; select
//! herald.set_context(role, claims); select exists(select 1 from <table>
//! where <pk> = ...); rollback`. `Verdicts::restrict` must keep exactly the
//! columns the role may select (`has_column_privilege`).
//!
//! Two properties share that comparison (`comparison`):
//! * `demo`: the demo schema (tenants, users, memberships, notifications,
//!   documents) with random tenants, users, memberships, notifications and
//!   documents, callers for every user, for unknown users, without `sub`, and
//!   with a `sub` that is not a uuid; half the cases narrow the
//!   `notifications` grant to a column list so that `restrict` must drop
//!   `body` and `data`;
//! * `mixed_policies`: a custom table with mixed policies: two permissive
//!   SELECT policies, a restrictive one, an UPDATE-only policy and policies
//!   for another role (neither of which may count for `app_user`'s SELECT).
//!
//! Each property reuses one database; cases clear the tables they fill. This
//! file holds what both share: tables, contexts, and the property runner.

mod comparison;
mod demo;
mod mixed_policies;
mod roles;

use std::cell::Cell;

use pgherald::auth::Caller;
use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_postgres::Client;

use crate::helpers::{TestApp, connect, spawn_app};

/// A table under test: name and primary key columns with their SQL types.
struct Table {
    name: &'static str,
    pk: &'static [(&'static str, &'static str)],
}

impl Table {
    /// A table whose primary key is `id uuid`.
    const fn keyed_by_uuid(name: &'static str) -> Table {
        Table {
            name,
            pk: &[("id", "uuid")],
        }
    }
}

/// A security context under test.
struct Context {
    caller: Caller,
    /// Human-readable, for failure messages.
    label: String,
    /// Whether this context must see no row at all.
    sees_nothing: bool,
}

/// An `app_user` context whose claims carry `sub` (`None`: no `sub` claim).
fn context(label: impl Into<String>, sub: Option<Value>, sees_nothing: bool) -> Context {
    let mut claims = json!({"role": "app_user"});
    if let Some(sub) = sub {
        claims["sub"] = sub;
    }
    Context {
        caller: Caller::new("app_user".into(), claims, None),
        label: label.into(),
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

/// What the runs observed, to prove the properties were not vacuous.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    /// Cells the authorizer (and live RLS) found visible.
    visible: usize,
    /// Cells found hidden.
    hidden: usize,
    /// Restricted images that lost at least one column.
    narrowed: usize,
    /// Cells a policy route decided alone (and agreed with live RLS).
    routed: usize,
    /// Cells a route narrowed away (and live RLS hid).
    routed_away: usize,
}

fn bump(stats: &Cell<Stats>, f: impl FnOnce(&mut Stats)) {
    let mut s = stats.get();
    f(&mut s);
    stats.set(s);
}

/// The seed of this run: `PGHERALD_RLS_SEED`, else a new one (printed, so
/// that a failure can be rerun).
fn seed() -> u64 {
    std::env::var("PGHERALD_RLS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        })
}

/// A runner for `cases` cases seeded with `seed` (no persisted failures).
fn runner(cases: u32, seed: u64) -> TestRunner {
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 300,
        max_shrink_time: 30_000,
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    })
}

/// Runs `case` for `cases` values drawn from `strategy`, all on one fresh
/// database that `setup` SQL (if any) prepared first; panics on the first
/// (shrunk) failure, else returns what the cases observed.
fn check_property<S: Strategy>(
    cases: u32,
    setup: Option<&str>,
    strategy: S,
    case: impl AsyncFn(&Harness, &S::Value, &Cell<Stats>) -> Result<(), TestCaseError>,
) -> Stats {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let h = rt.block_on(async {
        let app = spawn_app().await;
        let h = Harness {
            authz: Mutex::new(connect(&app.app_url).await),
            live: Mutex::new(connect(&app.app_url).await),
            app,
        };
        if let Some(sql) = setup {
            h.app.sql(sql).await;
        }
        h
    });
    let stats = Cell::new(Stats::default());
    let seed = seed();
    eprintln!("RLS property seed {seed} (rerun with PGHERALD_RLS_SEED={seed})");
    let result = runner(cases, seed).run(&strategy, |s| rt.block_on(case(&h, &s, &stats)));
    rt.block_on(async move { drop(h) });
    if let Err(e) = result {
        panic!("seed {seed} (rerun with PGHERALD_RLS_SEED={seed}): {e}");
    }
    stats.get()
}
