//! The outbox's ring of partitions (migrations/V11): prune empties whole
//! partitions whose events all passed the retention and keeps the rest, a
//! cursor from before an emptied partition must resync, writers never wait
//! for a prune (not even one waiting for a reader of the outbox), a
//! transaction that wrote before a rotation and commits after it is still
//! read, and a resume whose snapshot a prune slipped under starts again.

use serde_json::{Value, json};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::helpers::{Protocol, Subscriber, TestApp, WAIT, connect, insert_document, spawn_app};

const RESUME: &str = "subscription($t: String!, $after: String) {
    changes(table: $t, after: $after) { op cursor row old } }";

/// The partition that holds the event of the document titled `title`.
async fn partition_of(app: &TestApp, title: &str) -> String {
    app.admin
        .query_one(
            "select tableoid::regclass::text from herald.events where new_row ->> 'title' = $1",
            &[&title],
        )
        .await
        .unwrap()
        .get(0)
}

async fn events_titled(app: &TestApp, title: &str) -> i64 {
    app.admin
        .query_one(
            "select count(*) from herald.events where new_row ->> 'title' = $1",
            &[&title],
        )
        .await
        .unwrap()
        .get(0)
}

async fn prune(db: &Client, keep: &str) -> i64 {
    tokio::time::timeout(
        WAIT,
        db.query_one(&format!("select herald.prune('{keep}')"), &[]),
    )
    .await
    .expect("prune returns without waiting on anyone for long")
    .unwrap()
    .get(0)
}

/// Makes the current generation old enough to be rotated out by a prune
/// keeping an hour (instead of waiting keep / 7).
async fn age_current_generation(app: &TestApp) {
    app.sql(
        "update herald.outbox_slots set started_at = now() - interval '2 hours'
          where generation is not null",
    )
    .await;
}

async fn cursor(app: &TestApp, user: &str) -> String {
    let state = app.graphql(&app.token(user), "{ cursor }", json!({})).await;
    state["data"]["cursor"].as_str().unwrap().to_owned()
}

