//! Filters: the Rust evaluator (`Filter::matches` on `to_jsonb(row)`) and
//! its SQL twin (`herald.filter_predicate`, evaluated by Postgres) decide
//! alike, on random rows of many column types and random filters; and the
//! SQL side refuses what it must.

use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, Utc};
use pgherald::db::catalog::{self, Table};
use pgherald::db::jsonb::Jsonb;
use pgherald::events::filter::{Filter, FilterError};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};
use tokio_postgres::Client;

use crate::helpers::{TestApp, connect, spawn_app};

/// Rows in the table, filters checked against all of them.
const ROWS: usize = 50;
const FILTERS: u32 = 200;
/// Every this many filters, `herald.filter_matches` is checked on each row too.
const MATCHES_EVERY: usize = 10;

const TABLE: &str = "public.filter_probe";

/// How a column's values are generated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gen {
    Int4,
    Int8,
    Numeric,
    /// numeric(30,10): inserted values are rounded, images keep trailing zeros.
    Numeric10,
    Float8,
    Float4,
    Bool,
    Text,
    /// char(4): padded in images, compared without trailing spaces.
    Bpchar,
    Uuid,
    Timestamptz,
    Timestamp,
    Date,
    Json,
    Mood,
    TextArray,
}

/// Column name, SQL type, generator, nullable.
const COLUMNS: &[(&str, &str, Gen, bool)] = &[
    ("i4", "int4", Gen::Int4, false),
    ("i4n", "int4", Gen::Int4, true),
    ("i8", "int8", Gen::Int8, false),
    ("i8n", "int8", Gen::Int8, true),
    ("num", "numeric", Gen::Numeric, false),
    ("numn", "numeric(30,10)", Gen::Numeric10, true),
    ("f8", "float8", Gen::Float8, false),
    ("f8n", "float8", Gen::Float8, true),
    ("f4n", "real", Gen::Float4, true),
    ("b", "bool", Gen::Bool, false),
    ("bn", "bool", Gen::Bool, true),
    ("t", "text", Gen::Text, false),
    ("tn", "text", Gen::Text, true),
    ("vc", "varchar(20)", Gen::Text, false),
    ("vcn", "varchar(20)", Gen::Text, true),
    ("c", "char(4)", Gen::Bpchar, true),
    ("u", "uuid", Gen::Uuid, false),
    ("un", "uuid", Gen::Uuid, true),
    ("tz", "timestamptz", Gen::Timestamptz, false),
    ("tzn", "timestamptz", Gen::Timestamptz, true),
    ("ts", "timestamp", Gen::Timestamp, false),
    ("tsn", "timestamp", Gen::Timestamp, true),
    ("d", "date", Gen::Date, false),
    ("dn", "date", Gen::Date, true),
    ("j", "jsonb", Gen::Json, false),
    ("jn", "jsonb", Gen::Json, true),
    ("js", "json", Gen::Json, true),
    ("e", "public.mood", Gen::Mood, false),
    ("en", "public.mood", Gen::Mood, true),
    ("arr", "text[]", Gen::TextArray, false),
    ("arrn", "text[]", Gen::TextArray, true),
];

/// Columns whose images carry numbers as exact decimal strings (the other
/// number columns keep `to_jsonb`'s JSON numbers), so both forms are read.
const AS_STRINGS: &[&str] = &["num", "numn", "i8n"];

/// A generated value: its SQL input text, and its form as a filter value
/// (`None` when filters cannot express it, e.g. a BC date).
#[derive(Clone, Debug)]
struct Cell {
    sql: String,
    json: Option<Value>,
}

fn cell(sql: impl Into<String>, json: Value) -> Cell {
    Cell {
        sql: sql.into(),
        json: Some(json),
    }
}

