//! What `ops` and `filter` let through: operations, the filter operators
//! (and their JSON string-literal form), and numbers compared by value.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::acme;
use crate::helpers::{Protocol, Subscriber, insert_document, s, summary};

over_both_protocols!(
    ops_delete_delivers_only_deletes_and_ops_insert_update_everything_else,
    filters_deliver_only_the_rows_they_match_with_eq_in_neq_lt_and_a_json_string_literal,
    numeric_filters_compare_numbers_by_value,
);

async fn ops_delete_delivers_only_deletes_and_ops_insert_update_everything_else(p: Protocol) {
    let (app, acme, alice) = acme().await;
    let mut c = Subscriber::connect(&app, &alice, "alice", p).await;
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
    let mut c = Subscriber::connect(&app, &alice, "alice", p).await;
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
    app.wait_for_tracked("public.scores").await;
    let mut c = Subscriber::connect(&app, &alice, "alice", p).await;
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
