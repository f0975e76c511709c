//! What one client's expensive requests may cost everyone else: the work all
//! subscribers depend on (authorizing batches, readiness) has its own pool,
//! so a flood of slow queries leaves delivery and `/readyz` unaffected.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{Protocol, Subscriber, spawn_app_with};

#[tokio::test]
async fn a_flood_of_slow_queries_leaves_readyz_ready_and_delivery_prompt() {
    let app = spawn_app_with(|c| {
        c.pool_size = 2;
        c.limits.query_timeout = Duration::from_secs(30);
    })
    .await;
    // Reading slow_items waits for a gate the test holds closed: queries on
    // it hold their connection for as long as the test wants.
    app.sql(
        "create table public.slow_items (id int primary key);
         insert into public.slow_items select generate_series(1, 10);
         create function public.gate() returns boolean language plpgsql as $$
           begin perform pg_advisory_xact_lock_shared(4242); return true; end $$;
         alter table public.slow_items enable row level security;
         create policy slow on public.slow_items for select using (public.gate());
         grant select on public.slow_items to app_user;
         grant execute on function public.gate() to app_user;
         select herald.track('public.slow_items');
         select pg_advisory_lock(4242)",
    )
    .await;
    app.wait_for_tracked("slow_items").await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    let mut sub = Subscriber::connect(&app, &alice, "alice", Protocol::Transport).await;
    sub.start(
        "n",
        "subscription { notifications(ops: [INSERT]) { row { title } } }",
        json!({}),
    )
    .await;
    app.wait_for_subscriptions(1).await;

    // Twelve queries on a client pool of two: two hold its connections at the
    // gate, the rest queue for them.
    let token = app.token(&alice);
    let flood: Vec<_> = (0..12)
        .map(|_| {
            let url = format!("{}/graphql", app.http_url);
            let token = token.clone();
            tokio::spawn(async move {
                reqwest::Client::new()
                    .post(url)
                    .bearer_auth(token)
                    .json(&json!({"query": "{ slowItems { rows { id } } }"}))
                    .send()
                    .await
            })
        })
        .collect();
    // Wait (bounded, in the database) until both client connections are held.
    app.wait_for_lock_waiters(4242, 2).await;

    let started = Instant::now();
    let ready = reqwest::get(format!("{}/readyz", app.http_url))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "{:?}", ready.text().await);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "readyz took {:?}",
        started.elapsed()
    );

    let written = Instant::now();
    app.notify(&tenant, &alice, "info", "during the flood")
        .await;
    let event = tokio::time::timeout(Duration::from_secs(3), sub.next_event("n"))
        .await
        .expect("delivered within 3 s while client queries queue");
    assert_eq!(event["row"]["title"], "during the flood");
    assert!(written.elapsed() < Duration::from_secs(3));

    app.sql("select pg_advisory_unlock(4242)").await;
    for request in flood {
        request.abort();
    }
}

#[tokio::test]
async fn a_query_longer_than_the_query_timeout_is_cancelled_with_a_clear_error() {
    let app = spawn_app_with(|c| c.limits.query_timeout = Duration::from_millis(300)).await;
    app.sql(
        "create table public.slow_items (id int primary key);
         insert into public.slow_items values (1);
         alter table public.slow_items enable row level security;
         create policy slow on public.slow_items for select using (pg_sleep(5) is not null);
         grant select on public.slow_items to app_user;
         select herald.track('public.slow_items')",
    )
    .await;
    app.wait_for_tracked("slow_items").await;
    let user = app.user("u@x.test", &[]).await;
    let started = Instant::now();
    let response = app
        .graphql(
            &app.token(&user),
            "{ slowItems { rows { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        response["errors"][0]["extensions"]["code"], "TIMEOUT",
        "{response}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_subscription_with_several_root_fields_is_refused_on_both_protocols_and_registers_nothing()
 {
    let app = spawn_app_with(|_| {}).await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    let aliases: String = (0..50)
        .map(|i| format!("a{i}: notifications {{ op }} "))
        .collect();
    for protocol in [Protocol::Transport, Protocol::Legacy] {
        let mut sub = Subscriber::connect(&app, &alice, "alice", protocol).await;
        sub.start("many", &format!("subscription {{ {aliases} }}"), json!({}))
            .await;
        let errors = sub.operation_error("many").await;
        assert!(
            errors[0]["message"]
                .as_str()
                .unwrap()
                .contains("exactly one root field"),
            "{errors:?}"
        );
        assert_eq!(errors[0]["extensions"]["code"], "BAD_USER_INPUT");
        // The connection keeps working, and nothing was registered.
        sub.start("one", "subscription { notifications { op } }", json!({}))
            .await;
        app.wait_for_subscriptions(1).await;
        drop(sub);
        app.wait_for_subscriptions(0).await;
    }
}

#[tokio::test]
async fn requests_beyond_the_depth_field_or_complexity_limits_are_refused_over_http() {
    let app = spawn_app_with(|c| c.limits.cost.max_depth = 4).await;
    let user = app.user("u@x.test", &[]).await;
    let token = app.token(&user);
    let refused = |response: &serde_json::Value, what: &str| {
        let message = response["errors"][0]["message"]
            .as_str()
            .unwrap_or_default();
        assert!(message.contains(what), "{response}");
        assert_eq!(
            response["errors"][0]["extensions"]["code"],
            "BAD_USER_INPUT"
        );
    };
    let deep = "{ a { b { c { d { e } } } } }";
    refused(&app.graphql(&token, deep, json!({})).await, "too deep");
    let wide: String = (0..501).map(|i| format!("f{i}: cursor ")).collect();
    refused(
        &app.graphql(&token, &format!("{{ {wide} }}"), json!({}))
            .await,
        "too many fields",
    );
    let pages: String = (0..10)
        .map(|i| {
            format!(
                "p{i}: documents(first: 1000) {{ rows {{ id title body tenant_id updated_at }} }} "
            )
        })
        .collect();
    refused(
        &app.graphql(&token, &format!("{{ {pages} }}"), json!({}))
            .await,
        "too complex",
    );
    // Within the limits, and introspection (deeper than 4) still works.
    let fine = app
        .graphql(&token, "{ documents(first: 5) { rows { id } } }", json!({}))
        .await;
    assert!(fine["errors"].is_null(), "{fine}");
    let introspection = app
        .graphql(
            &token,
            "{ __schema { types { fields { type { ofType { ofType { name } } } } } } }",
            json!({}),
        )
        .await;
    assert!(introspection["errors"].is_null(), "{introspection}");
}