const TEXT_ALPHABET: &[&str] = &[
    "a", "A", "b", "z", "Z", "%", "_", "\\", "é", "É", "ß", "日", " ", "'",
];
const MOODS: &[&str] = &["sad", "meh", "ok", "happy"];
const JSONS: &[&str] = &[
    r#"{"a": 1}"#,
    r#"{"a": 1.0}"#,
    r#"{"a": 1, "b": [true, null]}"#,
    r#"{"b": [true, null], "a": 1}"#,
    "[1, 2]",
    "[1.0, 2]",
    r#""x""#,
    r#""é""#,
    "1",
    "1.00",
    "true",
    "null",
    "{}",
    "[]",
];
const UUIDS: &[&str] = &[
    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    "00000000-0000-0000-0000-000000000001",
    "ffffffff-ffff-ffff-ffff-fffffffffffe",
];

fn base_instant() -> DateTime<Utc> {
    "2026-12-01T20:23:47.123456Z".parse().unwrap()
}

/// Offsets timestamptz values are written with (seconds east).
const OFFSETS: &[i32] = &[0, 19_800, -10_800, 50_400, -34_200];

/// Small shifts (microseconds) that make near-equal values.
fn shift() -> BoxedStrategy<i64> {
    prop_oneof![
        Just(0i64),
        -2i64..=2,
        (-3i64..=3).prop_map(|h| h * 3_600_000_000),
        (-40_000i64..40_000).prop_map(|d| d * 86_400_000_000 + 1),
    ]
    .boxed()
}

fn text_of(max: usize) -> BoxedStrategy<String> {
    prop::collection::vec(prop::sample::select(TEXT_ALPHABET), 0..=max)
        .prop_map(|parts| parts.concat())
        .boxed()
}

