//! What `changes` and `notificationCreated` deliver for rows written with
//! plain SQL, over both WebSocket subprotocols (graphql-transport-ws and the
//! legacy graphql-ws): row images, operations, `ops`, `filter`, per-subscription
//! commit order, GraphQL errors for unknown tables, columns and operators, and
//! several subscriptions on one connection (DESIGN.md section 2, "GraphQL").
//!
//! Every scenario runs once per subprotocol: the test
//! `delivery::<scenario>::over_graphql_transport_ws` and
//! `delivery::<scenario>::over_legacy_graphql_ws`.
//!
//! Absence is proven by order: each subscription receives its events in commit
//! order, so an event it must not get is written before one it must get, and
//! the received list is compared exactly.
//!
//! The small client below ([`Client`]) is shared with `rls.rs`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::helpers::{TestApp, WsClient, spawn_app};

/// `changes` with every argument but `after` as a variable, selecting every field.
pub(crate) const CHANGES: &str = "subscription($table: String!, $ops: [ChangeOp!], $filter: JSON) {
  changes(table: $table, ops: $ops, filter: $filter) { cursor op table row old committedAt }
}";

/// `notificationCreated`, selecting every field.
pub(crate) const NOTIFICATIONS: &str = "subscription {
  notificationCreated { id tenantId userId kind title body data createdAt readAt }
}";

/// Which GraphQL-over-WebSocket subprotocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// `graphql-transport-ws` (the graphql-ws library).
    Transport,
    /// Legacy `graphql-ws` (subscriptions-transport-ws).
    Legacy,
}

impl Protocol {
    /// The message type that carries a result.
    fn data_type(self) -> &'static str {
        match self {
            Protocol::Transport => "next",
            Protocol::Legacy => "data",
        }
    }
}

/// An initialised WebSocket connection of one user, over one subprotocol.
pub(crate) struct Client {
    /// The socket.
    pub ws: WsClient,
    /// Its subprotocol.
    pub protocol: Protocol,
    /// Whose token it carries (for failure messages).
    pub who: String,
}

impl Client {
    /// Connects as user `user` (id), named `who` in failure messages.
    pub async fn connect(app: &TestApp, user: &str, who: &str, protocol: Protocol) -> Client {
        let ws = match protocol {
            Protocol::Transport => app.transport_as(user).await,
            Protocol::Legacy => app.legacy_as(user).await,
        };
        Client {
            ws,
            protocol,
            who: who.to_owned(),
        }
    }

    /// Starts operation `id` (`subscribe` or `start`, by protocol).
    pub async fn start(&mut self, id: &str, query: &str, variables: Value) {
        match self.protocol {
            Protocol::Transport => self.ws.subscribe(id, query, variables).await,
            Protocol::Legacy => self.ws.start(id, query, variables).await,
        }
    }

    /// Subscribes `id` to `changes(table, ops, filter)`; `Value::Null`
    /// leaves `ops` or `filter` out.
    pub async fn changes(&mut self, id: &str, table: &str, ops: Value, filter: Value) {
        self.start(
            id,
            CHANGES,
            json!({"table": table, "ops": ops, "filter": filter}),
        )
        .await;
    }

    /// The next message that is not a legacy `ka` keep-alive.
    pub async fn next_message(&mut self) -> Value {
        loop {
            let msg = self.ws.next_json().await;
            if msg["type"] != "ka" {
                return msg;
            }
        }
    }

