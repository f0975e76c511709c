//! Which roles a token may name, checked per token role: not a superuser,
//! not BYPASSRLS, without the privileges of a tracked table's owner unless
//! the table forces row-level security; and a revoked grant is refused once
//! the role cache has expired.
//!
//! Roles are cluster-wide: each test creates its own, named after the test
//! process and a counter, and drops them at the end (roles left by a test
//! process that has exited are dropped by the next run).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;

use tokio::time::Instant;

use super::{app_with, assert_accepted, assert_refused, hs256, now, until_expired};
use crate::helpers::{Frame, SECRET, TestApp, WsClient, url_as};
use pgherald::{Application, Config, JwtKey};

/// Prefix of the roles these tests create.
const PREFIX: &str = "pgherald_t";

/// A new role `create role <name> <options>`, granted to the login role.
async fn create_role(app: &TestApp, kind: &str, options: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    drop_leftover_roles(app).await;
    let name = format!(
        "{PREFIX}{}_{}_{kind}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    app.sql(&format!(
        "create role {name} nologin {options}; grant {name} to herald_authenticator;"
    ))
    .await;
    name
}

/// Drops `roles` (after giving what they own in this database back).
async fn drop_roles(app: &TestApp, roles: &[&str]) {
    for role in roles {
        app.sql(&format!(
            "reassign owned by {role} to current_user; drop owned by {role}; drop role {role};"
        ))
        .await;
    }
}

/// Drops roles of test processes that have exited (a failed test keeps its
/// roles until then). A role that still owns objects in another database
/// stays until that database is dropped.
async fn drop_leftover_roles(app: &TestApp) {
    let rows = app
        .admin
        .query(
            "select rolname::text from pg_roles where rolname like 'pgherald\\_t%'",
            &[],
        )
        .await
        .unwrap();
    for row in rows {
        let name: String = row.get(0);
        let pid = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|p| p.parse::<u32>().ok());
        let gone = pid.is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists());
        if gone {
            let _ = app
                .admin
                .batch_execute(&format!("drop owned by {name}; drop role {name}"))
                .await;
        }
    }
}

/// `alter table ... force row level security` on every tracked table.
async fn force_rls_on_every_tracked_table(app: &TestApp) {
    app.sql(
        "do $$ declare t regclass; begin
           for t in select relid::regclass from herald.tracked loop
             execute format('alter table %s force row level security', t);
           end loop;
         end $$;",
    )
    .await;
}

/// A token for `sub` naming `role`.
fn token(sub: &str, role: &str) -> String {
    hs256(&json!({"sub": sub, "role": role, "exp": now() + 600}))
}

#[tokio::test]
async fn a_token_naming_a_superuser_or_bypassrls_role_is_refused() {
    let (app, alice) = app_with(|_| {}).await;
    // Superusers have the privileges of every table owner: with every tracked
    // table forcing RLS, only the attribute itself can refuse them.
    force_rls_on_every_tracked_table(&app).await;
    let plain = create_role(&app, "plain", "").await;
    let superuser = create_role(&app, "super", "superuser").await;
    let bypass = create_role(&app, "bypass", "bypassrls").await;

    assert_accepted(&app, &token(&alice, &plain), "a plain granted role").await;
    assert_refused(&app, &token(&alice, &superuser), "a superuser role").await;
    assert_refused(&app, &token(&alice, &bypass), "a BYPASSRLS role").await;

    // The anonymous role passes the same check.
    let anon_super = superuser.clone();
    let anonymous = crate::helpers::spawn_app_with(|c| c.anon_role = Some(anon_super)).await;
    let mut ws = WsClient::transport(&anonymous.ws_url).await;
    ws.send(json!({"type": "connection_init"})).await;
    assert!(
        matches!(ws.next().await, Frame::Close(4403, _)),
        "a superuser anonymous role"
    );

    drop_roles(&app, &[&plain, &superuser, &bypass]).await;
}