fn titles(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            e["row"]["title"]
                .as_str()
                .or(e["old"]["title"].as_str())
                .unwrap_or("?")
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn prune_empties_whole_partitions_past_the_retention_and_keeps_the_rest() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    insert_document(&app, &acme, "a").await;
    let first = partition_of(&app, "a").await;

    // The generation is old enough to rotate, but its events are not: the
    // partition stays, whole.
    age_current_generation(&app).await;
    assert_eq!(prune(&app.admin, "1 hour").await, 0);
    insert_document(&app, &acme, "b").await;
    insert_document(&app, &acme, "b2").await;
    let second = partition_of(&app, "b").await;
    assert_ne!(first, second, "the prune started the next generation");
    assert_eq!(events_titled(&app, "a").await, 1);

    // Once every event of the first partition is past the retention, it is
    // emptied, and its space returned; the second keeps its recent event.
    let in_first: i64 = app
        .admin
        .query_one(&format!("select count(*) from {first}"), &[])
        .await
        .unwrap()
        .get(0);
    app.sql(&format!(
        "update {first} set committed_at = committed_at - interval '2 hours'"
    ))
    .await;
    let newest: String = app
        .admin
        .query_one(&format!("select max(xid)::text from {first}"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(prune(&app.admin, "1 hour").await, in_first);
    assert_eq!(events_titled(&app, "a").await, 0);
    assert_eq!(events_titled(&app, "b").await, 1);
    assert_eq!(events_titled(&app, "b2").await, 1);
    let (heap, total): (i64, i64) = {
        let row = app
            .admin
            .query_one(
                "select pg_relation_size($1::text::regclass),
                        pg_total_relation_size($1::text::regclass)",
                &[&first],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(heap, 0, "{first}'s space is returned");
    assert!(total <= 64 * 1024, "only index metapages remain: {total}");
    let pruned: String = app
        .admin
        .query_one("select pruned_xid::text from herald.retention", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pruned, newest, "the newest removed transaction is recorded");

    // A partition with one event younger than the retention stays whole.
    age_current_generation(&app).await;
    assert_eq!(prune(&app.admin, "1 hour").await, 0, "rotates only");
    insert_document(&app, &acme, "c").await;
    app.sql(&format!(
        "update {second} set committed_at = committed_at - interval '2 hours'
          where new_row ->> 'title' <> 'b'"
    ))
    .await;
    assert_eq!(prune(&app.admin, "1 hour").await, 0);
    assert_eq!(events_titled(&app, "b").await, 1);
    assert_eq!(events_titled(&app, "b2").await, 1);
}

#[tokio::test]
async fn a_cursor_from_before_an_emptied_partition_must_resync_and_a_later_one_resumes() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let before = cursor(&app, &alice).await;
    insert_document(&app, &acme, "missed").await;
    let gone = partition_of(&app, "missed").await;
    assert!(prune(&app.admin, "0 seconds").await >= 1);
    assert_eq!(events_titled(&app, "missed").await, 0, "{gone} was emptied");

    let mut sub = Subscriber::connect(&app, &alice, "alice", Protocol::Transport).await;
    sub.start("old", RESUME, json!({"t": "documents", "after": before}))
        .await;
    let errors = sub.operation_error("old").await;
    assert_eq!(
        errors[0]["extensions"]["code"], "RESYNC_REQUIRED",
        "{errors:?}"
    );

    let after = cursor(&app, &alice).await;
    insert_document(&app, &acme, "kept").await;
    sub.start("new", RESUME, json!({"t": "documents", "after": after}))
        .await;
    assert_eq!(titles(&sub.events("new", 1).await), ["kept"]);
}

#[tokio::test]
async fn writers_never_wait_for_a_prune_even_while_a_reader_holds_the_outbox() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    insert_document(&app, &acme, "old").await;
    let old = partition_of(&app, "old").await;
    age_current_generation(&app).await;
    assert_eq!(prune(&app.admin, "1 hour").await, 0, "rotates only");
    app.sql(&format!(
        "update {old} set committed_at = committed_at - interval '2 hours'"
    ))
    .await;

    // A writer whose transaction stays open (ROW EXCLUSIVE on the outbox and
    // its current partition: dropping a partition would wait for it, and
    // every writer after it), and a reader of the whole outbox (ACCESS SHARE
    // on every partition) that stays open.
    let open_writer = connect(&app.admin_url).await;
    open_writer
        .batch_execute(&format!(
            "begin; insert into documents (tenant_id, title) values ('{acme}', 'open')"
        ))
        .await
        .unwrap();
    let reader = connect(&app.admin_url).await;
    reader
        .batch_execute("begin; select count(*) from herald.events")
        .await
        .unwrap();

    // Writers that would fail rather than wait for a lock more than a second.
    let writers = connect(&app.admin_url).await;
    writers
        .batch_execute("set lock_timeout = '1s'; set statement_timeout = '5s'")
        .await
        .unwrap();
    let write = |title: String| {
        let writers = &writers;
        let acme = &acme;
        async move {
            writers
                .execute(
                    "insert into documents (tenant_id, title) values ($1::text::uuid, $2)",
                    &[acme, &title],
                )
                .await
                .expect("a writer is not held up by the prune");
        }
    };
    let pruner = connect(&app.admin_url).await;
    // The prune gives up on the partition the reader holds (50 ms lock
    // timeout) instead of queueing everyone behind it.
    let (removed, ()) = tokio::join!(prune(&pruner, "1 hour"), async {
        for i in 0..20 {
            write(format!("during {i}")).await;
        }
    });
    assert_eq!(
        removed, 0,
        "the reader's partition is left for the next prune"
    );
    assert_eq!(events_titled(&app, "old").await, 1);

    // The reader gone, the next prune empties it while the writer's
    // transaction is still open, and writers go on.
    reader.batch_execute("rollback").await.unwrap();
    let (removed, ()) = tokio::join!(prune(&pruner, "1 hour"), write("next".to_owned()));
    assert!(removed >= 1);
    assert_eq!(events_titled(&app, "old").await, 0, "{old} was emptied");
    open_writer.batch_execute("commit").await.unwrap();
    assert_eq!(events_titled(&app, "open").await, 1);
    assert_eq!(events_titled(&app, "next").await, 1);
    assert_eq!(events_titled(&app, "during 19").await, 1);
}

#[tokio::test]
async fn a_transaction_that_wrote_before_a_rotation_and_commits_after_it_is_delivered() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let mut sub = Subscriber::connect(&app, &alice, "alice", Protocol::Transport).await;
    sub.start("d", RESUME, json!({"t": "documents"})).await;
    app.wait_for_subscriptions(1).await;

    let late = connect(&app.admin_url).await;
    late.batch_execute(&format!(
        "begin; insert into documents (tenant_id, title) values ('{acme}', 'late')"
    ))
    .await
    .unwrap();
    // Two prunes: the first rotates past the late writer's partition, the
    // second records which transactions that partition may hold (while the
    // writer still holds it, so it is not emptied).
    prune(&app.admin, "0 seconds").await;
    insert_document(&app, &acme, "after rotation").await;
    assert_eq!(
        titles(&sub.events("d", 1).await),
        ["after rotation"],
        "read from the new partition"
    );
    prune(&app.admin, "0 seconds").await;
    late.batch_execute("commit").await.unwrap();
    insert_document(&app, &acme, "sentinel").await;
    assert_eq!(titles(&sub.events("d", 2).await), ["late", "sentinel"]);
}

/// The window `herald.outbox_snapshot` closes: a resume's repeatable-read
/// snapshot is taken as its first statement starts, before that statement
/// locks the outbox. A prune that empties a partition in between would leave
/// the resume seeing the old retention and no events: it must be told.
#[tokio::test]
async fn a_resume_whose_snapshot_a_prune_slipped_under_is_told_to_start_again() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    insert_document(&app, &acme, "old").await;

    let resume = connect(&app.app_url).await;
    resume
        .batch_execute("begin isolation level repeatable read read only; select 1")
        .await
        .unwrap();
    assert!(prune(&app.admin, "0 seconds").await >= 1);
    let refused = resume
        .query_one("select herald.outbox_snapshot()", &[])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(&SqlState::T_R_SERIALIZATION_FAILURE));
    resume.batch_execute("rollback").await.unwrap();

    // Started again (or with nothing pruned in between): the snapshot, and
    // the partitions locked until the transaction ends.
    resume
        .batch_execute("begin isolation level repeatable read read only")
        .await
        .unwrap();
    let snapshot: String = resume
        .query_one("select herald.outbox_snapshot()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(snapshot.contains(':'), "{snapshot}");
    insert_document(&app, &acme, "newer").await;
    app.sql("update herald.outbox_slots set started_at = now() - interval '1 day'")
        .await;
    let pruner = connect(&app.admin_url).await;
    // Rotates, then cannot empty the partition the resume holds.
    assert_eq!(prune(&pruner, "0 seconds").await, 0);
    assert_eq!(events_titled(&app, "newer").await, 1);
    resume.batch_execute("commit").await.unwrap();
    assert!(prune(&pruner, "0 seconds").await >= 1);
}
