//! pgherald on an application's own database, the way a new user adopts it:
//! an application with its own `users`, `tenants` and `notifications` tables
//! (not the demo's shapes) and its own RLS policies runs `pgherald migrate`,
//! tracks two tables, and subscribes over graphql-ws (the npm client) to
//! typed, filtered, RLS-checked changes, with an `initial` snapshot.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{
    NodeClient, Protocol, Subscriber, TestApp, WAIT, app_url_for, connect, empty_database,
    run_script, spawn_app_on, token_with,
};

/// The application's schema: nothing here is pgherald's.
const APP_SCHEMA: &str = "
    create schema app;
    create type app.priority as enum ('low', 'normal', 'urgent');
    create table public.tenants (slug text primary key, plan text);
    create table public.users (
      id bigint primary key,
      org int not null,
      email text not null unique,
      display_name text
    );
    create table public.notifications (
      id bigint generated always as identity primary key,
      user_id bigint not null references public.users,
      priority app.priority not null default 'normal',
      title text not null,
      amount numeric(12, 2),
      seq bigint,
      tags text[],
      payload jsonb,
      created_at timestamptz not null default now()
    );
    -- The signed-in user's org, for policies (definer: reads users past RLS).
    create function app.my_org() returns int language sql stable security definer
      set search_path = public as $$
        select org from public.users
         where id = nullif(current_setting('request.jwt.claims', true)::jsonb ->> 'sub', '')::bigint
      $$;
    alter table public.users enable row level security;
    create policy same_org on public.users for select using (org = app.my_org());
    alter table public.notifications enable row level security;
    create policy own on public.notifications for select
      using (user_id = nullif(current_setting('request.jwt.claims', true)::jsonb ->> 'sub', '')::bigint);
    insert into public.users values (1, 10, 'ann@a.test', 'Ann'), (2, 10, 'ben@a.test', 'Ben'),
                                    (3, 20, 'cy@b.test', 'Cy');
    insert into public.tenants values ('a', 'pro');
    insert into public.notifications (user_id, priority, title, amount, seq, tags, payload) values
      (1, 'urgent', 'seeded urgent', 50.5, 1, '{x}', '{\"k\": 1}'),
      (1, 'low', 'seeded low', 99, 2, null, null),
      (3, 'urgent', 'seeded for cy', 70, 3, null, null)";

/// After `pgherald migrate` (core only): the grants and tracking an
/// application adds, as the README's quick start says.
const ADOPT: &str = "
    grant usage on schema app to app_user;
    grant execute on function app.my_org() to app_user;
    grant select on public.users, public.notifications to app_user;
    select herald.track('public.users');
    select herald.track('public.notifications')";

async fn adopting_app() -> TestApp {
    let admin_url = empty_database().await;
    let db = connect(&admin_url).await;
    db.batch_execute(APP_SCHEMA)
        .await
        .expect("application schema");
    let applied = pgherald::db::migrate::run(
        &admin_url,
        Some(&app_url_for(&db_name(&admin_url))),
        None,
        false,
    )
    .await
    .expect("migrate succeeds beside the application's tables");
    assert!(applied > 0);
    db.batch_execute(ADOPT).await.expect("grant and track");
    spawn_app_on(&admin_url).await
}

fn db_name(url: &str) -> String {
    url.parse::<tokio_postgres::Config>()
        .unwrap()
        .get_dbname()
        .unwrap()
        .to_owned()
}

fn node_event_data(event: &Value) -> &Value {
    assert_eq!(event["event"], "next", "{event}");
    assert!(event["data"].get("errors").is_none(), "{event}");
    &event["data"]["data"]["notifications"]
}