/// Attacks the start-up check of the login role (`check_login_role`): an
/// instance whose login role is a superuser, has BYPASSRLS, or owns a
/// tracked table that does not force row-level security must refuse to
/// start, naming why; once the table forces RLS, the owner may serve.
#[tokio::test]
async fn serve_refuses_a_login_role_that_bypasses_row_level_security() {
    let (app, _) = app_with(|_| {}).await;
    // Superusers have the privileges of every table owner: with every tracked
    // table forcing RLS, only the attributes themselves can refuse them.
    force_rls_on_every_tracked_table(&app).await;
    let superuser = create_role(&app, "login_super", "superuser").await;
    let bypass = create_role(&app, "login_bypass", "bypassrls").await;
    let owner = create_role(&app, "login_owner", "").await;
    // Login roles with the login role's grants (the herald functions).
    for role in [&superuser, &bypass, &owner] {
        app.sql(&format!(
            "revoke {role} from herald_authenticator;
             alter role {role} login password 'pw'; grant herald_authenticator to {role};"
        ))
        .await;
    }

    async fn start_error(app: &TestApp, role: &str) -> String {
        let mut config = Config::new(url_as(app, role, "pw"), JwtKey::Secret(SECRET.into()));
        config.listen = "127.0.0.1:0".parse().unwrap();
        match Application::build(config).await {
            Ok(_) => panic!("an instance started with login role {role}"),
            Err(e) => e.to_string(),
        }
    }
    let refused = start_error(&app, &superuser).await;
    assert!(refused.contains("is a superuser"), "{refused}");
    let refused = start_error(&app, &bypass).await;
    assert!(refused.contains("has BYPASSRLS"), "{refused}");

    app.sql(&format!(
        "alter table public.documents owner to {owner};
         alter table public.documents no force row level security"
    ))
    .await;
    let refused = start_error(&app, &owner).await;
    assert!(
        refused.contains("owns tracked table public.documents"),
        "{refused}"
    );

    // Forcing RLS makes the owner's reads policy-bound: it may serve.
    app.sql("alter table public.documents force row level security")
        .await;
    let mut config = Config::new(url_as(&app, &owner, "pw"), JwtKey::Secret(SECRET.into()));
    config.listen = "127.0.0.1:0".parse().unwrap();
    match Application::build(config).await {
        Ok(started) => started.shutdown().await,
        Err(e) => panic!("the owner of a table forcing RLS was refused: {e}"),
    }

    app.sql("alter table public.documents owner to current_user")
        .await;
    drop_roles(&app, &[&superuser, &bypass, &owner]).await;
}

#[tokio::test]
async fn a_token_naming_a_tracked_tables_owner_is_refused_unless_the_table_forces_rls() {
    let (app, alice) = app_with(|c| c.role_cache_ttl = Duration::from_secs(1)).await;
    let owner = create_role(&app, "owner", "").await;
    // A member inheriting the owner's privileges bypasses RLS as the owner does.
    let heir = create_role(&app, "heir", &format!("in role {owner}")).await;
    // One that does not inherit them does not.
    let noinherit = create_role(&app, "noinh", &format!("noinherit in role {owner}")).await;
    app.sql(&format!(
        "grant app_user to {owner}, {noinherit}; alter table public.documents owner to {owner};"
    ))
    .await;

    assert_refused(&app, &token(&alice, &owner), "the owner of documents").await;
    assert_refused(&app, &token(&alice, &heir), "a member inheriting the owner").await;
    assert_accepted(&app, &token(&alice, &noinherit), "a NOINHERIT member").await;

    app.sql("alter table public.documents force row level security")
        .await;
    assert_accepted(&app, &token(&alice, &owner), "the owner, RLS forced").await;
    assert_accepted(&app, &token(&alice, &heir), "the heir, RLS forced").await;
    let cached = Instant::now();

    // An allowed role is cached: the change is seen once the cache expires.
    app.sql("alter table public.documents no force row level security")
        .await;
    until_expired(cached, Duration::from_secs(1)).await;
    assert_refused(
        &app,
        &token(&alice, &owner),
        "the owner once RLS is no longer forced",
    )
    .await;

    drop_roles(&app, &[&heir, &noinherit, &owner]).await;
}

#[tokio::test]
async fn a_revoked_role_is_refused_on_the_next_connection_once_the_cache_expires() {
    let (app, alice) = app_with(|c| c.role_cache_ttl = Duration::from_secs(1)).await;
    let role = create_role(&app, "revoked", "").await;
    app.sql(&format!("grant app_user to {role}")).await;
    assert_accepted(&app, &token(&alice, &role), "while granted").await;
    let cached = Instant::now();

    app.sql(&format!("revoke {role} from herald_authenticator"))
        .await;
    until_expired(cached, Duration::from_secs(1)).await;
    assert_refused(&app, &token(&alice, &role), "the revoked role").await;

    drop_roles(&app, &[&role]).await;
}
