//! Encode once: subscribers of an event who want the same selection of the
//! same visible row images are sent one rendering, byte for byte (only the
//! operation id differs between their frames), and `/metrics` counts one
//! rendering and the rest shared. Anything that changes what a subscriber may
//! see or asked for (its columns, its selection, aliases, `@include`) gets a
//! rendering of its own, whoever renders first.

use serde_json::{Value, json};

use super::acme;
use crate::helpers::{Protocol, Subscriber, TestApp, insert_document, token_with};

over_both_protocols!(
    subscribers_of_changes_with_the_same_selection_share_one_rendering_byte_for_byte,
    subscribers_of_a_typed_table_with_the_same_selection_share_one_rendering_byte_for_byte,
    subscribers_whose_filters_differ_only_by_variables_share_the_rendering_of_their_selection,
);

/// (renderings done, renderings shared) so far.
async fn renderings(app: &TestApp) -> (u64, u64) {
    (
        app.metric("pgherald_renderings_total").await,
        app.metric("pgherald_renderings_shared_total").await,
    )
}

/// Frame `text` of operation `id` with the id blanked: what subscribers
/// sharing a rendering must receive identically.
fn without_id(text: &str, id: &str) -> String {
    let id = format!("\"id\":\"{id}\"");
    assert_eq!(text.matches(&id).count(), 1, "one {id} in {text}");
    text.replacen(&id, "\"id\":\"\"", 1)
}