#[tokio::test]
async fn an_application_database_gets_typed_filtered_rls_checked_changes_with_an_initial_snapshot()
{
    let app = adopting_app().await;
    let ann = token_with("1", "app_user", 3600);
    let mut client = NodeClient::spawn(
        &app.ws_url,
        &ann,
        "transport",
        "subscription {
           notifications(where: {priority: {in: [urgent, normal]}, amount: {gte: \"10\"}},
                         initial: true) {
             op initial row { id user_id priority title amount seq tags payload created_at }
           }
         }",
        json!({}),
    );
    assert_eq!(client.next_event(WAIT).await["event"], "connected");
    // The initial snapshot: Ann's matching rows only (not her low one, not Cy's).
    let first = client.next_event(WAIT).await;
    let change = node_event_data(&first);
    assert_eq!(change["op"], "INSERT", "{first}");
    assert_eq!(change["initial"], true);
    let row = &change["row"];
    assert_eq!(row["title"], "seeded urgent");
    assert_eq!(row["id"], "1", "BigInt ids are strings");
    assert_eq!(row["user_id"], "1");
    assert_eq!(row["priority"], "urgent", "enums are GraphQL enums");
    assert_eq!(
        row["amount"], "50.50",
        "numeric is its exact decimal, as a string"
    );
    assert_eq!(row["tags"], json!(["x"]));
    assert_eq!(row["payload"], json!({"k": 1}));
    assert!(row["created_at"].as_str().unwrap().contains('T'));

    app.wait_for_subscriptions(1).await;
    app.sql(
        "insert into public.notifications (user_id, priority, title, amount, seq) values
           (1, 'urgent', 'big', 100.10, 3000000000),
           (1, 'low', 'filtered out', 500, 4),
           (3, 'urgent', 'for cy', 500, 5),
           (1, 'normal', 'last', 10, 6)",
    )
    .await;
    let mut titles = Vec::new();
    for _ in 0..2 {
        let event = client.next_event(WAIT).await;
        let change = node_event_data(&event);
        assert_eq!(change["initial"], false, "{event}");
        titles.push(change["row"]["title"].as_str().unwrap().to_owned());
        if change["row"]["title"] == "big" {
            assert_eq!(change["row"]["seq"], "3000000000");
            assert_eq!(
                change["row"]["amount"], "100.10",
                "the exact decimal, scale kept"
            );
        }
    }
    assert_eq!(titles, ["big", "last"]);
    client.kill().await;
}

#[tokio::test]
async fn the_applications_own_policies_decide_and_numbers_stay_exact_in_the_generic_api() {
    let app = adopting_app().await;
    let mut ann = Subscriber::connect(&app, "1", "ann", Protocol::Transport).await;
    ann.start(
        "users",
        "subscription { users { op row { id email display_name } old { display_name } } }",
        json!({}),
    )
    .await;
    ann.changes(
        "generic",
        "notifications",
        Value::Null,
        json!({"seq": {"gt": 2_999_999_999i64}}),
    )
    .await;
    app.wait_for_subscriptions(2).await;
    app.sql(
        "update public.users set display_name = 'Cyrus' where id = 3;
         update public.users set display_name = 'Benjamin' where id = 2;
         insert into public.notifications (user_id, title, seq) values
           (3, 'not for ann', 3000000001), (1, 'small', 7), (1, 'huge', 3000000000)",
    )
    .await;
    let events = ann.collect(&[("users", 1), ("generic", 1)]).await;
    assert_eq!(
        events["users"][0],
        json!({"op": "UPDATE", "row": {"id": "2", "email": "ben@a.test", "display_name": "Benjamin"},
               "old": {"display_name": "Ben"}}),
        "only users of Ann's org"
    );
    let generic = &events["generic"][0];
    assert_eq!(generic["table"], "public.notifications");
    assert_eq!(generic["row"]["title"], "huge");
    // Parsed from the raw frame: a float (3000000000.0) would not equal the integer.
    assert_eq!(generic["row"]["seq"], json!(3_000_000_000u64));
    assert!(
        ann.ws
            .nothing_within(Duration::from_millis(200))
            .await
            .is_none(),
        "nothing else for Ann"
    );

    // The untracked application table is not part of the API.
    let response = app
        .graphql(
            &token_with("1", "app_user", 3600),
            "{ tenants { rows { slug } } }",
            json!({}),
        )
        .await;
    assert!(
        response["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("tenants"),
        "{response}"
    );
}

#[tokio::test]
async fn graphql_js_accepts_the_schema_generated_from_the_applications_tables() {
    let app = adopting_app().await;
    let operations = [
        "subscription { notifications(where: {_or: [{priority: {eq: urgent}}, {seq: {gt: \"3000000000\"}}]}) { op row { id priority amount tags payload } } }",
        "query { users(orderBy: [{email: DESC}], first: 5) { rows { id email } endCursor hasNextPage cursor } }",
        "query { tenants { rows { slug } } }",
    ];
    let out = run_script(
        "schema.mjs",
        &[
            ("URL", format!("{}/graphql", app.http_url)),
            ("TOKEN", token_with("1", "app_user", 3600)),
            ("OPERATIONS", json!(operations).to_string()),
        ],
        WAIT,
    )
    .await;
    assert!(out["fatal"].is_null(), "graphql-js: {}", out["fatal"]);
    assert_eq!(out["schemaErrors"], json!([]), "graphql-js: invalid schema");
    let errors: Vec<usize> = out["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_array().unwrap().len())
        .collect();
    assert_eq!(errors[..2], [0, 0], "{}", out["operations"]);
    assert!(
        errors[2] > 0,
        "the untracked tenants table is not in the schema"
    );
    let row = &out["types"]["Notifications"];
    let types: Vec<(&str, &str)> = [
        "id",
        "user_id",
        "priority",
        "title",
        "amount",
        "seq",
        "tags",
        "payload",
        "created_at",
    ]
    .into_iter()
    .map(|f| (f, row[f]["type"].as_str().unwrap_or("missing")))
    .collect();
    assert_eq!(
        types,
        [
            ("id", "BigInt!"),
            ("user_id", "BigInt!"),
            ("priority", "Priority!"),
            ("title", "String!"),
            ("amount", "BigFloat"),
            ("seq", "BigInt"),
            ("tags", "[String]"),
            ("payload", "JSON"),
            ("created_at", "DateTime!"),
        ]
    );
}
