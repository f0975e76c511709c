//! Parse errors and semantics of [`Filter`] on a table of many kinds.

use serde_json::{Value, json};

use super::*;
use crate::db::catalog::{Column, TypeKind};

fn col(name: &str, kind: TypeKind, sql_type: &str) -> Column {
    Column {
        name: name.into(),
        kind,
        sql_type: sql_type.into(),
        not_null: false,
    }
}

fn table() -> Table {
    Table {
        relid: 1,
        schema: "public".into(),
        name: "t".into(),
        qualified: "public.t".into(),
        primary_key: vec!["id".into()],
        columns: vec![
            col("id", TypeKind::Int, "integer"),
            col("big", TypeKind::BigInt, "bigint"),
            col("num", TypeKind::Numeric, "numeric"),
            col("f8", TypeKind::Float, "double precision"),
            col("f4", TypeKind::Float, "real"),
            col("ok", TypeKind::Bool, "boolean"),
            col("title", TypeKind::Text, "text"),
            col("code", TypeKind::Text, "character(4)"),
            col("uid", TypeKind::Uuid, "uuid"),
            col("at", TypeKind::Timestamptz, "timestamp with time zone"),
            col("local", TypeKind::Timestamp, "timestamp without time zone"),
            col("day", TypeKind::Date, "date"),
            col("doc", TypeKind::Json, "jsonb"),
            col(
                "mood",
                TypeKind::Enum {
                    name: "public.mood".into(),
                    labels: vec!["sad".into(), "ok".into(), "happy".into()],
                },
                "mood",
            ),
            col("tags", TypeKind::Array(Box::new(TypeKind::Text)), "text[]"),
            col("addr", TypeKind::Other("inet".into()), "inet"),
            col("secret", TypeKind::Text, "text"),
        ],
    }
}

fn parse(spec: Value) -> Result<Filter, FilterError> {
    Filter::parse(&spec, &table(), &|c| c != "secret")
}

fn filter(spec: Value) -> Filter {
    parse(spec.clone()).unwrap_or_else(|e| panic!("{spec} parses: {e}"))
}

fn err(spec: Value) -> String {
    match parse(spec.clone()) {
        Ok(_) => panic!("{spec} should be refused"),
        Err(e) => e.to_string(),
    }
}

/// Rows matched among `images`, by index.
fn hits(spec: Value, images: &[Value]) -> Vec<usize> {
    let f = filter(spec);
    (0..images.len())
        .filter(|&i| f.matches(&images[i]))
        .collect()
}

#[test]
fn filters_can_be_shared_across_tasks() {
    fn shareable<T: Clone + std::fmt::Debug + Send + Sync + 'static>() {}
    shareable::<Filter>();
    shareable::<FilterError>();
}

#[test]
fn empty_filter_and_default_match_everything() {
    assert!(filter(json!({})).matches(&json!({"id": 1})));
    assert!(Filter::default().matches(&json!({})));
    assert!(filter(json!({"_and": []})).matches(&json!({})));
    assert!(!filter(json!({"_or": []})).matches(&json!({})));
    assert_eq!(Filter::default().spec(), &json!({}));
}

#[test]
fn unknown_and_hidden_columns_get_the_same_message() {
    let unknown = err(json!({"nope": {"eq": 1}}));
    assert_eq!(
        unknown,
        "unknown column \"nope\" in filter for table public.t"
    );
    // Hidden: refused like a column the table does not have.
    let hidden = parse(json!({"secret": {"eq": "x"}})).unwrap_err();
    let mut without = table();
    without.columns.retain(|c| c.name != "secret");
    let absent = Filter::parse(&json!({"secret": {"eq": "x"}}), &without, &|_| true).unwrap_err();
    assert_eq!(hidden, absent);
    assert_eq!(
        hidden.to_string(),
        "unknown column \"secret\" in filter for table public.t"
    );
    // Also inside combinators.
    assert_eq!(
        parse(json!({"_or": [{"_not": {"secret": {"isNull": true}}}]})).unwrap_err(),
        hidden
    );
}

