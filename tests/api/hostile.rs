//! Hostile callers and hostile SQL (docs/architecture.md, "Why it is built
//! this way"): one bad security context cannot stall an instance, and the
//! outbox is no side door.
//!
//! The context scenarios share one shape. Alice and bob (Acme, one per
//! subprotocol) watch every change of `documents` beside a bad subscriber on
//! the same instance; the bad context breaks (its role dropped, revoked or
//! renamed, its claims unrepresentable, its policy timing out or cancelled);
//! then Acme writes two documents in one transaction and a sentinel. Alice and
//! bob must receive exactly those, the bad subscriber a `CONTEXT_FAILED`
//! error, and `/metrics` must count the failure. Were the failure not
//! isolated, the page would be retried forever and nobody would see the
//! sentinel.

use std::sync::Arc;

use futures::StreamExt;
use pgherald::auth::Caller;
use pgherald::db::authorizer::ContextFailure;
use pgherald::events::OpSet;
use pgherald::events::delivery::Interest;
use pgherald::events::filter::Filter;
use pgherald::events::hub::EndReason;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, Client, NoTls, Notification};

use crate::helpers::{
    Frame, Protocol, SECRET, Subscriber, TestApp, WAIT, WsClient, bearer_init, connect,
    insert_document, s, spawn_app, spawn_app_after, summary, title_of, token_with,
};

/// The table every scenario watches.
const DOCS: &str = "documents";

/// An instance, Acme, the bad subscriber's user, and the subscribers that must
/// keep receiving everything.
struct Scene {
    app: TestApp,
    acme: String,
    mallory: String,
    good: Vec<Subscriber>,
}

/// Alice (graphql-transport-ws) and bob (legacy graphql-ws) in Acme watching
/// `documents` as `"c"`; mallory, also in Acme, is the bad subscriber's user.
async fn scene(app: TestApp) -> Scene {
    let acme = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let bob = app.user("bob@acme.test", &[&acme]).await;
    let mallory = app.user("mallory@acme.test", &[&acme]).await;
    let mut good = vec![
        Subscriber::connect(&app, &alice, "alice", Protocol::Transport).await,
        Subscriber::connect(&app, &bob, "bob", Protocol::Legacy).await,
    ];
    for sub in &mut good {
        sub.changes("c", DOCS, Value::Null, Value::Null).await;
    }
    Scene {
        app,
        acme,
        mallory,
        good,
    }
}

impl Scene {
    /// Acme writes `{tag}-1` and `{tag}-2` in one transaction, then
    /// `{tag}-sentinel`: every good subscriber receives exactly those.
    async fn write_and_expect_everyone_else_gets_all(&mut self, tag: &str) {
        let acme = &self.acme;
        self.app
            .sql(&format!(
                "insert into documents (tenant_id, title) values ('{acme}', '{tag}-1'), ('{acme}', '{tag}-2')"
            ))
            .await;
        let sentinel = format!("{tag}-sentinel");
        insert_document(&self.app, acme, &sentinel).await;
        for sub in &mut self.good {
            let got = sub.events_until("c", |e| title_of(e) == sentinel).await;
            assert_eq!(
                summary(&got),
                [
                    s("INSERT", Some(&format!("{tag}-1")), None),
                    s("INSERT", Some(&format!("{tag}-2")), None),
                    s("INSERT", Some(&sentinel), None),
                ],
                "{}",
                sub.who
            );
        }
    }

    /// Acme writes `title`; every good subscriber receives it next.
    async fn everyone_gets(&mut self, title: &str) {
        insert_document(&self.app, &self.acme, title).await;
        for sub in &mut self.good {
            let got = sub.next_event("c").await;
            assert_eq!(title_of(&got), title, "{}: {got}", sub.who);
        }
    }
}

/// A graphql-transport-ws connection with `token`, acknowledged.
async fn connect_with(app: &TestApp, token: &str) -> Subscriber {
    let mut ws = WsClient::transport(&app.ws_url).await;
    ws.init(token).await;
    Subscriber {
        ws,
        protocol: Protocol::Transport,
        who: "mallory".into(),
    }
}

/// The bad subscriber: `token`'s connection watching `documents` as `"bad"`.
async fn bad_subscriber(app: &TestApp, token: &str) -> Subscriber {
    let mut bad = connect_with(app, token).await;
    bad.changes("bad", DOCS, Value::Null, Value::Null).await;
    bad
}

