//! Everything a tracked table can go through: TRUNCATE, DROP, renames and new
//! columns (the schema is rebuilt on every instance), partitioned tables.

use serde_json::{Value, json};

use crate::helpers::{Protocol, Subscriber, TestApp, spawn_app};

fn tracks(app: &TestApp, name: &str) -> bool {
    app.app.state().schema.catalog().resolve(name).is_ok()
}

fn column_names(app: &TestApp, name: &str) -> Vec<String> {
    app.app
        .state()
        .schema
        .catalog()
        .resolve(name)
        .map(|t| t.columns.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default()
}

/// The error payload of operation `id`'s failure, for both protocols.
fn error_code(msg: &Value) -> String {
    let errors = match &msg["payload"] {
        Value::Array(errors) => errors.clone(),
        payload => payload["errors"].as_array().cloned().unwrap_or_default(),
    };
    errors
        .first()
        .map(|e| e["extensions"]["code"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default()
}

/// A table `widgets(id int primary key, name text)` every `app_user` may read, tracked.
async fn widgets(app: &TestApp) {
    app.sql(
        "create table public.widgets (id int primary key, name text);
         grant select on public.widgets to app_user;
         select herald.track('public.widgets')",
    )
    .await;
    app.wait_for_schema("track widgets", |a| tracks(a, "widgets"))
        .await;
}

#[tokio::test]
async fn truncate_reaches_every_subscriber_and_older_cursors_must_resync() {
    let app = spawn_app().await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    let mut sub = Subscriber::connect(&app, &alice, "alice", Protocol::Transport).await;
    sub.start(
        "typed",
        "subscription { documents { op cursor row { title } old { title } } }",
        json!({}),
    )
    .await;
    sub.changes("generic", "documents", Value::Null, Value::Null)
        .await;
    app.wait_for_subscriptions(2).await;

    crate::helpers::insert_document(&app, &tenant, "before").await;
    let events = sub.collect(&[("typed", 1), ("generic", 1)]).await;
    let cursor = events["typed"][0]["cursor"].as_str().unwrap().to_owned();
    assert_eq!(events["typed"][0]["row"]["title"], "before");

    app.sql("truncate public.documents").await;
    let events = sub.collect(&[("typed", 1), ("generic", 1)]).await;
    for (id, change) in &events {
        assert_eq!(change[0]["op"], "TRUNCATE", "{id}: {change:?}");
        assert_eq!(change[0]["row"], Value::Null, "{id}");
        assert_eq!(change[0]["old"], Value::Null, "{id}");
    }

    // A client resuming from before the truncate cannot be caught up by
    // replay: it is told to read the table again.
    let mut late = Subscriber::connect(&app, &alice, "late alice", Protocol::Transport).await;
    late.start(
        "resume",
        "subscription($after: String) { documents(after: $after) { op } }",
        json!({"after": cursor}),
    )
    .await;
    let msg = late.next_message().await;
    assert_eq!(msg["type"], "error", "{msg}");
    assert_eq!(error_code(&msg), "RESYNC_REQUIRED", "{msg}");
}

#[tokio::test]
async fn a_dropped_table_ends_its_subscriptions_with_a_clear_error() {
    let app = spawn_app().await;
    widgets(&app).await;
    let user = app.user("u@x.test", &[]).await;
    let mut sub = Subscriber::connect(&app, &user, "user", Protocol::Transport).await;
    sub.start(
        "w",
        "subscription { widgets { op row { id name } } }",
        json!({}),
    )
    .await;
    app.wait_for_subscriptions(1).await;
    app.sql("insert into public.widgets values (1, 'one')")
        .await;
    assert_eq!(
        sub.next_event("w").await,
        json!({"op": "INSERT", "row": {"id": 1, "name": "one"}})
    );

    app.sql("drop table public.widgets").await;
    let msg = sub.next_message().await;
    assert_eq!(msg["type"], "error", "{msg}");
    assert_eq!(error_code(&msg), "TABLE_GONE", "{msg}");
    app.wait_for_schema("forget widgets", |a| !tracks(a, "widgets"))
        .await;
    let untracked: i64 = app
        .admin
        .query_one("select count(*) from herald.tracked", &[])
        .await
        .unwrap()
        .get(0);
    assert!(untracked >= 1, "the demo tables stay tracked");
}

#[tokio::test]
async fn renamed_tables_and_new_columns_show_up_in_a_rebuilt_schema() {
    let app = spawn_app().await;
    widgets(&app).await;
    app.sql(
        "alter table public.widgets rename to gadgets;
         alter table public.gadgets add column color text;
         alter table public.gadgets drop column name",
    )
    .await;
    app.wait_for_schema("show gadgets.color", |a| {
        column_names(a, "gadgets") == ["id", "color"]
    })
    .await;
    assert!(!tracks(&app, "widgets"));

    let user = app.user("u@x.test", &[]).await;
    let mut sub = Subscriber::connect(&app, &user, "user", Protocol::Transport).await;
    sub.start(
        "g",
        "subscription { gadgets { op row { id color } } }",
        json!({}),
    )
    .await;
    sub.start("w", "subscription { widgets { op } }", json!({}))
        .await;
    let refused = sub.next_message().await;
    assert_eq!(refused["id"], "w", "{refused}");
    assert_eq!(refused["type"], "error", "{refused}");
    app.wait_for_subscriptions(1).await;
    app.sql("insert into public.gadgets (id, color) values (7, 'red')")
        .await;
    assert_eq!(
        sub.next_event("g").await,
        json!({"op": "INSERT", "row": {"id": 7, "color": "red"}})
    );
}

#[tokio::test]
async fn a_partitioned_table_delivers_every_partition_under_its_own_name_and_policies() {
    let app = spawn_app().await;
    app.sql(
        "create table public.readings (id int, site text, value int, primary key (site, id))
           partition by list (site);
         create table public.readings_a partition of public.readings for values in ('a');
         create table public.readings_b partition of public.readings for values in ('b');
         alter table public.readings enable row level security;
         create policy own_site on public.readings for select
           using (site = current_setting('request.jwt.claims', true)::jsonb ->> 'sub');
         grant select on public.readings to app_user;
         select herald.track('public.readings')",
    )
    .await;
    app.wait_for_schema("track readings", |a| tracks(a, "readings"))
        .await;
    let refused = app
        .admin
        .execute("select herald.track('public.readings_a')", &[])
        .await
        .unwrap_err();
    assert!(
        refused
            .as_db_error()
            .unwrap()
            .message()
            .contains("partition"),
        "{refused}"
    );

    let mut site_a = Subscriber::connect(&app, "a", "site a", Protocol::Transport).await;
    site_a
        .changes("all", "readings", Value::Null, Value::Null)
        .await;
    site_a
        .start(
            "typed",
            "subscription { readings(where: {value: {gte: 10}}) { op row { id site value } } }",
            json!({}),
        )
        .await;
    app.wait_for_subscriptions(2).await;
    app.sql(
        "insert into public.readings values (1, 'b', 50);
         insert into public.readings_b values (2, 'b', 60);
         insert into public.readings values (3, 'a', 5);
         insert into public.readings_a values (4, 'a', 40);
         update public.readings set value = value + 1 where id = 4",
    )
    .await;
    let events = site_a.collect(&[("all", 3), ("typed", 2)]).await;
    let all: Vec<(String, Value)> = events["all"]
        .iter()
        .map(|c| {
            (
                c["table"].as_str().unwrap().to_owned(),
                c["row"]["id"].clone(),
            )
        })
        .collect();
    assert_eq!(
        all,
        [
            ("public.readings".to_owned(), json!(3)),
            ("public.readings".to_owned(), json!(4)),
            ("public.readings".to_owned(), json!(4)),
        ]
    );
    let typed: Vec<Value> = events["typed"]
        .iter()
        .map(|c| json!([c["op"], c["row"]["value"]]))
        .collect();
    assert_eq!(typed, [json!(["INSERT", 40]), json!(["UPDATE", 41])]);
    assert!(
        site_a
            .ws
            .nothing_within(std::time::Duration::from_millis(200))
            .await
            .is_none()
    );
}