#[test]
fn malformed_specs_are_refused_with_clear_messages() {
    let cases = [
        (json!([]), "filter must be an object"),
        (
            json!({"id": 1}),
            "column \"id\" in filter needs an object of operators",
        ),
        (json!({"_and": {}}), "_and needs a list"),
        (json!({"_or": [1]}), "filter must be an object"),
        (json!({"_not": []}), "filter must be an object"),
        (
            json!({"id": {"like": "1%"}}),
            "does not apply to column \"id\" of type integer",
        ),
        (
            json!({"id": {"foo": 1}}),
            "unknown filter operator \"foo\" on column \"id\"",
        ),
        (
            json!({"id": {"in": 1}}),
            "\"in\" on column \"id\" needs a list",
        ),
        (json!({"id": {"eq": null}}), "use {\"isNull\": true}"),
        (
            json!({"id": {"in": [1, null]}}),
            "null is not a value for \"in\"",
        ),
        (json!({"id": {"isNull": "yes"}}), "needs true or false"),
        (
            json!({"id": {"eq": "abc"}}),
            "column \"id\" (integer): expected a number",
        ),
        (json!({"id": {"eq": true}}), "expected a number"),
        (json!({"big": {"eq": "1e100000"}}), "out of range"),
        (json!({"f8": {"eq": "1e400"}}), "out of range"),
        (json!({"f4": {"eq": 1e39}}), "out of range"),
        (json!({"ok": {"eq": "true"}}), "expected true or false"),
        (json!({"title": {"eq": 5}}), "expected a string"),
        (
            json!({"title": {"like": "50\\"}}),
            "ends with an escape character",
        ),
        (json!({"title": {"ilike": 5}}), "expected a pattern string"),
        (json!({"uid": {"eq": "not-a-uuid"}}), "expected a uuid"),
        (
            json!({"at": {"gt": "2026-12-01T20:23:47"}}),
            "with a UTC offset",
        ),
        (
            json!({"at": {"gt": "2026-13-01T20:23:47Z"}}),
            "with a UTC offset",
        ),
        (
            json!({"at": {"gt": "10000-01-01T00:00:00Z"}}),
            "years 1 to 9999",
        ),
        (
            json!({"at": {"gt": "2026-12-01T20:23:47+16:00"}}),
            "with a UTC offset",
        ),
        (
            json!({"local": {"gt": "2026-12-01T20:23:47Z"}}),
            "without offset",
        ),
        (json!({"day": {"eq": "2026-12-01T00:00:00"}}), "a date like"),
        (
            json!({"mood": {"eq": "angry"}}),
            "\"angry\" is not a label of mood (expected one of sad, ok, happy)",
        ),
        (json!({"mood": {"like": "s%"}}), "does not apply"),
        (
            json!({"doc": {"lt": 1}}),
            "\"lt\" does not apply to column \"doc\" of type jsonb (it takes eq, neq, in and isNull",
        ),
        (json!({"tags": {"in": [["a"]]}}), "does not apply"),
        (json!({"tags": {"gt": ["a"]}}), "does not apply"),
        (json!({"tags": {"eq": "a"}}), "expected a list"),
        (json!({"tags": {"eq": [["a"]]}}), "expected a string"),
        (json!({"addr": {"gt": "10.0.0.1"}}), "does not apply"),
        (json!({"addr": {"eq": 10}}), "text form as a string"),
    ];
    for (spec, expected) in cases {
        let message = err(spec.clone());
        assert!(
            message.contains(expected),
            "{spec}: {message:?} should contain {expected:?}"
        );
    }
    let mut deep = json!({"id": {"eq": 1}});
    for _ in 0..40 {
        deep = json!({ "_not": deep });
    }
    assert_eq!(err(deep), "filter is nested too deeply (at most 32 levels)");
}

#[test]
fn three_valued_logic_with_nulls() {
    let rows = [
        json!({"id": 1, "title": "a"}),
        json!({"id": 2, "title": null}),
        json!({"id": 3}),
    ];
    // A comparison with NULL is unknown, so neither it nor its negation holds.
    assert_eq!(hits(json!({"title": {"eq": "a"}}), &rows), [0]);
    assert_eq!(
        hits(json!({"title": {"neq": "a"}}), &rows),
        [] as [usize; 0]
    );
    assert_eq!(
        hits(json!({"_not": {"title": {"eq": "a"}}}), &rows),
        [] as [usize; 0]
    );
    assert_eq!(hits(json!({"_not": {"title": {"eq": "b"}}}), &rows), [0]);
    // Unknown OR true is true; unknown AND false is false, NOT that is true.
    assert_eq!(
        hits(
            json!({"_or": [{"title": {"eq": "b"}}, {"id": {"gte": 2}}]}),
            &rows
        ),
        [1, 2]
    );
    assert_eq!(
        hits(
            json!({"_not": {"_and": [{"title": {"eq": "b"}}, {"id": {"eq": 9}}]}}),
            &rows
        ),
        [0, 1, 2]
    );
    assert_eq!(
        hits(
            json!({"_not": {"_or": [{"title": {"eq": "b"}}, {"id": {"eq": 9}}]}}),
            &rows
        ),
        [0]
    );
    // isNull is never unknown; a missing column is NULL.
    assert_eq!(hits(json!({"title": {"isNull": true}}), &rows), [1, 2]);
    assert_eq!(
        hits(json!({"_not": {"title": {"isNull": false}}}), &rows),
        [1, 2]
    );
    // `in`: unknown for NULL, false for an empty list.
    assert_eq!(hits(json!({"title": {"in": ["a", "b"]}}), &rows), [0]);
    assert_eq!(hits(json!({"_not": {"title": {"in": ["b"]}}}), &rows), [0]);
    assert_eq!(
        hits(json!({"_not": {"title": {"in": []}}}), &rows),
        [0, 1, 2]
    );
}

