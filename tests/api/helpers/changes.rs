//! What `changes` subscribers are expected to see: documents written with
//! plain SQL, their stored images, and `(op, row title, old title)` summaries
//! of change events for exact comparisons.

use serde_json::Value;

use super::TestApp;

/// `(op, row title, old title)` of one change; a missing image has no title.
pub type Summary = (String, Option<String>, Option<String>);

/// Inserts a document with plain SQL; returns its id.
pub async fn insert_document(app: &TestApp, tenant: &str, title: &str) -> String {
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
pub async fn document_image(app: &TestApp, id: &str) -> Value {
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
pub fn title_of(change: &Value) -> &str {
    let image = if change["row"].is_null() {
        &change["old"]
    } else {
        &change["row"]
    };
    image["title"].as_str().unwrap_or("<no title>")
}

/// The title of each change's version ([`title_of`]).
pub fn titles(changes: &[Value]) -> Vec<String> {
    changes.iter().map(|c| title_of(c).to_owned()).collect()
}

/// The [`Summary`] of each change.
pub fn summary(changes: &[Value]) -> Vec<Summary> {
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

/// Shorthand for an expected [`Summary`].
pub fn s(op: &str, row: Option<&str>, old: Option<&str>) -> Summary {
    (
        op.to_owned(),
        row.map(str::to_owned),
        old.map(str::to_owned),
    )
}
