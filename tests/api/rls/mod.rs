//! Row-level security end to end, adversarially: several users, each on its
//! own connection, and rows written with plain SQL as the owner. Every
//! subscriber must receive exactly the versions of rows its RLS policies let
//! it read (the demo schema's policies in examples/saas/, and the delivery
//! rule in docs/api.md):
//!
//! - [`notifications`]: a notification only by its recipient;
//! - [`documents`]: a document only by members of its tenant, through
//!   inserts, deletes and moves between tenants;
//! - [`membership`]: leaving a tenant, and a user only by themself and
//!   colleagues;
//! - [`workload`]: a mixed workload checked against a model of who may read what;
//! - [`columns`]: row images only with the columns the subscriber may select;
//! - [`moments`]: old versions judged as of the start of their batch, new
//!   versions as of its end, whenever the batch is dispatched.
//!
//! Absence is proven by order: a subscription receives its events in commit
//! order, so an event a user must not get is written before one it must get,
//! and the received list is compared exactly. Membership changes are made only
//! once the earlier events have been delivered to someone, so that it is
//! unambiguous which memberships were in force when they were authorized.

use serde_json::Value;

use crate::helpers::{Protocol, Subscriber, TestApp, insert_document, spawn_app};

mod columns;
mod documents;
mod membership;
mod moments;
mod notifications;
mod routing;
mod workload;

/// Connects as `user` and subscribes `"c"` to every change of `table`.
async fn watch(
    app: &TestApp,
    user: &str,
    who: &str,
    table: &str,
    protocol: Protocol,
) -> Subscriber {
    // What was written before is not for it: the batches holding it begin
    // before it joins (a listener behind the writes would deliver them).
    app.wait_until_read_so_far().await;
    let mut c = Subscriber::connect(app, user, who, protocol).await;
    c.changes("c", table, Value::Null, Value::Null).await;
    c
}

/// Asserts that every image in `changes` (row and old) belongs to one of
/// `tenants`: nobody gets a version of a document they could not read.
fn assert_only_tenants(who: &str, changes: &[Value], tenants: &[&str]) {
    for c in changes {
        for key in ["row", "old"] {
            let image = &c[key];
            if image.is_null() {
                continue;
            }
            let tenant = image["tenant_id"].as_str().unwrap_or("<none>");
            assert!(
                tenants.contains(&tenant),
                "{who} received a {key} of tenant {tenant}, outside its tenants {tenants:?}: {c}"
            );
        }
    }
}

/// A fresh instance with tenants Acme and Globex: (app, acme, globex).
async fn acme_and_globex() -> (TestApp, String, String) {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let globex = app.tenant("Globex").await;
    (app, acme, globex)
}

/// Adds `nora` to `globex`, then writes a document titled `globex-{suffix}`
/// in Globex and one titled `acme-{suffix}` in Acme: later events that every
/// watcher of `documents` in either tenant must receive, nora included.
async fn nora_joins_globex_then_both_tenants_write(
    app: &TestApp,
    acme: &str,
    globex: &str,
    nora: &str,
    suffix: &str,
) {
    app.sql(&format!(
        "insert into memberships (tenant_id, user_id) values ('{globex}', '{nora}')"
    ))
    .await;
    insert_document(app, globex, &format!("globex-{suffix}")).await;
    insert_document(app, acme, &format!("acme-{suffix}")).await;
}

/// What [`two_tenants`] sets up: the instance, the ids of Acme and Globex, and
/// of nora, and the subscribers of alice, gina, mia and nora, in that order.
type TwoTenants = (TestApp, String, String, String, [Subscriber; 4]);

/// Tenants Acme and Globex, and four users each watching every change of
/// `documents` (alice in Acme, gina in Globex, mia in both, nora in neither
/// until a test makes her join), once all four subscriptions are live. Gina
/// and mia connect over the given subprotocols, alice and nora over
/// graphql-transport-ws.
async fn two_tenants(gina_protocol: Protocol, mia_protocol: Protocol) -> TwoTenants {
    let (app, acme, globex) = acme_and_globex().await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let gina = app.user("gina@globex.test", &[&globex]).await;
    let mia = app.user("mia@both.test", &[&acme, &globex]).await;
    let nora = app.user("nora@nowhere.test", &[]).await;

    let watchers = [
        watch(&app, &alice, "alice", "documents", Protocol::Transport).await,
        watch(&app, &gina, "gina", "documents", gina_protocol).await,
        watch(&app, &mia, "mia", "documents", mia_protocol).await,
        watch(&app, &nora, "nora", "documents", Protocol::Transport).await,
    ];
    app.wait_for_subscriptions(4).await;
    (app, acme, globex, nora, watchers)
}