impl Gen {
    /// Values of this kind, as rows hold them and filters compare with them.
    fn cell(self) -> BoxedStrategy<Cell> {
        match self {
            Gen::Int4 => prop_oneof![-3i32..=3, any::<i32>(), Just(i32::MIN), Just(i32::MAX)]
                .prop_map(|i| cell(i.to_string(), json!(i)))
                .boxed(),
            Gen::Int8 => prop_oneof![
                -3i64..=3,
                any::<i64>(),
                Just(9_007_199_254_740_992),
                Just(9_007_199_254_740_993),
                Just(i64::MIN),
                Just(i64::MAX),
            ]
            .prop_map(|i| cell(i.to_string(), json!(i)))
            .boxed(),
            Gen::Numeric | Gen::Numeric10 => {
                let int_digits = if self == Gen::Numeric { 25 } else { 15 };
                let random = (
                    any::<bool>(),
                    prop::collection::vec(0u8..10, 0..=int_digits),
                    prop::collection::vec(0u8..10, 0..=20),
                )
                    .prop_map(|(neg, int, frac)| {
                        let digits =
                            |d: &[u8]| d.iter().map(|d| char::from(b'0' + d)).collect::<String>();
                        let int = if int.is_empty() {
                            "0".into()
                        } else {
                            digits(&int)
                        };
                        let mut text = format!("{}{int}", if neg { "-" } else { "" });
                        if !frac.is_empty() {
                            text = format!("{text}.{}", digits(&frac));
                        }
                        text
                    });
                prop_oneof![
                    random,
                    prop::sample::select(vec![
                        "0",
                        "-0.000",
                        "1.5",
                        "1.50",
                        "-1.5",
                        "2",
                        "0.1",
                        "9007199254740993",
                        "9007199254740992.9999999999",
                    ])
                    .prop_map(str::to_owned),
                ]
                .prop_map(|t| cell(t.clone(), json!(t)))
                .boxed()
            }
            Gen::Float8 => prop_oneof![
                (-8i32..8).prop_map(|i| f64::from(i) / 4.0),
                prop::sample::select(vec![
                    0.1,
                    -0.0,
                    1e15,
                    9_007_199_254_740_992.0,
                    9_007_199_254_740_994.0,
                    f64::NAN,
                    f64::INFINITY,
                    f64::NEG_INFINITY,
                ]),
            ]
            .prop_map(|x| {
                if x.is_finite() {
                    cell(x.to_string(), json!(x))
                } else {
                    let t = if x.is_nan() {
                        "NaN"
                    } else if x > 0.0 {
                        "Infinity"
                    } else {
                        "-Infinity"
                    };
                    cell(t, json!(t))
                }
            })
            .boxed(),
            Gen::Float4 => prop::sample::select(vec![
                "0.1",
                "0.25",
                "-1.5",
                "16777216",
                "16777217",
                "123456789.123",
                "NaN",
                "0",
            ])
            .prop_map(|t| cell(t, json!(t)))
            .boxed(),
            Gen::Bool => any::<bool>()
                .prop_map(|b| cell(b.to_string(), json!(b)))
                .boxed(),
            Gen::Text => text_of(5).prop_map(|s| cell(s.clone(), json!(s))).boxed(),
            // Each alphabet entry is one character: at most 4 fit char(4).
            Gen::Bpchar => text_of(4).prop_map(|s| cell(s.clone(), json!(s))).boxed(),
            Gen::Uuid => (
                prop_oneof![
                    prop::sample::select(UUIDS).prop_map(str::to_owned),
                    any::<u128>().prop_map(|u| {
                        let h = format!("{u:032x}");
                        format!(
                            "{}-{}-{}-{}-{}",
                            &h[..8],
                            &h[8..12],
                            &h[12..16],
                            &h[16..20],
                            &h[20..]
                        )
                    }),
                ],
                any::<bool>(),
            )
                .prop_map(|(u, upper)| {
                    let u = if upper { u.to_uppercase() } else { u };
                    cell(u.clone(), json!(u))
                })
                .boxed(),
            Gen::Timestamptz => prop_oneof![
                8 => (shift(), prop::sample::select(OFFSETS)).prop_map(|(us, off)| {
                    let at = base_instant() + Duration::microseconds(us);
                    let t = at
                        .with_timezone(&FixedOffset::east_opt(off).unwrap())
                        .format("%Y-%m-%dT%H:%M:%S%.6f%:z")
                        .to_string();
                    cell(t.clone(), json!(t))
                }),
                // Images of old instants carry offsets with seconds (LMT).
                1 => Just(cell("1850-01-01T12:00:00+00:00", json!("1850-01-01T12:00:00Z"))),
                1 => Just(cell("infinity", json!("infinity"))),
            ]
            .boxed(),
            Gen::Timestamp => prop_oneof![
                8 => shift().prop_map(|us| {
                    let at = base_instant().naive_utc() + Duration::microseconds(us);
                    let t = at.format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
                    cell(t.clone(), json!(t))
                }),
                1 => Just(cell("-infinity", json!("-infinity"))),
                1 => Just(Cell { sql: "0044-03-15 10:00:00 BC".into(), json: None }),
            ]
            .boxed(),
            Gen::Date => prop_oneof![
                8 => (-400i64..400).prop_map(|days| {
                    let d = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap() + Duration::days(days);
                    let t = d.format("%Y-%m-%d").to_string();
                    cell(t.clone(), json!(t))
                }),
                1 => Just(cell("infinity", json!("infinity"))),
                1 => Just(Cell { sql: "0044-03-15 BC".into(), json: None }),
            ]
            .boxed(),
            Gen::Json => prop::sample::select(JSONS)
                .prop_map(|t| {
                    let v: Value = serde_json::from_str(t).unwrap();
                    Cell {
                        sql: t.to_owned(),
                        json: (!v.is_null()).then_some(v),
                    }
                })
                .boxed(),
            Gen::Mood => prop::sample::select(MOODS)
                .prop_map(|m| cell(m, json!(m)))
                .boxed(),
            Gen::TextArray => prop::collection::vec(
                prop::option::weighted(
                    0.8,
                    prop::sample::select(vec!["a", "b", "é", "", "a b", "x,y"]),
                ),
                0..3,
            )
            .prop_map(|items| {
                let sql = items
                    .iter()
                    .map(|i| i.map_or("NULL".to_owned(), |s| format!("\"{s}\"")))
                    .collect::<Vec<_>>()
                    .join(",");
                cell(format!("{{{sql}}}"), json!(items))
            })
            .boxed(),
        }
    }

