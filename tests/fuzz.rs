//! Fuzzing of what clients control, on the stable toolchain (proptest):
//! filter specs, cursors, request texts and row-image JSON. Each target must
//! never panic, and decoders must accept only what their encoders produce.
//! `make test` runs a bounded number of cases; `make fuzz` runs many more
//! (`PGHERALD_FUZZ_CASES`).

use std::sync::Arc;

use pgherald::db::catalog::{Column, Table, TypeKind};
use pgherald::db::jsonb;
use pgherald::events::cursor::{Cursor, CursorCodec};
use pgherald::events::filter::Filter;
use pgherald::graphql::limits::{self, CostLimits};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

fn runner() -> TestRunner {
    let cases = std::env::var("PGHERALD_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2_000);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Any JSON value, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z_%\\\\.:0-9 -]{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "eq", "neq", "lt", "lte", "gt", "gte", "in", "isNull", "like", "ilike", "_and", "_or",
            "_not", "id", "n", "t", "ts", "u", "e", "j", "a", "nope",
        ])
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(
                prop::sample::select(vec![
                    "eq", "neq", "lt", "lte", "gt", "gte", "in", "isNull", "like", "ilike", "_and",
                    "_or", "_not", "id", "n", "t", "ts", "u", "e", "j", "a", "nope",
                ])
                .prop_map(str::to_owned),
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn table() -> Table {
    let column = |name: &str, kind: TypeKind| Column {
        name: name.into(),
        kind,
        sql_type: "t".into(),
        not_null: false,
    };
    Table {
        relid: 1,
        schema: "public".into(),
        name: "t".into(),
        qualified: "public.t".into(),
        primary_key: vec!["id".into()],
        columns: vec![
            column("id", TypeKind::BigInt),
            column("n", TypeKind::Numeric),
            column("t", TypeKind::Text),
            column("ts", TypeKind::Timestamptz),
            column("u", TypeKind::Uuid),
            column(
                "e",
                TypeKind::Enum {
                    name: "public.e".into(),
                    labels: vec!["a".into(), "b".into()],
                },
            ),
            column("j", TypeKind::Json),
            column("a", TypeKind::Array(Box::new(TypeKind::Text))),
        ],
    }
}

#[test]
fn filter_specs_never_panic_and_accepted_ones_evaluate_on_any_image() {
    let table = table();
    runner()
        .run(&(json_value(), json_value()), |(spec, image)| {
            if let Ok(filter) = Filter::parse(&spec, &table, &|_| true) {
                let _ = filter.matches(&image);
                let _ = filter.spec();
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn cursor_decoding_never_panics_and_accepts_only_untouched_cursors() {
    let codec = CursorCodec::new(Arc::from("db:1:1"), b"fuzz key");
    let cursor = Cursor {
        identity: "db:1:1".into(),
        low: "5:9:6".parse().unwrap(),
        high: "6:12:".parse().unwrap(),
        id: 42,
    };
    let valid = codec.encode(&cursor);
    runner()
        .run(
            &(any::<String>(), 0..valid.len(), any::<u8>()),
            |(text, at, byte)| {
                let _ = codec.decode(&text);
                // One byte of a valid cursor changed: refused unless unchanged.
                let mut bytes = valid.clone().into_bytes();
                bytes[at] = byte;
                if let Ok(mutated) = String::from_utf8(bytes) {
                    if let Ok(decoded) = codec.decode(&mutated) {
                        prop_assert_eq!(decoded, cursor.clone());
                    }
                }
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn request_texts_never_panic_the_cost_check() {
    let fragments = prop::sample::select(vec![
        "{",
        "}",
        "subscription",
        "query",
        "fragment F on Q",
        "...F",
        "... on Q",
        "a",
        "b:",
        "(first: 5)",
        "(first: $n)",
        "__schema",
        "#",
        "\"s\"",
        "@skip(if: true)",
    ]);
    runner()
        .run(
            &(prop::collection::vec(fragments, 0..60), any::<String>()),
            |(parts, noise)| {
                let text = parts.join(" ");
                let vars = json!({"n": 7});
                let _ = limits::check(&text, None, Some(&vars), &CostLimits::default());
                let _ = limits::check(&noise, Some("F"), None, &CostLimits::default());
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn row_image_json_never_panics_and_keeps_every_number_exact() {
    runner()
        .run(
            &(json_value(), "-?(0|[1-9][0-9]{0,29})(\\.[0-9]{1,30})?"),
            |(value, number)| {
                let text = format!(r#"{{"v": {value}, "n": {number}}}"#);
                let parsed = jsonb::parse(&text).expect("valid JSON parses");
                // The number comes back with every digit, as a number or kept exact.
                let n = &parsed["n"];
                let digits = match n {
                    Value::String(s) => jsonb::exact_number(s).expect("marked").to_owned(),
                    other => other.to_string(),
                };
                prop_assert_eq!(
                    digits.trim_start_matches('-').trim_start_matches('0'),
                    number.trim_start_matches('-').trim_start_matches('0'),
                    "{}",
                    text
                );
                let _ = jsonb::parse(&value.to_string().replace('1', "1e9999"));
                Ok(())
            },
        )
        .unwrap();
}