#[test]
fn numbers_compare_exactly_across_forms() {
    let rows = [
        json!({"big": 9007199254740993_i64, "num": "0.1000000000000000000001"}),
        json!({"big": "9007199254740992", "num": 0.1}),
        json!({"big": -5, "num": "-1e-30"}),
        json!({"big": null, "num": "NaN"}),
    ];
    assert_eq!(
        hits(json!({"big": {"eq": 9007199254740993_i64}}), &rows),
        [0]
    );
    assert_eq!(hits(json!({"big": {"eq": "9007199254740992"}}), &rows), [1]);
    assert_eq!(
        hits(json!({"big": {"gt": 9007199254740992_i64}}), &rows),
        [0]
    );
    assert_eq!(hits(json!({"big": {"lt": "-4.5"}}), &rows), [2]);
    assert_eq!(hits(json!({"big": {"in": [-5.0, 1]}}), &rows), [2]);
    assert_eq!(hits(json!({"num": {"gt": 0.1}}), &rows), [0, 3]);
    assert_eq!(hits(json!({"num": {"eq": "0.10"}}), &rows), [1]);
    assert_eq!(hits(json!({"num": {"lt": 0}}), &rows), [2]);
    assert_eq!(hits(json!({"num": {"gt": "Infinity"}}), &rows), [3]);
    assert_eq!(hits(json!({"num": {"eq": "NaN"}}), &rows), [3]);
    // The canonical spec carries exact decimal text.
    assert_eq!(
        filter(json!({"num": {"in": [1.50, "-0012.50e-1"]}})).spec(),
        &json!({"num": {"in": ["1.5", "-1.25"]}})
    );
}

#[test]
fn floats_compare_in_the_columns_precision() {
    let rows = [
        json!({"f8": 9007199254740992.0, "f4": 0.1}),
        json!({"f8": "NaN", "f4": "-Infinity"}),
        json!({"f8": -0.0, "f4": 16777217}),
    ];
    // On float8 the literal is rounded to float8, as Postgres casts it.
    assert_eq!(
        hits(json!({"f8": {"eq": 9007199254740993_i64}}), &rows),
        [0]
    );
    assert_eq!(hits(json!({"f8": {"gt": "1e300"}}), &rows), [1]);
    assert_eq!(hits(json!({"f8": {"eq": 0}}), &rows), [2]);
    // float4: 0.1 means the float4 nearest to 0.1 on both sides.
    assert_eq!(hits(json!({"f4": {"eq": 0.1}}), &rows), [0]);
    assert_eq!(hits(json!({"f4": {"eq": "16777216"}}), &rows), [2]);
    assert_eq!(hits(json!({"f4": {"lt": -3.4e38}}), &rows), [1]);
    assert_eq!(
        filter(json!({"f4": {"eq": 0.1}})).spec(),
        &json!({"f4": {"eq": "0.1"}})
    );
}