    fn is_text(self) -> bool {
        matches!(self, Gen::Text | Gen::Bpchar)
    }

    fn is_number(self) -> bool {
        matches!(
            self,
            Gen::Int4 | Gen::Int8 | Gen::Numeric | Gen::Numeric10 | Gen::Float8 | Gen::Float4
        )
    }

    fn operators(self) -> &'static [&'static str] {
        match self {
            Gen::Json => &["eq", "neq", "in", "isNull"],
            Gen::TextArray => &["eq", "neq", "isNull"],
            g if g.is_text() => &[
                "eq", "neq", "lt", "lte", "gt", "gte", "in", "isNull", "like", "ilike", "like",
                "ilike",
            ],
            _ => &["eq", "neq", "lt", "lte", "gt", "gte", "in", "isNull"],
        }
    }
}

/// A generated row: `None` cells are NULL.
type Row = Vec<Option<Cell>>;

fn rows() -> impl Strategy<Value = Vec<Row>> {
    let row: Vec<BoxedStrategy<Option<Cell>>> = COLUMNS
        .iter()
        .map(|&(_, _, g, nullable)| {
            if nullable {
                prop::option::weighted(0.7, g.cell()).boxed()
            } else {
                g.cell().prop_map(Some).boxed()
            }
        })
        .collect();
    prop::collection::vec(row, ROWS)
}

