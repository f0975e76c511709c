//! The outbox's ring of partitions (migrations/V11): prune empties whole
//! partitions whose events all passed the retention and keeps the rest, a
//! cursor from before an emptied partition must resync, writers never wait
//! for a prune (not even one waiting for a reader of the outbox), a
//! transaction that wrote before a rotation and commits after it is still
//! read, and a resume whose snapshot a prune slipped under starts again.

use serde_json::json;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::helpers::{
    Protocol, Subscriber, TestApp, WAIT, admin_url_for, app_url_for, connect, fresh_database,
    insert_document, spawn_app, titles,
};

const RESUME: &str = "subscription($t: String!, $after: String) {
    changes(table: $t, after: $after) { op cursor row old } }";

/// A migrated database with no pgherald instance, so that no listener
/// holds a batch's snapshot (and the partitions it read) open: prune's
/// TRUNCATE path, which returns the space, is then the only one taken.
struct Bare {
    db: String,
    admin: Client,
    tenant: String,
}

impl Bare {
    async fn new() -> Bare {
        let db = fresh_database().await;
        let admin = connect(&admin_url_for(&db)).await;
        let tenant: String = admin
            .query_one(
                "insert into tenants (name) values ('Acme') returning id::text",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        Bare { db, admin, tenant }
    }

    async fn insert(&self, title: &str) {
        self.admin
            .execute(
                "insert into documents (tenant_id, title) values ($1::text::uuid, $2)",
                &[&self.tenant, &title],
            )
            .await
            .unwrap();
    }

    async fn sql(&self, sql: &str) {
        self.admin
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    async fn partition_of(&self, title: &str) -> String {
        partition_of(&self.admin, title).await
    }

    async fn events_titled(&self, title: &str) -> i64 {
        events_titled(&self.admin, title).await
    }

    async fn heap_size(&self, partition: &str) -> i64 {
        self.admin
            .query_one("select pg_relation_size($1::text::regclass)", &[&partition])
            .await
            .unwrap()
            .get(0)
    }

    /// Makes the current generation old enough to be rotated out by a
    /// prune keeping an hour (instead of waiting keep / 7).
    async fn age_current_generation(&self) {
        self.sql(
            "update herald.outbox_slots set started_at = now() - interval '2 hours'
              where generation is not null",
        )
        .await;
    }
}

/// The partition that holds the event of the document titled `title`.
async fn partition_of(db: &Client, title: &str) -> String {
    db.query_one(
        "select tableoid::regclass::text from herald.events where new_row ->> 'title' = $1",
        &[&title],
    )
    .await
    .unwrap()
    .get(0)
}

async fn events_titled(db: &Client, title: &str) -> i64 {
    db.query_one(
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

async fn cursor(app: &TestApp, user: &str) -> String {
    let state = app.graphql(&app.token(user), "{ cursor }", json!({})).await;
    state["data"]["cursor"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn prune_empties_whole_partitions_past_the_retention_and_keeps_the_rest() {
    let db = Bare::new().await;
    db.insert("a").await;
    let first = db.partition_of("a").await;

    // The generation is old enough to rotate, but its events are not: the
    // partition stays, whole.
    db.age_current_generation().await;
    assert_eq!(prune(&db.admin, "1 hour").await, 0);
    db.insert("b").await;
    db.insert("b2").await;
    let second = db.partition_of("b").await;
    assert_ne!(first, second, "the prune started the next generation");
    assert_eq!(db.events_titled("a").await, 1);

    // Once every event of the first partition is past the retention, it is
    // emptied, and its space returned; the second keeps its recent events.
    let in_first: i64 = db
        .admin
        .query_one(&format!("select count(*) from {first}"), &[])
        .await
        .unwrap()
        .get(0);
    db.sql(&format!(
        "update {first} set committed_at = committed_at - interval '2 hours'"
    ))
    .await;
    let newest: String = db
        .admin
        .query_one(&format!("select max(xid)::text from {first}"), &[])
        .await
        .unwrap()
        .get(0);
    assert!(db.heap_size(&first).await > 0);
    assert_eq!(prune(&db.admin, "1 hour").await, in_first);
    assert_eq!(db.events_titled("a").await, 0);
    assert_eq!(db.events_titled("b").await, 1);
    assert_eq!(db.events_titled("b2").await, 1);
    assert_eq!(db.heap_size(&first).await, 0, "{first}'s space is returned");
    let pruned: String = db
        .admin
        .query_one("select pruned_xid::text from herald.retention", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(pruned, newest, "the newest removed transaction is recorded");

    // A partition with one event younger than the retention stays whole.
    db.age_current_generation().await;
    assert_eq!(prune(&db.admin, "1 hour").await, 0, "rotates only");
    db.insert("c").await;
    db.sql(&format!(
        "update {second} set committed_at = committed_at - interval '2 hours'
          where new_row ->> 'title' <> 'b'"
    ))
    .await;
    assert_eq!(prune(&db.admin, "1 hour").await, 0);
    assert_eq!(db.events_titled("b").await, 1);
    assert_eq!(db.events_titled("b2").await, 1);
}

#[tokio::test]
async fn a_cursor_from_before_an_emptied_partition_must_resync_and_a_later_one_resumes() {
    let app = spawn_app().await;
    let acme = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&acme]).await;
    let before = cursor(&app, &alice).await;
    insert_document(&app, &acme, "missed").await;
    let gone = partition_of(&app.admin, "missed").await;
    assert!(prune(&app.admin, "0 seconds").await >= 1);
    assert_eq!(
        events_titled(&app.admin, "missed").await,
        0,
        "{gone} was emptied"
    );

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
    let db = Bare::new().await;
    db.insert("old").await;
    let old = db.partition_of("old").await;
    db.age_current_generation().await;
    assert_eq!(prune(&db.admin, "1 hour").await, 0, "rotates only");
    db.sql(&format!(
        "update {old} set committed_at = committed_at - interval '2 hours'"
    ))
    .await;
    let in_old: i64 = db
        .admin
        .query_one(&format!("select count(*) from {old}"), &[])
        .await
        .unwrap()
        .get(0);

    // A writer whose transaction stays open (ROW EXCLUSIVE on the outbox and
    // its current partition: dropping a partition would wait for it, and
    // every writer after it), and a reader of the whole outbox (ACCESS SHARE
    // on every partition) that stays open.
    let url = admin_url_for(&db.db);
    let open_writer = connect(&url).await;
    open_writer
        .batch_execute(&format!(
            "begin; insert into documents (tenant_id, title) values ('{}', 'open')",
            db.tenant
        ))
        .await
        .unwrap();
    let reader = connect(&url).await;
    reader
        .batch_execute("begin isolation level repeatable read; select count(*) from herald.events")
        .await
        .unwrap();

    // Writers that would fail rather than wait for a lock more than a second.
    let writers = connect(&url).await;
    writers
        .batch_execute("set lock_timeout = '1s'; set statement_timeout = '5s'")
        .await
        .unwrap();
    let write = |title: String| {
        let writers = &writers;
        let tenant = &db.tenant;
        async move {
            writers
                .execute(
                    "insert into documents (tenant_id, title) values ($1::text::uuid, $2)",
                    &[tenant, &title],
                )
                .await
                .expect("a writer is not held up by the prune");
        }
    };
    let pruner = connect(&url).await;
    // The prune does not get the partition the reader holds (50 ms lock
    // timeout) and deletes its events instead of queueing everyone behind
    // its request; the reader still sees what it saw.
    let (removed, ()) = tokio::join!(prune(&pruner, "1 hour"), async {
        for i in 0..20 {
            write(format!("during {i}")).await;
        }
    });
    assert_eq!(removed, in_old, "the old partition's events");
    assert_eq!(db.events_titled("old").await, 0);
    assert!(db.heap_size(&old).await > 0, "deleted, not truncated");
    let still: i64 = reader
        .query_one(
            &format!("select count(*) from {old} where new_row ->> 'title' = 'old'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(still, 1, "the reader's snapshot keeps it");

    // The reader gone, the next prune returns the partition's space, with
    // the writer's transaction still open, and writers go on.
    reader.batch_execute("rollback").await.unwrap();
    let (removed, ()) = tokio::join!(prune(&pruner, "1 hour"), write("next".to_owned()));
    assert_eq!(removed, 0);
    assert_eq!(db.heap_size(&old).await, 0, "{old}'s space is returned");
    open_writer.batch_execute("commit").await.unwrap();
    assert_eq!(db.events_titled("open").await, 1);
    assert_eq!(db.events_titled("next").await, 1);
    assert_eq!(db.events_titled("during 19").await, 1);
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
    let db = Bare::new().await;
    db.insert("old").await;

    let resume = connect(&app_url_for(&db.db)).await;
    resume
        .batch_execute("begin isolation level repeatable read read only; select 1")
        .await
        .unwrap();
    assert!(prune(&db.admin, "0 seconds").await >= 1);
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
    db.insert("newer").await;
    let newer = db.partition_of("newer").await;
    db.age_current_generation().await;
    // Rotates, then cannot truncate the partition the resume holds: its
    // events are deleted instead, which the resume's snapshot still sees.
    assert_eq!(prune(&db.admin, "0 seconds").await, 1);
    assert_eq!(db.events_titled("newer").await, 0);
    assert!(db.heap_size(&newer).await > 0);
    resume.batch_execute("commit").await.unwrap();
    assert_eq!(prune(&db.admin, "0 seconds").await, 0);
    assert_eq!(db.heap_size(&newer).await, 0);
}