#[test]
fn timestamps_compare_instants_across_offsets() {
    let rows = [
        json!({"at": "2026-12-01T20:23:47.123456+00:00", "local": "2026-12-01T20:23:47.5", "day": "2026-12-01"}),
        json!({"at": "2026-12-01T23:23:47.123457+03:00", "local": "2026-12-01T20:23:47", "day": "2026-11-30"}),
        json!({"at": "1850-01-01T17:53:28+05:53:28", "local": "infinity", "day": "0044-03-15 BC"}),
    ];
    assert_eq!(
        hits(
            json!({"at": {"eq": "2026-12-01T15:23:47.123456-05:00"}}),
            &rows
        ),
        [0]
    );
    assert_eq!(
        hits(
            json!({"at": {"gt": "2026-12-01 21:23:47.123456+01"}}),
            &rows
        ),
        [1]
    );
    assert_eq!(
        hits(json!({"at": {"eq": "1850-01-01T12:00:00Z"}}), &rows),
        [2]
    );
    assert_eq!(
        hits(json!({"local": {"gte": "2026-12-01T20:23:47.5"}}), &rows),
        [0, 2]
    );
    assert_eq!(hits(json!({"local": {"lt": "infinity"}}), &rows), [0, 1]);
    assert_eq!(hits(json!({"day": {"lt": "0001-01-01"}}), &rows), [2]);
    assert_eq!(
        hits(json!({"day": {"in": ["2026-11-30", "2026-12-02"]}}), &rows),
        [1]
    );
    assert_eq!(
        filter(json!({"at": {"eq": "2026-12-01T22:23:47+02:00"}})).spec(),
        &json!({"at": {"eq": "2026-12-01T20:23:47.000000+00:00"}})
    );
}