/// A LIKE pattern near `s`: characters kept (special ones escaped or not),
/// in the other case, replaced by `_` or `%`, and `%` around; never ending in
/// a lone escape.
fn pattern_near(s: String) -> BoxedStrategy<String> {
    let n = s.chars().count();
    (
        prop::collection::vec(0u8..7, n),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(move |(choices, lead, trail)| {
            let mut p = String::new();
            if lead {
                p.push('%');
            }
            for (c, how) in s.chars().zip(choices) {
                match how {
                    0 => p.push('_'),
                    1 => p.push('%'),
                    2 if matches!(c, '%' | '_' | '\\') => {
                        p.push('\\');
                        p.push(c);
                    }
                    // The other case (non-ASCII too: ilike must not fold it).
                    3 if c.is_lowercase() => p.extend(c.to_uppercase()),
                    3 if c.is_uppercase() => p.extend(c.to_lowercase()),
                    _ => p.push(c),
                }
            }
            if trail {
                p.push('%');
            }
            let escapes = p.chars().rev().take_while(|&c| c == '\\').count();
            if escapes % 2 == 1 {
                p.push('\\');
            }
            p
        })
        .boxed()
}

/// Filter values for column `i`: values from the rows (exact hits) or fresh
/// ones; numbers sometimes as strings.
fn value_for(i: usize, pools: &Arc<Vec<Vec<Value>>>) -> BoxedStrategy<Value> {
    let g = COLUMNS[i].2;
    let fresh = |g: Gen| g.cell().prop_filter_map("expressible", |c| c.json);
    let fresh = if g.is_number() {
        // Numbers of every kind against every number column.
        prop_oneof![
            2 => fresh(g),
            1 => fresh(Gen::Numeric),
            1 => fresh(Gen::Int8),
            1 => fresh(Gen::Float8),
        ]
        .boxed()
    } else {
        fresh(g).boxed()
    };
    let value = if pools[i].is_empty() {
        fresh
    } else {
        prop_oneof![prop::sample::select(pools[i].clone()), fresh].boxed()
    };
    if g.is_number() {
        (value, any::<bool>())
            .prop_map(|(v, as_text)| match v {
                Value::Number(n) if as_text => Value::String(n.to_string()),
                v => v,
            })
            .boxed()
    } else {
        value
    }
}

/// `{column: {op: value, ...}}` with one or two operators.
fn leaf(pools: Arc<Vec<Vec<Value>>>) -> BoxedStrategy<Value> {
    (0..COLUMNS.len())
        .prop_flat_map(move |i| {
            let g = COLUMNS[i].2;
            let op_value = {
                let pools = pools.clone();
                prop::sample::select(g.operators()).prop_flat_map(move |op| {
                    let value = match op {
                        "isNull" => any::<bool>().prop_map(Value::Bool).boxed(),
                        "in" => prop::collection::vec(value_for(i, &pools), 0..4)
                            .prop_map(Value::Array)
                            .boxed(),
                        "like" | "ilike" => value_for(i, &pools)
                            .prop_flat_map(|v| pattern_near(v.as_str().unwrap_or("").to_owned()))
                            .prop_map(Value::String)
                            .boxed(),
                        _ => value_for(i, &pools),
                    };
                    value.prop_map(move |v| (op, v))
                })
            };
            prop::collection::vec(op_value, 1..=2).prop_map(move |ops| {
                let ops: Map<String, Value> =
                    ops.into_iter().map(|(op, v)| (op.to_owned(), v)).collect();
                json!({ COLUMNS[i].0: ops })
            })
        })
        .boxed()
}

fn filters(pools: Arc<Vec<Vec<Value>>>) -> impl Strategy<Value = Value> {
    leaf(pools).prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| json!({"_and": v})),
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| json!({"_or": v})),
            inner.clone().prop_map(|v| json!({"_not": v})),
            // Several keys in one object (ANDed); a repeated key keeps the last.
            prop::collection::vec(inner, 2..4).prop_map(|parts| {
                let mut merged = Map::new();
                for part in parts {
                    if let Value::Object(m) = part {
                        merged.extend(m);
                    }
                }
                Value::Object(merged)
            }),
        ]
    })
}

async fn create_table(app: &TestApp) {
    // Text columns under a collation whose order and case folding differ
    // from code points (where ICU is there): the predicate must not use it.
    let icu = app
        .admin
        .query_opt(
            "select 1 from pg_collation where collname = 'und-x-icu'",
            &[],
        )
        .await
        .unwrap()
        .is_some();
    let columns: String = COLUMNS
        .iter()
        .map(|(name, ty, _, nullable)| {
            let collate = if icu && ty.starts_with("varchar") {
                " collate \"und-x-icu\""
            } else {
                ""
            };
            let null = if *nullable { "" } else { " not null" };
            format!(",\n {name} {ty}{collate}{null}")
        })
        .collect();
    app.sql("create type public.mood as enum ('sad', 'ok', 'happy')")
        .await;
    // Sort order differs from creation order (and from the alphabet).
    app.sql("alter type public.mood add value 'meh' before 'ok'")
        .await;
    app.sql(&format!(
        "create table {TABLE} (id int4 primary key{columns});
         select herald.track('{TABLE}');"
    ))
    .await;
}

async fn insert(app: &TestApp, rows: &[Row]) {
    let casts: Vec<String> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (_, ty, _, _))| format!("${}::text::{ty}", i + 2))
        .collect();
    let names: Vec<&str> = COLUMNS.iter().map(|c| c.0).collect();
    let statement = format!(
        "insert into {TABLE} (id, {}) values ($1, {})",
        names.join(", "),
        casts.join(", ")
    );
    let statement = app.admin.prepare(&statement).await.unwrap();
    for (id, row) in rows.iter().enumerate() {
        let id = id as i32 + 1;
        let texts: Vec<Option<String>> = row
            .iter()
            .map(|c| c.as_ref().map(|c| c.sql.clone()))
            .collect();
        let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&id];
        params.extend(
            texts
                .iter()
                .map(|t| t as &(dyn tokio_postgres::types::ToSql + Sync)),
        );
        app.admin
            .execute(&statement, &params)
            .await
            .unwrap_or_else(|e| panic!("insert {row:?}: {e}"));
    }
}

