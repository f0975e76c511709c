//! Property 1: the demo schema, with random tenants, users, memberships,
//! notifications and documents, and callers that are users, strangers, a
//! `sub` that is not a uuid, and no `sub` at all.

use std::cell::Cell;

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::json;

use super::comparison::compare_table;
use super::{Context, Harness, Stats, Table, check_property, context};
use crate::helpers::TestApp;

const TENANTS: Table = Table::keyed_by_uuid("public.tenants");
const USERS: Table = Table::keyed_by_uuid("public.users");
const MEMBERSHIPS: Table = Table {
    name: "public.memberships",
    pk: &[("tenant_id", "uuid"), ("user_id", "uuid")],
};
const NOTIFICATIONS: Table = Table::keyed_by_uuid("public.notifications");
const DOCUMENTS: Table = Table::keyed_by_uuid("public.documents");

/// `app_user` may select every column of notifications (as migrated).
const NOTIFICATIONS_FULL_GRANT: &str = "
    revoke select on public.notifications from app_user;
    grant select on public.notifications to app_user;";

/// `app_user` may select all notification columns but `body` and `data`.
const NOTIFICATIONS_COLUMN_GRANT: &str = "
    revoke select on public.notifications from app_user;
    grant select (id, tenant_id, user_id, kind, title, created_at, read_at)
      on public.notifications to app_user;";

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

prop_compose! {
    /// Tenant and user counts first, then data that refers to them by index.
    fn demo_strategy()(tenants in 2usize..=4, users in 3usize..=8)(
        tenants in Just(tenants),
        users in Just(users),
        memberships in vec(vec(option::of(prop_oneof![Just("member"), Just("admin")]), tenants), users),
        notifications in vec((0..users, 0..tenants, any::<bool>()), 0..=12),
        documents in vec(0..tenants, 0..=8),
        strangers in 1usize..=2,
        column_grant in any::<bool>(),
        shuffle in any::<u64>(),
    ) -> Demo {
        Demo { tenants, users, memberships, notifications, documents, strangers, column_grant, shuffle }
    }
}

/// Replaces the demo data with `s`'s; returns the user ids and a description
/// of the data for failure messages.
async fn fill(app: &TestApp, s: &Demo) -> (Vec<String>, String) {
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
    (users, note)
}

/// The callers: one per user, `strangers` unknown users, and two without a
/// usable `sub`. The malformed `sub` goes first: the contexts after it must
/// still be evaluated normally.
fn contexts(users: &[String], strangers: usize) -> Vec<Context> {
    let mut contexts = vec![context("sub not a uuid", Some(json!("not-a-uuid")), true)];
    for (u, id) in users.iter().enumerate() {
        contexts.push(context(format!("user {u}"), Some(json!(id)), false));
    }
    for k in 0..strangers {
        let sub = format!("00000000-0000-4000-8000-{:012x}", k + 1);
        contexts.push(context(format!("stranger {k}"), Some(json!(sub)), true));
    }
    contexts.push(context("no sub", None, true));
    contexts
}

async fn demo_case(h: &Harness, s: &Demo, stats: &Cell<Stats>) -> Result<(), TestCaseError> {
    let app = &h.app;
    let (users, note) = fill(app, s).await;
    let contexts = contexts(&users, s.strangers);
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
    let stats = check_property(24, None, demo_strategy(), demo_case);
    assert!(
        stats.visible > 0 && stats.hidden > 0,
        "vacuous run: {stats:?}"
    );
    assert!(
        stats.narrowed > 0,
        "the column grant never narrowed an image: {stats:?}"
    );
    assert!(
        stats.routed > 0,
        "no cell was decided by a policy route: {stats:?}"
    );
}