/// Subscribes one connection per `(id, user, variables)` to `query`, writes
/// one document in `tenant`, and asserts that every subscriber got the same
/// frame for it but for the operation id, rendered once and shared by the
/// others.
async fn one_rendering_is_shared(
    app: &TestApp,
    tenant: &str,
    p: Protocol,
    query: &str,
    subscriptions: &[(&str, &str, Value)],
) {
    let mut subs = Vec::new();
    for (id, user, variables) in subscriptions {
        let mut sub = Subscriber::connect(app, user, id, p).await;
        sub.start(id, query, variables.clone()).await;
        subs.push(sub);
    }
    app.wait_for_subscriptions(subscriptions.len()).await;
    let (rendered, shared) = renderings(app).await;
    insert_document(app, tenant, "shared").await;
    let mut frames = Vec::new();
    for sub in &mut subs {
        let text = sub.next_text().await;
        frames.push(without_id(&text, &sub.who));
    }
    assert!(frames[0].contains(r#""title":"shared""#), "{}", frames[0]);
    for frame in &frames[1..] {
        assert_eq!(frame, &frames[0], "frames differ beyond their id");
    }
    let others = subscriptions.len() as u64 - 1;
    assert_eq!(
        renderings(app).await,
        (rendered + 1, shared + others),
        "(rendered, shared) after the event"
    );
}

/// Three of alice's subscriptions to `query`, without variables.
async fn alice_thrice(p: Protocol, query: &str) {
    let (app, acme, alice) = acme().await;
    let each = |id| (id, alice.as_str(), json!({}));
    one_rendering_is_shared(
        &app,
        &acme,
        p,
        query,
        &[each("one"), each("two"), each("three")],
    )
    .await;
}

async fn subscribers_of_changes_with_the_same_selection_share_one_rendering_byte_for_byte(
    p: Protocol,
) {
    alice_thrice(
        p,
        r#"subscription { changes(table: "documents") { cursor op table row old committedAt } }"#,
    )
    .await;
}

async fn subscribers_of_a_typed_table_with_the_same_selection_share_one_rendering_byte_for_byte(
    p: Protocol,
) {
    alice_thrice(
        p,
        "subscription { documents { op cursor committedAt initial row { id title body } old { title } } }",
    )
    .await;
}

async fn subscribers_whose_filters_differ_only_by_variables_share_the_rendering_of_their_selection(
    p: Protocol,
) {
    let (app, acme, alice) = acme().await;
    let query = "subscription($f: JSON) { changes(table: \"documents\", filter: $f) { op row } }";
    let filtered = |id, filter: Value| (id, alice.as_str(), json!({ "f": filter }));
    let subscriptions = [
        filtered("eq", json!({"title": {"eq": "shared"}})),
        filtered("in", json!({"title": {"in": ["other", "shared"]}})),
        filtered("all", Value::Null),
    ];
    one_rendering_is_shared(&app, &acme, p, query, &subscriptions).await;
}

/// Images cut to the columns a role may select are new for each subscriber
/// (and each security context): equal content is enough to share.
#[tokio::test]
async fn subscribers_of_different_security_contexts_whose_images_are_cut_alike_share_one_rendering()
{
    let (app, acme, alice) = acme().await;
    let bob = app.user("bob@acme.test", &[&acme]).await;
    app.sql(
        "revoke select on public.documents from app_user;
         grant select (id, tenant_id, title) on public.documents to app_user",
    )
    .await;
    let query = r#"subscription { changes(table: "documents") { op row } }"#;
    let subscriptions = [
        ("alice", alice.as_str(), json!({})),
        ("bob", bob.as_str(), json!({})),
        ("alice-again", alice.as_str(), json!({})),
    ];
    one_rendering_is_shared(&app, &acme, Protocol::Transport, query, &subscriptions).await;
}

#[tokio::test]
async fn subscribers_with_different_fields_aliases_or_included_fields_each_get_their_own_shape() {
    let (app, acme, alice) = acme().await;
    let query = |selection: &str| {
        let variables = match selection.contains("$v") {
            true => "($v: Boolean!)",
            false => "",
        };
        format!("subscription{variables} {{ changes(table: \"documents\") {{ {selection} }} }}")
    };
    let subscriptions = [
        ("plain", query("op row"), true),
        ("fields", query("op table"), true),
        ("aliases", query("kind: op row: old old: row"), true),
        ("included", query("op row @include(if: $v)"), true),
        ("excluded", query("op row @include(if: $v)"), false),
    ];
    let mut sub = Subscriber::connect(&app, &alice, "alice", Protocol::Transport).await;
    for (id, query, v) in &subscriptions {
        sub.start(id, query, json!({"v": v})).await;
    }
    app.wait_for_subscriptions(subscriptions.len()).await;
    let (rendered, shared) = renderings(&app).await;
    insert_document(&app, &acme, "shaped").await;
    let got = sub.collect(&subscriptions.map(|(id, _, _)| (id, 1))).await;

    let keys = |id: &str| -> Vec<String> {
        let event = got[id][0].as_object().unwrap();
        event.keys().cloned().collect()
    };
    assert_eq!(keys("plain"), ["op", "row"]);
    assert_eq!(keys("fields"), ["op", "table"]);
    assert_eq!(keys("aliases"), ["kind", "old", "row"]);
    assert_eq!(keys("included"), ["op", "row"]);
    assert_eq!(keys("excluded"), ["op"]);
    assert_eq!(got["plain"][0]["row"]["title"], "shaped");
    assert_eq!(got["fields"][0]["table"], "public.documents");
    // `row: old` is the old version (none for an insert), `old: row` the new.
    assert_eq!(got["aliases"][0]["kind"], "INSERT");
    assert_eq!(got["aliases"][0]["row"], Value::Null);
    assert_eq!(got["aliases"][0]["old"]["title"], "shaped");
    assert_eq!(got["included"][0], got["plain"][0]);
    // `@include(if: true)` selects what the plain query selects: shared.
    assert_eq!(renderings(&app).await, (rendered + 4, shared + 1));
}

/// A role of the cluster (roles outlive test databases) that may select only
/// `id` and `title` of the test table; tokens may name it.
const NARROW: &str = "pgherald_sharing_narrow";

/// The advisory lock a resumed subscriber's catch-up waits on.
const GATE: i64 = 4251;

/// Who subscribes: the role `app_user`, which may select every column of
/// `notes`, or [`NARROW`], which may select `id` and `title`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Columns {
    All,
    IdAndTitle,
}

impl Columns {
    fn token(self, sub: &str) -> String {
        let role = match self {
            Columns::All => "app_user",
            Columns::IdAndTitle => NARROW,
        };
        token_with(sub, role, 3600)
    }

    /// Asserts that `event`'s new row has exactly these columns.
    fn assert_row(self, event: &Value) {
        let mut got: Vec<&str> = event["row"]
            .as_object()
            .unwrap_or_else(|| panic!("{self:?}: no row in {event}"))
            .keys()
            .map(String::as_str)
            .collect();
        got.sort();
        let want = match self {
            Columns::All => vec!["id", "secret", "title"],
            Columns::IdAndTitle => vec!["id", "title"],
        };
        assert_eq!(got, want, "{self:?} got {event}");
    }
}

/// `public.notes (id, title, secret)`, tracked, readable in full by
/// `app_user` and in part by [`NARROW`]; its policy waits for [`GATE`] on
/// the row titled `gate` (reading it, not authorizing other rows' events).
async fn notes(app: &TestApp) {
    app.sql(&format!(
        "do $$ begin
           begin create role {NARROW} nologin;
           exception when duplicate_object or unique_violation then null; end;
           if not pg_has_role('herald_authenticator', '{NARROW}', 'member') then
             begin grant {NARROW} to herald_authenticator;
             exception when duplicate_object or unique_violation then null; end;
           end if;
         end $$;
         create table public.notes (id int primary key, title text not null, secret text);
         create function public.gate(title text) returns boolean language plpgsql as $f$
           begin
             if title = 'gate' then perform pg_advisory_xact_lock_shared({GATE}); end if;
             return true;
           end $f$;
         alter table public.notes enable row level security;
         create policy notes_gated on public.notes for select using (public.gate(title));
         grant select on public.notes to app_user;
         grant select (id, title) on public.notes to {NARROW};
         select herald.track('public.notes');"
    ))
    .await;
    app.wait_for_tracked("public.notes").await;
}

/// Both subscribe to `notes` with the same query. `first` renders the shared
/// event first: `second` resumes from a cursor, and its catch-up is held on
/// the gate while the event is delivered, so its stream only reaches the
/// event once `first` has rendered it.
async fn each_role_gets_its_own_columns_whoever_renders_first(first: Columns, second: Columns) {
    let app = crate::helpers::spawn_app().await;
    notes(&app).await;
    let query =
        "subscription($after: String) { changes(table: \"notes\", after: $after) { op row old } }";
    let mut early =
        Subscriber::with_token(&app, &first.token("early"), "early", Protocol::Transport).await;
    early.start("n", query, json!({"after": null})).await;
    app.wait_for_subscriptions(1).await;
    let late_token = second.token("late");
    let cursor = app.graphql(&late_token, "{ cursor }", json!({})).await;
    let cursor = cursor["data"]["cursor"]
        .as_str()
        .expect("a cursor")
        .to_owned();

    app.sql("insert into public.notes values (1, 'gate', 'first secret')")
        .await;
    first.assert_row(&early.next_event("n").await);
    app.sql(&format!("select pg_advisory_lock({GATE})")).await;
    let mut late = Subscriber::with_token(&app, &late_token, "late", Protocol::Transport).await;
    late.start("n", query, json!({"after": cursor})).await;
    app.wait_for_lock_waiters(GATE, 1).await;
    app.wait_for_subscriptions(2).await;

    let (rendered, shared) = renderings(&app).await;
    app.sql("insert into public.notes values (2, 'shared', 'second secret')")
        .await;
    let event = early.next_event("n").await;
    assert_eq!(event["row"]["title"], "shared", "{event}");
    first.assert_row(&event);
    app.sql(&format!("select pg_advisory_unlock({GATE})")).await;

    let got = late.events("n", 2).await;
    assert_eq!(got[0]["row"]["title"], "gate", "caught up first: {got:?}");
    assert_eq!(got[1]["row"]["title"], "shared", "then live: {got:?}");
    for event in &got {
        second.assert_row(event);
    }
    // The event was rendered once per set of columns; nothing was shared.
    assert_eq!(renderings(&app).await, (rendered + 3, shared));
}

#[tokio::test]
async fn a_role_that_may_select_fewer_columns_never_gets_a_rendering_made_for_more() {
    each_role_gets_its_own_columns_whoever_renders_first(Columns::All, Columns::IdAndTitle).await;
}

#[tokio::test]
async fn a_role_that_may_select_more_columns_never_gets_a_rendering_made_for_fewer() {
    each_role_gets_its_own_columns_whoever_renders_first(Columns::IdAndTitle, Columns::All).await;
}

/// A subscription keeps the schema it started with: after a column's type
/// changes, the same selection renders the same row image differently for a
/// subscriber of the old schema and one of the new, so neither gets the
/// other's rendering.
#[tokio::test]
async fn subscribers_of_two_schema_generations_each_get_their_schemas_rendering() {
    let (app, _, alice) = acme().await;
    app.sql(
        "create table public.labels (id int primary key, v int);
         grant select on public.labels to app_user;
         select herald.track('public.labels')",
    )
    .await;
    app.wait_for_tracked("public.labels").await;
    let query = "subscription { labels { row { v } } }";
    let mut old = Subscriber::connect(&app, &alice, "old", Protocol::Transport).await;
    old.start("l", query, json!({})).await;
    app.wait_for_subscriptions(1).await;
    app.sql("alter table public.labels alter column v type bigint")
        .await;
    app.wait_for_schema("type labels.v as bigint", |a| {
        let catalog = a.app.state().schema.catalog();
        let labels = catalog.resolve("public.labels").expect("tracked");
        labels
            .columns
            .iter()
            .any(|c| c.name == "v" && c.sql_type == "bigint")
    })
    .await;
    let mut new = Subscriber::connect(&app, &alice, "new", Protocol::Transport).await;
    new.start("l", query, json!({})).await;
    app.wait_for_subscriptions(2).await;

    app.sql("insert into public.labels values (1, 7)").await;
    // Int is a JSON number; BigInt, a string of digits.
    assert_eq!(old.next_event("l").await, json!({"row": {"v": 7}}));
    assert_eq!(new.next_event("l").await, json!({"row": {"v": "7"}}));
}