/// Asserts that the bad subscriber's operation ended with `CONTEXT_FAILED`,
/// with a message that says why (`because` in it).
async fn assert_context_failed(bad: &mut Subscriber, because: &str) {
    let errors = bad.operation_error("bad").await;
    assert_eq!(
        errors[0]["extensions"]["code"], "CONTEXT_FAILED",
        "{errors:?}"
    );
    let message = errors[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(because),
        "{message:?} should say {because:?}"
    );
}

/// A token with exactly `claims` (plus `exp`), signed as the test instances expect.
fn token_with_claims(mut claims: Value) -> String {
    claims["exp"] = json!(chrono::Utc::now().timestamp() + 3600);
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

/// Asserts what `/metrics` counts after `contexts` failed security contexts
/// ended `ended` subscriptions.
async fn assert_counted(app: &TestApp, contexts: u64, ended: u64) {
    assert!(
        app.metric("pgherald_authorizer_contexts_failed_total")
            .await
            >= contexts,
        "contexts failed"
    );
    assert_eq!(
        app.metric("pgherald_context_failed_subscriptions_total")
            .await,
        ended
    );
}

/// A role only this test uses (roles belong to the whole cluster, which
/// tests share), with app_user's privileges on `documents`, granted to the
/// login role so that tokens may name it.
async fn evil_role(app: &TestApp) -> String {
    let db: String = app
        .admin
        .query_one("select current_database()", &[])
        .await
        .unwrap()
        .get(0);
    let role = db.replacen("pgherald_test", "evil", 1);
    app.sql(&format!(
        "create role {role} nologin;
         grant {role} to herald_authenticator;
         grant usage on schema public to {role};
         grant select on public.documents to {role};
         grant execute on function public.current_user_id(), public.my_tenant_ids() to {role};"
    ))
    .await;
    role
}

/// Drops the roles `names` that exist.
async fn drop_roles(app: &TestApp, names: &[String]) {
    for name in names {
        app.sql(&format!(
            "do $$ begin
               if exists (select 1 from pg_roles where rolname = '{name}') then
                 execute 'drop owned by {name}'; execute 'drop role {name}';
               end if;
             end $$"
        ))
        .await;
    }
}

/// A subscriber whose role the token names works, then `break_role` (SQL,
/// with `{role}` for the role's name) takes the role away mid-connection.
async fn role_taken_away(break_role: &str, renamed: bool) {
    let mut scene = scene(spawn_app().await).await;
    let role = evil_role(&scene.app).await;
    let mut bad = bad_subscriber(&scene.app, &token_with(&scene.mallory, &role, 3600)).await;
    scene.app.wait_for_subscriptions(3).await;

    // The role works at first: everyone sees the first document.
    scene.everyone_gets("before").await;
    assert_eq!(title_of(&bad.next_event("bad").await), "before");

    scene.app.sql(&break_role.replace("{role}", &role)).await;
    scene.write_and_expect_everyone_else_gets_all("after").await;
    assert_context_failed(&mut bad, "role can no longer be assumed").await;
    assert_counted(&scene.app, 1, 1).await;
    assert_eq!(scene.app.app.state().hub.subscription_count(), 2);
    // The instance goes on as before.
    scene.everyone_gets("later").await;

    let mut roles = vec![role.clone()];
    if renamed {
        roles.push(format!("{role}_renamed"));
    }
    drop_roles(&scene.app, &roles).await;
}

#[tokio::test]
async fn a_subscriber_whose_role_is_dropped_mid_connection_fails_alone() {
    role_taken_away("drop owned by {role}; drop role {role}", false).await;
}

#[tokio::test]
async fn a_subscriber_whose_role_is_revoked_from_the_login_role_fails_alone() {
    role_taken_away("revoke {role} from herald_authenticator", false).await;
}

#[tokio::test]
async fn a_subscriber_whose_role_is_renamed_mid_connection_fails_alone() {
    role_taken_away("alter role {role} rename to {role}_renamed", true).await;
}

#[tokio::test]
async fn claims_postgres_cannot_hold_fail_their_context_alone() {
    let mut scene = scene(spawn_app().await).await;
    let mallory = scene.mallory.clone();
    let nul_claims = json!({"sub": mallory, "role": "app_user", "note": "x\u{0}y"});

    // Through the door: such a token is refused at once, or its subscription
    // ends with CONTEXT_FAILED; either way it stalls nobody.
    let mut ws = WsClient::transport(&scene.app.ws_url).await;
    ws.send(bearer_init(&token_with_claims(nul_claims.clone())))
        .await;
    let mut bad = match ws.next().await {
        Frame::Close(code, _) => {
            assert_eq!(code, 4403, "a refused token closes with 4403");
            None
        }
        Frame::Json(ack) => {
            assert_eq!(ack["type"], "connection_ack", "{ack}");
            let mut bad = Subscriber {
                ws,
                protocol: Protocol::Transport,
                who: "mallory".into(),
            };
            bad.changes("bad", DOCS, Value::Null, Value::Null).await;
            Some(bad)
        }
    };

    // Past the door (as with a verifier that lets such claims through): the
    // same caller straight in the hub.
    let state = scene.app.app.state();
    let relid: u32 = scene
        .app
        .admin
        .query_one("select 'public.documents'::regclass::oid", &[])
        .await
        .unwrap()
        .get(0);
    let caller = Caller::new("app_user".into(), nul_claims, None);
    let mut registration = state
        .hub
        .register(Interest {
            relid,
            ops: OpSet::ALL,
            filter: Filter::default(),
            caller: Arc::new(caller),
        })
        .expect("the listener is connected");
    scene
        .app
        .wait_for_subscriptions(3 + usize::from(bad.is_some()))
        .await;

    scene.write_and_expect_everyone_else_gets_all("after").await;
    let next = tokio::time::timeout(WAIT, registration.queue.recv())
        .await
        .expect("the failed subscription is closed");
    assert!(next.is_none(), "it gets nothing of the page: {next:?}");
    assert_eq!(
        registration.ended.get(),
        Some(&EndReason::ContextFailed(ContextFailure::Claims))
    );
    if let Some(bad) = &mut bad {
        assert_context_failed(bad, "NUL").await;
    }
    let ended = 1 + u64::from(bad.is_some());
    assert_counted(&scene.app, 1, ended).await;
    scene.everyone_gets("later").await;
}

#[tokio::test]
async fn a_policy_that_raises_on_some_rows_hides_those_rows_only() {
    let mut scene = scene(spawn_app().await).await;
    scene
        .app
        .sql(
            "create function public.explode_on(title text) returns boolean
             language plpgsql stable as $$
             begin
               if title like 'boom%' then raise exception 'policy exploded on %', title; end if;
               return true;
             end $$;
             grant execute on function public.explode_on(text) to public;
             create policy explode on public.documents as restrictive for select
               using (public.explode_on(title));",
        )
        .await;
    scene.app.wait_for_subscriptions(2).await;

    let acme = scene.acme.clone();
    // One transaction, one page: the row that raises between two that do not.
    scene
        .app
        .sql(&format!(
            "insert into documents (tenant_id, title)
             values ('{acme}', 'ok-1'), ('{acme}', 'boom-1'), ('{acme}', 'ok-2');
             update documents set title = 'boom-2' where title = 'ok-1';"
        ))
        .await;
    insert_document(&scene.app, &acme, "sentinel").await;
    for sub in &mut scene.good {
        let got = sub.events_until("c", |e| title_of(e) == "sentinel").await;
        assert_eq!(
            summary(&got),
            [
                s("INSERT", Some("ok-1"), None),
                s("INSERT", Some("ok-2"), None),
                // The new version raises: it left the subscriber's view.
                s("UPDATE", None, Some("ok-1")),
                s("INSERT", Some("sentinel"), None),
            ],
            "{}",
            sub.who
        );
    }
    // boom-1 and boom-2, for each of the two contexts; nobody was ended.
    assert_eq!(
        scene
            .app
            .metric("pgherald_authorizer_rows_hidden_by_errors_total")
            .await,
        4
    );
    assert_eq!(
        scene
            .app
            .metric("pgherald_authorizer_contexts_failed_total")
            .await,
        0
    );
    assert_counted(&scene.app, 0, 0).await;
}

/// Per claim `flag`, a policy on `documents` that runs `then` (SQL) for the
/// contexts whose claims set it to "yes", and is true for everyone.
fn policy_for_flag(flag: &str, definer: bool, then: &str) -> String {
    let security = if definer { "security definer" } else { "" };
    format!(
        "create function public.{flag}() returns boolean language plpgsql {security} as $$
         begin
           if current_setting('request.jwt.claims', true)::jsonb ->> '{flag}' = 'yes' then
             {then}
           end if;
           return true;
         end $$;
         grant execute on function public.{flag}() to public;
         create policy {flag} on public.documents as restrictive for select using (public.{flag}());"
    )
}

/// The bad subscriber's claims set `flag`; its policy query never finishes
/// normally for it: everyone else goes on.
async fn a_policy_query_that_does_not_finish(scene: &mut Scene, flag: &str) {
    let token = token_with_claims(json!({"sub": scene.mallory, "role": "app_user", flag: "yes"}));
    let mut bad = bad_subscriber(&scene.app, &token).await;
    scene.app.wait_for_subscriptions(3).await;
    scene.write_and_expect_everyone_else_gets_all("after").await;
    assert_context_failed(&mut bad, "policies could not be evaluated").await;
    assert_counted(&scene.app, 1, 1).await;
    assert!(
        scene
            .app
            .metric("pgherald_authorizer_isolated_pages_total")
            .await
            >= 1
    );
    scene.everyone_gets("later").await;
}

#[tokio::test]
async fn a_policy_that_sleeps_past_the_statement_timeout_for_one_context_fails_it_alone() {
    // The operator's statement_timeout for the login role (read when a
    // connection opens), and a policy that stalls for one context.
    let app = spawn_app_after(&format!(
        "do $$ begin
           execute format('alter role herald_authenticator in database %I set statement_timeout = %L',
                          current_database(), '1s');
         end $$;
         {}",
        policy_for_flag("stall", false, "perform pg_sleep(60);")
    ))
    .await;
    let mut scene = scene(app).await;
    a_policy_query_that_does_not_finish(&mut scene, "stall").await;
}

#[tokio::test]
async fn a_policy_query_cancelled_for_one_context_fails_it_alone() {
    let mut scene = scene(spawn_app().await).await;
    // pg_cancel_backend on the backend evaluating the policy, by the policy
    // itself (as its owner): no waiting for the right moment to cancel.
    scene
        .app
        .sql(&policy_for_flag(
            "cancel",
            true,
            "perform pg_cancel_backend(pg_backend_pid()); perform pg_sleep(60);",
        ))
        .await;
    a_policy_query_that_does_not_finish(&mut scene, "cancel").await;
}

/// Asserts that `result` is Postgres' refusal for lack of privilege.
fn assert_refused<T: std::fmt::Debug>(result: Result<T, tokio_postgres::Error>, what: &str) {
    let e = result.expect_err(what);
    assert_eq!(
        e.code(),
        Some(&SqlState::INSUFFICIENT_PRIVILEGE),
        "{what}: {e}"
    );
}

#[tokio::test]
async fn the_outbox_is_read_only_through_its_function_and_only_by_the_login_role() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    insert_document(&app, &acme, "secret of acme").await;

    let login = connect(&app.app_url).await;
    for sql in [
        "select * from herald.events",
        "select new_row from herald.events",
        "select count(*) from herald.events",
    ] {
        assert_refused(login.query(sql, &[]).await, sql);
    }
    // Its own interface works (the listener and catch-up use it).
    let rows = login
        .query(
            "select new_row from herald.read_events('1:1:', pg_current_snapshot()::text, 0, 100)
              where table_name = 'public.documents'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);

    // The roles tokens name: neither the table nor the function.
    let as_app_user = connect(&app.app_url).await;
    as_app_user
        .batch_execute("set role app_user")
        .await
        .unwrap();
    for sql in [
        "select * from herald.events",
        "select * from herald.read_events('1:1:', pg_current_snapshot()::text, 0, 100)",
    ] {
        assert_refused(as_app_user.query(sql, &[]).await, sql);
    }

    // No role but the owner (and superusers, and Postgres' own pg_* roles)
    // may select from it, directly or through a role it is a member of.
    let readers: Vec<String> = app
        .admin
        .query(
            "select r.rolname::text from pg_roles r, pg_class c
              where c.oid = 'herald.events'::regclass
                and not r.rolsuper and r.rolname not like 'pg\\_%'
                and not pg_has_role(r.oid, c.relowner, 'USAGE')
                and has_table_privilege(r.oid, c.oid, 'SELECT')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(readers, Vec::<String>::new());
    let callers: Vec<String> = app
        .admin
        .query(
            "select r.rolname::text from pg_roles r
              where not r.rolsuper and r.rolname not like 'pg\\_%'
                and r.rolname <> 'herald_authenticator'
                and not pg_has_role(r.oid, (select proowner from pg_proc
                                             where oid = 'herald.read_events'::regproc), 'USAGE')
                and has_function_privilege(r.oid, 'herald.read_events(text, text, bigint, bigint)', 'EXECUTE')",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(callers, Vec::<String>::new());
}

#[tokio::test]
async fn every_herald_function_pins_its_search_path() {
    let app = spawn_app().await;
    let unpinned: Vec<String> = app
        .admin
        .query(
            "select format('%s (security definer: %s): %s', p.oid::regprocedure, p.prosecdef,
                           coalesce(array_to_string(p.proconfig, '; '), 'no settings'))
               from pg_proc p join pg_namespace n on n.oid = p.pronamespace
              where n.nspname = 'herald'
                and not coalesce(p.proconfig && array['search_path=pg_catalog, pg_temp',
                                                      'search_path=pg_catalog'], false)
              order by 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(unpinned, Vec::<String>::new());
}

/// A connection to `url` that LISTENs on `channel`, with its notifications.
async fn listening(url: &str, channel: &str) -> (Client, mpsc::UnboundedReceiver<Notification>) {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notification(n) = message {
                let _ = tx.send(n);
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {channel}"))
        .await
        .unwrap();
    (client, rx)
}

#[tokio::test]
async fn spoofed_notifications_on_every_channel_change_nothing() {
    let mut scene = scene(spawn_app().await).await;
    scene.app.wait_for_subscriptions(2).await;
    scene.everyone_gets("first").await;
    let events_before = scene.app.metric("pgherald_events_total").await;

    // A real heartbeat, as anyone may see it: its token is no secret.
    let (spoofer, mut heard) = listening(&scene.app.app_url, "herald_heartbeat").await;
    let real = tokio::time::timeout(WAIT, heard.recv())
        .await
        .expect("a heartbeat within the heartbeat interval")
        .expect("the listening connection stays up");
    let token = real.payload().split(':').next().unwrap().to_owned();
    let spoofs = [
        "NOTIFY herald, 'spoof'".to_owned(),
        "NOTIFY herald_catalog, 'spoof'".to_owned(),
        "NOTIFY herald_heartbeat, '999999999'".to_owned(),
        format!("NOTIFY herald_heartbeat, '{token}:999999999'"),
        format!("NOTIFY herald_heartbeat, '{}'", real.payload()),
    ];
    // As the login role, then as the role tokens name; each its own
    // transaction (Postgres folds equal notifications within one).
    let as_app_user = connect(&scene.app.app_url).await;
    as_app_user
        .batch_execute("set role app_user")
        .await
        .unwrap();
    for client in [&spoofer, &as_app_user] {
        for sql in &spoofs {
            client.batch_execute(sql).await.unwrap();
        }
    }

    // Notifications arrive in commit order: once the sentinel is delivered,
    // the listener has seen every spoof.
    scene.everyone_gets("sentinel").await;
    let app = &scene.app;
    let sent = app.metric("pgherald_listener_heartbeat_sent").await;
    let seen = app.metric("pgherald_listener_heartbeat_seen").await;
    assert!(
        seen <= sent,
        "a spoofed heartbeat counted: {seen} seen, {sent} sent"
    );
    assert!(
        app.metric("pgherald_listener_foreign_heartbeats_total")
            .await
            >= 6
    );
    assert_eq!(app.metric("pgherald_listener_connects_total").await, 1);
    assert_eq!(
        app.metric("pgherald_events_total").await,
        events_before + 1,
        "only the sentinel was read"
    );
    assert_eq!(app.metric("pgherald_subscriptions").await, 2);
    // Nothing but the sentinel reached the subscribers (no replay, no
    // duplicate): the next event is the next write.
    scene.everyone_gets("after").await;
}