    /// The next message, which must be a result without errors; returns the
    /// operation id and the value of the result's only root field.
    pub async fn next_result(&mut self) -> (String, Value) {
        let msg = self.next_message().await;
        let who = &self.who;
        assert_eq!(
            msg["type"],
            self.protocol.data_type(),
            "{who}: expected a result message, got {msg}"
        );
        let id = msg["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{who}: a result without an id: {msg}"))
            .to_owned();
        let payload = &msg["payload"];
        assert!(
            payload.get("errors").is_none_or(Value::is_null),
            "{who}: a result with errors: {msg}"
        );
        let data = payload["data"]
            .as_object()
            .unwrap_or_else(|| panic!("{who}: a result without data: {msg}"));
        assert_eq!(data.len(), 1, "{who}: one root field expected: {msg}");
        (id, data.values().next().unwrap().clone())
    }

    /// The next message, which must be a result of operation `id`.
    pub async fn next_event(&mut self, id: &str) -> Value {
        let (got, value) = self.next_result().await;
        assert_eq!(
            got, id,
            "{}: expected an event of {id}, got one of {got}: {value}",
            self.who
        );
        value
    }

    /// `n` events of the connection's only subscription `id`.
    pub async fn events(&mut self, id: &str, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            out.push(self.next_event(id).await);
        }
        out
    }

    /// Events of the connection's only subscription `id`, up to and
    /// including the first that `last` accepts.
    pub async fn events_until(&mut self, id: &str, last: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let event = self.next_event(id).await;
            let done = last(&event);
            out.push(event);
            if done {
                return out;
            }
        }
    }

    /// Events of every subscription of the connection, by operation id, until
    /// each id in `counts` has at least its count.
    pub async fn collect(&mut self, counts: &[(&str, usize)]) -> BTreeMap<String, Vec<Value>> {
        let mut got: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let done = |got: &BTreeMap<String, Vec<Value>>| {
            counts
                .iter()
                .all(|(id, n)| got.get(*id).map_or(0, Vec::len) >= *n)
        };
        while !done(&got) {
            let (id, value) = self.next_result().await;
            got.entry(id).or_default().push(value);
        }
        got
    }

    /// The next message, which must report that operation `id` failed;
    /// returns its GraphQL errors. graphql-transport-ws: one `error` message
    /// whose payload is the list of errors, and no `complete` (PROTOCOL.md).
    /// Legacy graphql-ws: a `data` result with `errors`, then `complete` (or
    /// an `error` message carrying one error, which that protocol allows too).
    pub async fn operation_error(&mut self, id: &str) -> Vec<Value> {
        let msg = self.next_message().await;
        let who = self.who.clone();
        assert_eq!(
            msg["id"], id,
            "{who}: expected an error for {id}, got {msg}"
        );
        let errors = match (self.protocol, msg["type"].as_str()) {
            (Protocol::Transport, Some("error")) => msg["payload"]
                .as_array()
                .unwrap_or_else(|| panic!("{who}: error payload must be a list: {msg}"))
                .clone(),
            (Protocol::Legacy, Some("error")) => vec![msg["payload"].clone()],
            (Protocol::Legacy, Some("data")) => {
                let errors = msg["payload"]["errors"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{who}: expected an error for {id}, got {msg}"))
                    .clone();
                let complete = self.next_message().await;
                assert_eq!(
                    complete,
                    json!({"type": "complete", "id": id}),
                    "{who}: a result with errors must end the operation"
                );
                errors
            }
            _ => panic!("{who}: expected an error for {id}, got {msg}"),
        };
        assert!(!errors.is_empty(), "{who}: an empty error list: {msg}");
        for e in &errors {
            assert!(
                e["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{who}: an error without a message: {msg}"
            );
        }
        errors
    }
}

/// The messages of `errors`, joined (for `contains` assertions).
pub(crate) fn messages(errors: &[Value]) -> String {
    errors
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Inserts a document with plain SQL; returns its id.
pub(crate) async fn insert_document(app: &TestApp, tenant: &str, title: &str) -> String {
    app.admin
        .query_one(
            "insert into documents (tenant_id, title) values ($1::text::uuid, $2) returning id::text",
            &[&tenant, &title],
        )
        .await
        .unwrap()
        .get(0)
}

/// The stored document `id` as the outbox captures it (`to_jsonb` of the row).
pub(crate) async fn document_image(app: &TestApp, id: &str) -> Value {
    app.admin
        .query_one(
            "select to_jsonb(d) from documents d where d.id = $1::text::uuid",
            &[&id],
        )
        .await
        .unwrap()
        .get(0)
}

/// The title of the version a change carries (`row`, else `old`).
pub(crate) fn title_of(change: &Value) -> &str {
    let image = if change["row"].is_null() {
        &change["old"]
    } else {
        &change["row"]
    };
    image["title"].as_str().unwrap_or("<no title>")
}

/// `(op, row title, old title)` of each change, for exact comparisons.
fn summary(changes: &[Value]) -> Vec<(String, Option<String>, Option<String>)> {
    changes
        .iter()
        .map(|c| {
            (
                c["op"].as_str().unwrap_or("<no op>").to_owned(),
                c["row"]["title"].as_str().map(str::to_owned),
                c["old"]["title"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

/// Shorthand for an expected [`summary`] entry.
fn s(op: &str, row: Option<&str>, old: Option<&str>) -> (String, Option<String>, Option<String>) {
    (
        op.to_owned(),
        row.map(str::to_owned),
        old.map(str::to_owned),
    )
}

/// An instance with tenant Acme and its member alice: (app, tenant, alice).
async fn acme() -> (TestApp, String, String) {
    let app = spawn_app().await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    (app, tenant, alice)
}

/// Runs each scenario `name(protocol)` as two tests, `name::over_graphql_transport_ws`
/// and `name::over_legacy_graphql_ws`.
macro_rules! over_both_protocols {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn over_graphql_transport_ws() {
                super::$scenario(super::Protocol::Transport).await;
            }

            #[tokio::test]
            async fn over_legacy_graphql_ws() {
                super::$scenario(super::Protocol::Legacy).await;
            }
        }
    )*};
}

over_both_protocols!(
    an_insert_made_with_plain_sql_arrives_as_insert_with_the_new_row_and_a_null_old,
    an_update_arrives_with_the_new_row_and_the_previous_version_as_old,
    a_delete_arrives_with_the_previous_version_as_old_and_a_null_row,
    ops_delete_delivers_only_deletes_and_ops_insert_update_everything_else,
    filters_deliver_only_the_rows_they_match_with_eq_in_neq_lt_and_a_json_string_literal,
    numeric_filters_compare_numbers_by_value,
    several_updates_of_one_row_arrive_in_commit_order,
    an_unknown_or_untracked_table_is_a_graphql_error_naming_it_and_the_connection_keeps_working,
    an_unknown_filter_column_or_operator_is_a_graphql_error_naming_it_and_the_connection_keeps_working,
    several_subscriptions_on_one_connection_each_get_their_own_events,
    a_notification_inserted_with_plain_sql_reaches_its_recipient_with_every_field,
);

async fn an_insert_made_with_plain_sql_arrives_as_insert_with_the_new_row_and_a_null_old(
    p: Protocol,
) {
    let (app, acme, alice) = acme().await;
    let mut c = Client::connect(&app, &alice, "alice", p).await;
    c.changes("docs", "documents", Value::Null, Value::Null)
        .await;
    app.wait_for_subscriptions(1).await;

    let id = insert_document(&app, &acme, "Quarterly plan").await;
    let change = c.next_event("docs").await;
    let image = document_image(&app, &id).await;

    assert_eq!(change["op"], "INSERT", "{change}");
    assert_eq!(change["table"], "public.documents", "{change}");
    assert_eq!(change["row"], image, "row must be the new image: {change}");
    assert_eq!(change["row"]["id"], id.as_str());
    assert_eq!(change["row"]["tenant_id"], acme.as_str());
    assert_eq!(change["row"]["title"], "Quarterly plan");
    assert_eq!(change["old"], Value::Null, "old of an insert: {change}");
    assert!(
        change["cursor"].as_str().is_some_and(|c| !c.is_empty()),
        "cursor: {change}"
    );
    let committed_at = change["committedAt"].as_str().unwrap_or_default();
    assert!(
        chrono::DateTime::parse_from_rfc3339(committed_at).is_ok(),
        "committedAt must be a date-time: {change}"
    );
}

async fn an_update_arrives_with_the_new_row_and_the_previous_version_as_old(p: Protocol) {
    let (app, acme, alice) = acme().await;
    let mut c = Client::connect(&app, &alice, "alice", p).await;
    c.changes("docs", "documents", Value::Null, Value::Null)
        .await;
    app.wait_for_subscriptions(1).await;

    let id = insert_document(&app, &acme, "Draft").await;
    let inserted = c.next_event("docs").await;
    assert_eq!(inserted["op"], "INSERT", "{inserted}");
    let before = document_image(&app, &id).await;

    app.sql(&format!(
        "update documents set title = 'Final', body = 'signed', updated_at = updated_at + interval '1 hour'
          where id = '{id}'"
    ))
    .await;
    let change = c.next_event("docs").await;
    let after = document_image(&app, &id).await;

    assert_eq!(change["op"], "UPDATE", "{change}");
    assert_eq!(change["table"], "public.documents", "{change}");
    assert_eq!(change["row"], after, "row must be the new image: {change}");
    assert_eq!(
        change["old"], before,
        "old must be the previous image: {change}"
    );
    assert_eq!(change["row"]["title"], "Final");
    assert_eq!(change["old"]["title"], "Draft");
    assert_ne!(
        change["cursor"], inserted["cursor"],
        "each change has its own cursor"
    );
}

async fn a_delete_arrives_with_the_previous_version_as_old_and_a_null_row(p: Protocol) {
    let (app, acme, alice) = acme().await;
    let mut c = Client::connect(&app, &alice, "alice", p).await;
    // The schema-qualified name works as well as the bare one.
    c.changes("docs", "public.documents", Value::Null, Value::Null)
        .await;
    app.wait_for_subscriptions(1).await;

    let id = insert_document(&app, &acme, "Obsolete").await;
    let inserted = c.next_event("docs").await;
    assert_eq!(inserted["op"], "INSERT", "{inserted}");
    let before = document_image(&app, &id).await;

    app.sql(&format!("delete from documents where id = '{id}'"))
        .await;
    let change = c.next_event("docs").await;

    assert_eq!(change["op"], "DELETE", "{change}");
    assert_eq!(change["table"], "public.documents", "{change}");
    assert_eq!(change["row"], Value::Null, "row of a delete: {change}");
    assert_eq!(
        change["old"], before,
        "old must be the deleted image: {change}"
    );
}

async fn ops_delete_delivers_only_deletes_and_ops_insert_update_everything_else(p: Protocol) {
    let (app, acme, alice) = acme().await;
    let mut c = Client::connect(&app, &alice, "alice", p).await;
    c.changes("del", "documents", json!(["DELETE"]), Value::Null)
        .await;
    c.changes(
        "upsert",
        "documents",
        json!(["INSERT", "UPDATE"]),
        Value::Null,
    )
    .await;
    app.wait_for_subscriptions(2).await;

    for n in 1..=2 {
        let id = insert_document(&app, &acme, &format!("d{n}")).await;
        app.sql(&format!(
            "update documents set title = 'd{n}-edited' where id = '{id}'"
        ))
        .await;
        app.sql(&format!("delete from documents where id = '{id}'"))
            .await;
    }
    // The last write, so that a delete leaking into `upsert` shows before it.
    insert_document(&app, &acme, "d3").await;

    let got = c.collect(&[("del", 2), ("upsert", 5)]).await;
    assert_eq!(
        summary(&got["del"]),
        vec![
            s("DELETE", None, Some("d1-edited")),
            s("DELETE", None, Some("d2-edited")),
        ],
        "ops: [DELETE] got {:?}",
        got["del"]
    );
    assert_eq!(
        summary(&got["upsert"]),
        vec![
            s("INSERT", Some("d1"), None),
            s("UPDATE", Some("d1-edited"), Some("d1")),
            s("INSERT", Some("d2"), None),
            s("UPDATE", Some("d2-edited"), Some("d2")),
            s("INSERT", Some("d3"), None),
        ],
        "ops: [INSERT, UPDATE] got {:?}",
        got["upsert"]
    );
}

async fn filters_deliver_only_the_rows_they_match_with_eq_in_neq_lt_and_a_json_string_literal(
    p: Protocol,
) {
    let (app, acme, alice) = acme().await;
    let mut c = Client::connect(&app, &alice, "alice", p).await;
    let filters = [
        ("eq", json!({"title": {"eq": "apple"}})),
        ("in", json!({"body": {"in": ["red", "green"]}})),
        ("neq", json!({"title": {"neq": "banana"}})),
        ("lt", json!({"title": {"lt": "m"}})),
        (
            "and",
            json!({"title": {"eq": "apple"}, "body": {"eq": "red"}}),
        ),
    ];
    for (id, filter) in &filters {
        c.changes(id, "documents", json!(["INSERT"]), filter.clone())
            .await;
    }
    // The string-literal form: JSON text inline in the document.
    c.start(
        "literal",
        r#"subscription { changes(table: "documents", filter: "{\"title\": {\"in\": [\"melon\", \"apple\"]}}") { op row old } }"#,
        json!({}),
    )
    .await;
    app.wait_for_subscriptions(filters.len() + 1).await;

    // The last row matches every filter: anything wrongly delivered comes
    // before it, in commit order.
    let rows = [
        ("banana", "red"),
        ("zebra", "blue"),
        ("apple", "blue"),
        ("melon", "green"),
        ("banana", "yellow"),
        ("apple", "red"),
    ];
    for (title, body) in rows {
        app.sql(&format!(
            "insert into documents (tenant_id, title, body) values ('{acme}', '{title}', '{body}')"
        ))
        .await;
    }
    let expected: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::from([
        ("eq", vec![("apple", "blue"), ("apple", "red")]),
        (
            "in",
            vec![("banana", "red"), ("melon", "green"), ("apple", "red")],
        ),
        (
            "neq",
            vec![
                ("zebra", "blue"),
                ("apple", "blue"),
                ("melon", "green"),
                ("apple", "red"),
            ],
        ),
        (
            "lt",
            vec![
                ("banana", "red"),
                ("apple", "blue"),
                ("banana", "yellow"),
                ("apple", "red"),
            ],
        ),
        ("and", vec![("apple", "red")]),
        (
            "literal",
            vec![("apple", "blue"), ("melon", "green"), ("apple", "red")],
        ),
    ]);
    let counts: Vec<(&str, usize)> = expected.iter().map(|(k, v)| (*k, v.len())).collect();
    let got = c.collect(&counts).await;
    for (id, want) in &expected {
        let have: Vec<(&str, &str)> = got[*id]
            .iter()
            .map(|c| {
                assert_eq!(c["op"], "INSERT", "{id}: {c}");
                (
                    c["row"]["title"].as_str().unwrap_or("<none>"),
                    c["row"]["body"].as_str().unwrap_or("<none>"),
                )
            })
            .collect();
        assert_eq!(&have, want, "filter {id} delivered {:?}", got[*id]);
    }
}

async fn numeric_filters_compare_numbers_by_value(p: Protocol) {
    let (app, acme, alice) = acme().await;
    // A tracked table with a numeric column, under the same kind of policy.
    app.sql(
        "create table public.scores (
           id        bigserial primary key,
           tenant_id uuid not null references public.tenants (id),
           points    numeric not null
         );
         alter table public.scores enable row level security;
         create policy scores_members on public.scores for select
           using (tenant_id in (select public.my_tenant_ids()));
         grant select on public.scores to app_user;
         select herald.track('public.scores');",
    )
    .await;
    let mut c = Client::connect(&app, &alice, "alice", p).await;
    c.changes("lt", "scores", Value::Null, json!({"points": {"lt": 10}}))
        .await;
    c.changes(
        "range",
        "scores",
        Value::Null,
        json!({"points": {"gt": 9, "lte": 100}}),
    )
    .await;
    app.wait_for_subscriptions(2).await;

    // 9.5 matches both and comes last. Lexical comparison would put 2 after
    // 10 and 100 before 9.
    for points in ["100", "9", "10", "1000", "2", "9.5"] {
        app.sql(&format!(
            "insert into scores (tenant_id, points) values ('{acme}', {points})"
        ))
        .await;
    }
    let got = c.collect(&[("lt", 3), ("range", 3)]).await;
    let points = |id: &str| -> Vec<f64> {
        got[id]
            .iter()
            .map(|c| {
                assert_eq!(c["table"], "public.scores", "{c}");
                c["row"]["points"]
                    .as_f64()
                    .unwrap_or_else(|| panic!("points must be a JSON number: {c}"))
            })
            .collect()
    };
    assert_eq!(points("lt"), vec![9.0, 2.0, 9.5], "lt 10: {:?}", got["lt"]);
    assert_eq!(
        points("range"),
        vec![100.0, 10.0, 9.5],
        "gt 9, lte 100: {:?}",
        got["range"]
    );
}

async fn several_updates_of_one_row_arrive_in_commit_order(p: Protocol) {
    let (app, acme, alice) = acme().await;
    let mut c = Client::connect(&app, &alice, "alice", p).await;
    c.changes("docs", "documents", Value::Null, Value::Null)
        .await;
    app.wait_for_subscriptions(1).await;

    let id = insert_document(&app, &acme, "v0").await;
    // One transaction per update…
    for n in 1..=8 {
        app.sql(&format!(
            "update documents set title = 'v{n}' where id = '{id}'"
        ))
        .await;
    }
    // …and several updates in one transaction.
    app.sql(&format!(
        "begin;
         update documents set title = 'v9' where id = '{id}';
         update documents set title = 'v10' where id = '{id}';
         update documents set title = 'v11' where id = '{id}';
         commit;"
    ))
    .await;

    let got = c.events("docs", 12).await;
    let mut expected = vec![s("INSERT", Some("v0"), None)];
    for n in 1..=11 {
        let (new, old) = (format!("v{n}"), format!("v{}", n - 1));
        expected.push(s("UPDATE", Some(&new), Some(&old)));
    }
    assert_eq!(summary(&got), expected, "delivered {got:?}");
    let cursors: std::collections::BTreeSet<&str> =
        got.iter().filter_map(|c| c["cursor"].as_str()).collect();
    assert_eq!(cursors.len(), got.len(), "every change has its own cursor");
}

async fn an_unknown_or_untracked_table_is_a_graphql_error_naming_it_and_the_connection_keeps_working(
    p: Protocol,
) {
    let (app, acme, alice) = acme().await;
    // A real table the caller may read, but not tracked.
    app.sql(
        "create table public.scratch (id int primary key);
         grant select on public.scratch to app_user;",
    )
    .await;
    let mut c = Client::connect(&app, &alice, "alice", p).await;

    c.changes("missing", "no_such_table", Value::Null, Value::Null)
        .await;
    let errors = c.operation_error("missing").await;
    assert!(
        messages(&errors).contains("no_such_table"),
        "the error must name the table: {errors:?}"
    );

    c.changes("untracked", "public.scratch", Value::Null, Value::Null)
        .await;
    let errors = c.operation_error("untracked").await;
    assert!(
        messages(&errors).contains("scratch"),
        "the error must name the table: {errors:?}"
    );

    // The connection is still open, and a subscription on it works.
    c.changes("docs", "documents", Value::Null, Value::Null)
        .await;
    app.wait_for_subscriptions(1).await;
    insert_document(&app, &acme, "still here").await;
    let change = c.next_event("docs").await;
    assert_eq!(change["row"]["title"], "still here", "{change}");
}

async fn an_unknown_filter_column_or_operator_is_a_graphql_error_naming_it_and_the_connection_keeps_working(
    p: Protocol,
) {
    let (app, acme, alice) = acme().await;
    let mut c = Client::connect(&app, &alice, "alice", p).await;

    c.changes(
        "column",
        "documents",
        Value::Null,
        json!({"no_such_column": {"eq": 1}}),
    )
    .await;
    let errors = c.operation_error("column").await;
    assert!(
        messages(&errors).contains("no_such_column"),
        "the error must name the column: {errors:?}"
    );

    c.changes(
        "operator",
        "documents",
        Value::Null,
        json!({"title": {"like": "%x%"}}),
    )
    .await;
    let errors = c.operation_error("operator").await;
    assert!(
        messages(&errors).contains("like"),
        "the error must name the operator: {errors:?}"
    );

    // Through the string-literal form too; SQL never sees the column name.
    c.start(
        "literal",
        r#"subscription { changes(table: "documents", filter: "{\"title; drop table documents\": {\"eq\": 1}}") { op } }"#,
        json!({}),
    )
    .await;
    let errors = c.operation_error("literal").await;
    assert!(
        messages(&errors).contains("drop table documents"),
        "the error must name the column: {errors:?}"
    );

    // No subscription was left behind; the connection still works.
    c.changes(
        "docs",
        "documents",
        Value::Null,
        json!({"title": {"eq": "ok"}}),
    )
    .await;
    app.wait_for_subscriptions(1).await;
    insert_document(&app, &acme, "ok").await;
    let change = c.next_event("docs").await;
    assert_eq!(change["row"]["title"], "ok", "{change}");
}

async fn several_subscriptions_on_one_connection_each_get_their_own_events(p: Protocol) {
    let (app, acme, alice) = acme().await;
    let mut c = Client::connect(&app, &alice, "alice", p).await;
    c.changes("all", "documents", Value::Null, Value::Null)
        .await;
    c.changes("all-again", "documents", Value::Null, Value::Null)
        .await;
    c.changes("updates", "documents", json!(["UPDATE"]), Value::Null)
        .await;
    c.start("mine", NOTIFICATIONS, json!({})).await;
    app.wait_for_subscriptions(4).await;

    let id = insert_document(&app, &acme, "one").await;
    app.notify(&acme, &alice, "x", "n1").await;
    app.sql(&format!(
        "update documents set title = 'two' where id = '{id}'"
    ))
    .await;
    app.notify(&acme, &alice, "x", "n2").await;

    let got = c
        .collect(&[("all", 2), ("all-again", 2), ("updates", 1), ("mine", 2)])
        .await;
    let both = vec![
        s("INSERT", Some("one"), None),
        s("UPDATE", Some("two"), Some("one")),
    ];
    assert_eq!(summary(&got["all"]), both, "all: {:?}", got["all"]);
    assert_eq!(
        summary(&got["all-again"]),
        both,
        "all-again: {:?}",
        got["all-again"]
    );
    assert_eq!(
        summary(&got["updates"]),
        vec![s("UPDATE", Some("two"), Some("one"))],
        "updates: {:?}",
        got["updates"]
    );
    let titles: Vec<&Value> = got["mine"].iter().map(|n| &n["title"]).collect();
    assert_eq!(
        titles,
        [&json!("n1"), &json!("n2")],
        "mine: {:?}",
        got["mine"]
    );
    assert_eq!(
        got.len(),
        4,
        "events for unknown operation ids: {:?}",
        got.keys()
    );
}

async fn a_notification_inserted_with_plain_sql_reaches_its_recipient_with_every_field(
    p: Protocol,
) {
    let (app, acme, alice) = acme().await;
    let mut c = Client::connect(&app, &alice, "alice", p).await;
    c.start("mine", NOTIFICATIONS, json!({})).await;
    app.wait_for_subscriptions(1).await;

    let row = app
        .admin
        .query_one(
            "insert into notifications (tenant_id, user_id, kind, title, body, data)
             values ($1::text::uuid, $2::text::uuid, 'mention', 'You were mentioned', 'in Plan', '{\"doc\": 7}')
             returning id::text, to_jsonb(created_at)",
            &[&acme, &alice],
        )
        .await
        .unwrap();
    let id: String = row.get(0);
    let created_at: Value = row.get(1);

    let n = c.next_event("mine").await;
    assert_eq!(n["id"], id.as_str(), "{n}");
    assert_eq!(n["tenantId"], acme.as_str(), "{n}");
    assert_eq!(n["userId"], alice.as_str(), "{n}");
    assert_eq!(n["kind"], "mention", "{n}");
    assert_eq!(n["title"], "You were mentioned", "{n}");
    assert_eq!(n["body"], "in Plan", "{n}");
    assert_eq!(n["data"], json!({"doc": 7}), "{n}");
    assert_eq!(n["readAt"], Value::Null, "{n}");
    let sent = chrono::DateTime::parse_from_rfc3339(n["createdAt"].as_str().unwrap_or_default())
        .unwrap_or_else(|e| panic!("createdAt {n}: {e}"));
    let stored = chrono::DateTime::parse_from_rfc3339(created_at.as_str().unwrap()).unwrap();
    assert_eq!(sent, stored, "createdAt: {n}");
}