/// `(id, image)` of every row: `to_jsonb(row)` in a session whose time zone
/// gives odd offsets, some numbers as exact strings.
async fn images(client: &Client) -> Vec<(i32, Value)> {
    client
        .batch_execute("set timezone to 'America/St_Johns'")
        .await
        .unwrap();
    let strings: String = AS_STRINGS
        .iter()
        .map(|c| format!("'{c}', {c}::text"))
        .collect::<Vec<_>>()
        .join(", ");
    client
        .query(
            &format!(
                "select id, to_jsonb(p) || jsonb_build_object({strings}) from {TABLE} p order by id"
            ),
            &[],
        )
        .await
        .unwrap()
        .iter()
        // Read as the service reads images: numbers a float would change kept exact.
        .map(|r| (r.get(0), r.get::<_, Jsonb>(1).0))
        .collect()
}

async fn sql_ids(client: &Client, spec: &Value) -> Result<(String, Vec<i32>), String> {
    let predicate: String = client
        .query_one(
            &format!("select herald.filter_predicate('{TABLE}', $1)"),
            &[spec],
        )
        .await
        .map_err(|e| format!("filter_predicate({spec}): {e:?}"))?
        .get(0);
    let ids = client
        .query(
            &format!("select id from {TABLE} where {predicate} order by id"),
            &[],
        )
        .await
        .map_err(|e| format!("where {predicate}: {e:?}"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok((predicate, ids))
}

async fn table(app: &TestApp) -> Table {
    catalog::load(&app.app.state().pool)
        .await
        .unwrap()
        .resolve(TABLE)
        .unwrap()
        .clone()
}

fn seed() -> u64 {
    std::env::var("PGHERALD_FILTER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_and_sql_filters_decide_alike_on_random_rows_and_filters() {
    let app = spawn_app().await;
    create_table(&app).await;
    let seed = seed();
    let mut runner = TestRunner::new(Config {
        cases: FILTERS,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    });
    let rows = rows().new_tree(&mut runner).unwrap().current();
    insert(&app, &rows).await;
    let table = table(&app).await;
    let client = connect(&app.admin_url).await;
    let images = images(&client).await;
    // Filter values near the data: every expressible value of each column.
    let pools: Vec<Vec<Value>> = (0..COLUMNS.len())
        .map(|i| {
            rows.iter()
                .filter_map(|r| r[i].as_ref()?.json.clone())
                .collect()
        })
        .collect();

    let handle = tokio::runtime::Handle::current();
    // Filters matching no row, some rows, every row.
    let outcomes = std::sync::Mutex::new([0usize; 3]);
    let probes_found = std::sync::atomic::AtomicUsize::new(0);
    let result = runner.run(&filters(Arc::new(pools)), |spec| {
        let mut outcomes = outcomes.lock().unwrap();
        let n: usize = outcomes.iter().sum();
        let with_matches = n % MATCHES_EVERY == 0;
        let (matched, probed) = tokio::task::block_in_place(|| {
            handle.block_on(check(&client, &table, &images, &spec, with_matches))
        })
        .map_err(TestCaseError::fail)?;
        probes_found.fetch_add(usize::from(probed), std::sync::atomic::Ordering::Relaxed);
        outcomes[match matched {
            0 => 0,
            ROWS => 2,
            _ => 1,
        }] += 1;
        Ok(())
    });
    if let Err(e) = result {
        panic!("seed {seed} (rerun with PGHERALD_FILTER_SEED={seed}): {e}");
    }
    let [none, some, all] = outcomes.into_inner().unwrap();
    eprintln!("seed {seed}: {none} filters matched no row, {some} some rows, {all} every row");
    assert!(none + some + all >= FILTERS as usize);
    assert!(
        some >= FILTERS as usize / 4,
        "too few filters tell rows apart ({some}): the generator drifted"
    );
    eprintln!(
        "{} random filters had a probe that found rows",
        probes_found.into_inner()
    );
}

#[tokio::test]
async fn the_probe_of_an_equality_filter_finds_every_row_holding_its_value() {
    let app = spawn_app().await;
    create_table(&app).await;
    let mut runner = TestRunner::new(Config {
        rng_seed: RngSeed::Fixed(seed()),
        ..Config::default()
    });
    let rows = rows().new_tree(&mut runner).unwrap().current();
    insert(&app, &rows).await;
    let table = table(&app).await;
    let images = images(&connect(&app.admin_url).await).await;
    let mut probed = 0;
    for (i, (column, ..)) in COLUMNS.iter().enumerate() {
        for value in rows.iter().filter_map(|r| r[i].as_ref()?.json.clone()) {
            for spec in [
                json!({ *column: { "eq": value } }),
                json!({ *column: { "in": [value] }, "_or": [] , "i4": {"isNull": false} }),
            ] {
                let Ok(filter) = Filter::parse(&spec, &table, &|_| true) else {
                    continue;
                };
                let Some((probe, keys)) = filter.probe() else {
                    continue;
                };
                probed += 1;
                for (id, image) in images.iter().filter(|(_, image)| filter.matches(image)) {
                    assert!(
                        probe.key(image).is_some_and(|k| keys.contains(&k)),
                        "{spec} matches row {id} ({image}), its probe must find it"
                    );
                }
            }
        }
    }
    assert!(probed >= 500, "equality filters with a probe: {probed}");
}

/// One filter: Rust on the images, SQL on the table (canonical and raw
/// spec), its probe (when it has one) on the images it matches, and every
/// so often `herald.filter_matches` on the images. Returns how many rows
/// matched, and whether a probe found some.
async fn check(
    client: &Client,
    table: &Table,
    images: &[(i32, Value)],
    spec: &Value,
    with_matches: bool,
) -> Result<(usize, bool), String> {
    let filter = Filter::parse(spec, table, &|_| true).map_err(|e| format!("{spec}: {e}"))?;
    let rust: Vec<i32> = images
        .iter()
        .filter(|(_, image)| filter.matches(image))
        .map(|(id, _)| *id)
        .collect();
    let (predicate, canonical) = sql_ids(client, filter.spec()).await?;
    let (_, raw) = sql_ids(client, spec).await?;
    let mut problems = String::new();
    if rust != canonical {
        writeln!(problems, "Rust matched {rust:?}, SQL {canonical:?}").unwrap();
    }
    // The hub's index finds a filtered subscription by its probe only: it
    // must find every row the filter matches.
    let probed = filter.probe().map(|(probe, keys)| {
        for (id, image) in images.iter().filter(|(id, _)| rust.contains(id)) {
            if !probe.key(image).is_some_and(|k| keys.contains(&k)) {
                writeln!(
                    problems,
                    "the probe misses row {id}, which the filter matches"
                )
                .unwrap();
            }
        }
    });
    if raw != canonical {
        writeln!(
            problems,
            "SQL on the raw spec matched {raw:?}, on the canonical {canonical:?}"
        )
        .unwrap();
    }
    if with_matches {
        let via_images: Vec<i32> = client
            .query(
                &format!(
                    "select id from {TABLE} p where herald.filter_matches('{TABLE}', $1, to_jsonb(p)) order by id"
                ),
                &[filter.spec()],
            )
            .await
            .map_err(|e| format!("filter_matches: {e:?}"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if via_images != canonical {
            writeln!(
                problems,
                "filter_matches matched {via_images:?}, the table query {canonical:?}"
            )
            .unwrap();
        }
    }
    if problems.is_empty() {
        return Ok((rust.len(), probed.is_some() && !rust.is_empty()));
    }
    let differing: Vec<&Value> = images
        .iter()
        .filter(|(id, _)| rust.contains(id) != canonical.contains(id))
        .map(|(_, image)| image)
        .collect();
    Err(format!(
        "{problems}filter {spec}\ncanonical {}\npredicate {predicate}\nrows that differ: {}",
        filter.spec(),
        serde_json::to_string_pretty(&differing).unwrap()
    ))
}

#[tokio::test]
async fn hidden_columns_are_refused_like_unknown_ones_and_sql_refuses_bad_specs() {
    let app = spawn_app().await;
    create_table(&app).await;
    let table = table(&app).await;

    // A column the caller may not select reads exactly like one the table lacks.
    let spec = json!({"_or": [{"t": {"eq": "x"}}, {"i4": {"gt": 1}}]});
    let hidden = Filter::parse(&spec, &table, &|c| c != "t").unwrap_err();
    let mut without = table.clone();
    without.columns.retain(|c| c.name != "t");
    let absent = Filter::parse(&spec, &without, &|_| true).unwrap_err();
    assert_eq!(hidden, absent);
    assert_eq!(
        hidden,
        FilterError::UnknownColumn {
            column: "t".into(),
            table: TABLE.into()
        }
    );
    assert_eq!(
        hidden.to_string(),
        "unknown column \"t\" in filter for table public.filter_probe"
    );
    assert!(Filter::parse(&spec, &table, &|_| true).is_ok());

    // The SQL twin, as the login role (granted to everyone: it builds text).
    let login = connect(&app.app_url).await;
    let predicate = |spec: Value| {
        let login = &login;
        async move {
            login
                .query_one(
                    &format!("select herald.filter_predicate('{TABLE}', $1)"),
                    &[&spec],
                )
                .await
                .map(|r| r.get::<_, String>(0))
                .map_err(|e| {
                    e.as_db_error()
                        .map_or_else(|| e.to_string(), |d| d.message().to_owned())
                })
        }
    };
    assert_eq!(predicate(json!({})).await.unwrap(), "true");
    assert_eq!(
        predicate(json!({"t": {"eq": "it's"}})).await.unwrap(),
        "((t::text collate \"C\") = 'it''s'::text)"
    );
    for (spec, expected) in [
        (
            json!({"t; drop table x": {"eq": 1}}),
            "unknown column \"t; drop table x\" in filter for table public.filter_probe",
        ),
        (
            json!({"i4": {"eq": "abc"}}),
            "invalid filter value for column \"i4\" (integer): invalid input syntax for type numeric: \"abc\"",
        ),
        (
            json!({"e": {"eq": "angry"}}),
            "invalid input value for enum public.mood: \"angry\"",
        ),
        (
            json!({"i4": {"like": "1%"}}),
            "filter operator \"like\" does not apply to column \"i4\" of type integer",
        ),
        (
            json!({"j": {"gt": 1}}),
            "filter operator \"gt\" does not apply to column \"j\" of type jsonb",
        ),
        (
            json!({"i4": {"foo": 1}}),
            "unknown filter operator \"foo\" on column \"i4\"",
        ),
        (
            json!({"i4": {"in": 1}}),
            "filter operator \"in\" on column \"i4\" needs a list",
        ),
        (json!({"i4": {"eq": null}}), "use {\"isNull\": true}"),
        (
            json!({"t": {"like": "ab\\"}}),
            "ends with an escape character",
        ),
        (json!({"_or": 1}), "_or needs a list of filter objects"),
        (json!([1]), "filter must be an object"),
    ] {
        let message = predicate(spec.clone()).await.unwrap_err();
        assert!(
            message.contains(expected),
            "{spec}: {message:?} should contain {expected:?}"
        );
    }
}