#[test]
fn enums_uuids_bools_and_text() {
    let rows = [
        json!({"mood": "happy", "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "ok": true, "title": "Zebra", "code": "ab  "}),
        json!({"mood": "sad", "uid": "00000000-0000-0000-0000-000000000001", "ok": false, "title": "apple", "code": "ab"}),
        json!({"mood": "ok", "uid": "ffffffff-0000-0000-0000-000000000000", "ok": null, "title": "Äpfel", "code": "b"}),
    ];
    // Declaration order, not alphabetical.
    assert_eq!(hits(json!({"mood": {"gt": "sad"}}), &rows), [0, 2]);
    assert_eq!(hits(json!({"mood": {"lt": "happy"}}), &rows), [1, 2]);
    assert_eq!(
        hits(
            json!({"uid": {"eq": "{A0EEBC999C0B4EF8BB6D6BB9BD380A11}"}}),
            &rows
        ),
        [0]
    );
    assert_eq!(
        hits(
            json!({"uid": {"gt": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"}}),
            &rows
        ),
        [2]
    );
    assert_eq!(hits(json!({"ok": {"lt": true}}), &rows), [1]);
    // Code point order: upper case before lower case before non-ASCII.
    assert_eq!(hits(json!({"title": {"lt": "a"}}), &rows), [0]);
    assert_eq!(hits(json!({"title": {"gt": "z"}}), &rows), [2]);
    // char(n): trailing spaces do not count.
    assert_eq!(hits(json!({"code": {"eq": "ab "}}), &rows), [0, 1]);
    assert_eq!(hits(json!({"code": {"like": "ab"}}), &rows), [0, 1]);
}

#[test]
fn like_and_ilike_with_escapes_and_ascii_folding() {
    let rows = [
        json!({"title": "50% off"}),
        json!({"title": "500 off"}),
        json!({"title": "a_b"}),
        json!({"title": "ÉCOLE école"}),
        json!({"title": "back\\slash"}),
    ];
    assert_eq!(hits(json!({"title": {"like": "50%"}}), &rows), [0, 1]);
    assert_eq!(hits(json!({"title": {"like": "50\\%%"}}), &rows), [0]);
    assert_eq!(hits(json!({"title": {"like": "a\\_b"}}), &rows), [2]);
    assert_eq!(hits(json!({"title": {"like": "_\\__"}}), &rows), [2]);
    assert_eq!(hits(json!({"title": {"like": "%\\\\%"}}), &rows), [4]);
    assert_eq!(hits(json!({"title": {"ilike": "%OFF"}}), &rows), [0, 1]);
    // ASCII only: É is not folded to é.
    assert_eq!(
        hits(json!({"title": {"ilike": "école%"}}), &rows),
        [] as [usize; 0]
    );
    assert_eq!(hits(json!({"title": {"ilike": "%cole écOLE"}}), &rows), [3]);
}

#[test]
fn json_arrays_and_other_types() {
    let rows = [
        json!({"doc": {"a": 1, "b": [true]}, "tags": ["x", null], "addr": "10.0.0.1"}),
        json!({"doc": null, "tags": [], "addr": "10.0.0.2/31"}),
        json!({"doc": [1.0], "tags": ["x"], "addr": null}),
    ];
    assert_eq!(
        hits(json!({"doc": {"eq": {"b": [true], "a": 1.0}}}), &rows),
        [0]
    );
    assert_eq!(hits(json!({"doc": {"in": [[1], "x"]}}), &rows), [2]);
    assert_eq!(hits(json!({"doc": {"neq": [1]}}), &rows), [0]);
    assert_eq!(hits(json!({"doc": {"isNull": true}}), &rows), [1]);
    assert_eq!(hits(json!({"tags": {"eq": ["x", null]}}), &rows), [0]);
    assert_eq!(hits(json!({"tags": {"eq": []}}), &rows), [1]);
    assert_eq!(hits(json!({"tags": {"neq": ["x"]}}), &rows), [0, 1]);
    assert_eq!(
        hits(json!({"addr": {"in": ["10.0.0.2/31", "x"]}}), &rows),
        [1]
    );
    assert_eq!(hits(json!({"addr": {"neq": "10.0.0.1"}}), &rows), [1]);
}

#[test]
fn columns_lists_each_referenced_column_once() {
    let f = filter(json!({
        "id": {"gt": 1},
        "_or": [{"title": {"like": "a%"}}, {"_not": {"id": {"eq": 5}}}, {"mood": {"isNull": true}}]
    }));
    let mut columns = f.columns();
    columns.sort();
    assert_eq!(columns, ["id", "mood", "title"]);
    assert!(Filter::default().columns().is_empty());
}

#[test]
fn column_eq_compares_json_values() {
    let f = Filter::column_eq("user_id", json!("u1"));
    assert!(f.matches(&json!({"user_id": "u1"})));
    assert!(!f.matches(&json!({"user_id": "u2"})));
    assert!(!f.matches(&json!({"user_id": null})));
    assert_eq!(f.columns(), ["user_id"]);
}

/// Every pair of (filter, image) where the filter matches: its probe, if it
/// has one, finds the image's key among its keys; and the probe exists for
/// the equality shapes the hub relies on.
#[test]
fn a_probe_finds_every_image_its_filter_matches() {
    let filters = [
        json!({"id": {"eq": 7}}),
        json!({"num": {"eq": "1.50"}}),
        json!({"num": {"in": [2, "1e2", "NaN"]}}),
        json!({"uid": {"eq": "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"}}),
        json!({"code": {"eq": "ab"}}),
        json!({"title": {"eq": "Ünïcode"}, "id": {"gt": 1}}),
        json!({"ok": {"eq": false}}),
        json!({"mood": {"in": ["ok", "happy"]}}),
        json!({"day": {"eq": "2026-12-01"}}),
        json!({"at": {"eq": "2026-12-01T10:00:00+01:00"}}),
        json!({"addr": {"eq": "10.0.0.1"}}),
    ];
    let images = [
        json!({"id": 7, "num": 1.5, "uid": "a0eebc999c0b4ef8bb6d6bb9bd380a11", "code": "ab  ",
               "title": "Ünïcode", "ok": false, "mood": "happy", "day": "2026-12-01",
               "at": "2026-12-01T09:00:00+00:00", "addr": "10.0.0.1"}),
        json!({"id": "7", "num": "100", "uid": "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
               "code": "ab", "title": "Ünïcode", "ok": false, "mood": "ok"}),
        json!({"id": 8, "num": "NaN", "uid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a12",
               "code": "abc", "title": "unicode", "ok": true, "mood": "sad",
               "day": "2026-12-02", "at": "2026-12-01T10:00:00+00:00", "addr": "10.0.0.2"}),
        json!({"id": null, "num": 1.25}),
    ];
    let mut matched = 0;
    for spec in &filters {
        let f = filter(spec.clone());
        let (probe, keys) = f.probe().unwrap_or_else(|| panic!("{spec} has a probe"));
        for image in &images {
            if f.matches(image) {
                matched += 1;
                let key = probe.key(image);
                assert!(
                    key.is_some_and(|k| keys.contains(&k)),
                    "{spec} matches {image}, its probe must find it"
                );
            }
        }
    }
    assert!(matched >= 12, "the cases exercise matches: {matched}");
}

#[test]
fn filters_without_a_plain_equality_have_no_probe() {
    for spec in [
        json!({}),
        json!({"id": {"gt": 1}}),
        json!({"f8": {"eq": 1.5}}),
        json!({"doc": {"eq": {"a": 1}}}),
        json!({"_or": [{"id": {"eq": 1}}, {"id": {"eq": 2}}]}),
        json!({"_not": {"id": {"eq": 1}}}),
        json!({"id": {"neq": 1}}),
    ] {
        assert!(filter(spec.clone()).probe().is_none(), "{spec}");
    }
}
