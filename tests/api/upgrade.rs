//! Upgrading a database migrated by an earlier pgherald: tables tracked
//! before V9 keep capturing exactly what they did; a migration that lands
//! below the newest applied version (two branches' V8 and V9 merged in the
//! other order) is applied late rather than refused.

use pgherald::db::migrate::{apply, core_migrations};
use tokio_postgres::Client;

use crate::helpers::{connect, empty_database};

const HISTORY: &str = "herald.schema_history";

/// A database with pgherald's roles and the core migrations whose version
/// `wanted` accepts, as an earlier pgherald (or another branch) left it;
/// returns its owner URL and a connection.
async fn migrated_to(wanted: impl Fn(i32) -> bool) -> (String, Client) {
    let url = empty_database().await;
    let mut db = connect(&url).await;
    db.batch_execute(include_str!("../../sql/roles.sql"))
        .await
        .unwrap();
    db.batch_execute("create schema herald").await.unwrap();
    let set: Vec<_> = core_migrations()
        .into_iter()
        .filter(|m| wanted(m.version()))
        .collect();
    apply(&mut db, "herald schema", HISTORY, &set)
        .await
        .expect("the older set applies");
    (url, db)
}

async fn history(db: &Client) -> Vec<i32> {
    db.query("select version from herald.schema_history order by 1", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn a_migration_landing_below_the_newest_applied_version_is_applied_late() {
    // V7 missing, V9 applied: as a V8 merged after V9 reached the database.
    let (_, mut db) = migrated_to(|v| v != 7).await;
    let newest = core_migrations().last().unwrap().version();
    assert!(!history(&db).await.contains(&7));
    assert!(history(&db).await.contains(&newest));

    let applied = apply(&mut db, "herald schema", HISTORY, &core_migrations())
        .await
        .expect("the late version applies");
    assert_eq!(applied, 1);
    assert!(history(&db).await.contains(&7));
    let v7: bool = db
        .query_one(
            "select prosrc like '%herald_visible_%' from pg_proc
              where oid = 'herald.authorize(text[], text[], int[], oid[], int[], jsonb[])'::regprocedure",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(v7, "V7's authorizer is installed");

    // Another branch's migration, numbered below every applied one, landing
    // after everything else.
    let mut with_late = core_migrations();
    with_late.push(
        refinery::Migration::unapplied("V0__late_marker", "create table herald.late_marker ()")
            .unwrap(),
    );
    assert_eq!(
        apply(&mut db, "herald schema", HISTORY, &with_late)
            .await
            .unwrap(),
        1
    );
    let marker: bool = db
        .query_one("select to_regclass('herald.late_marker') is not null", &[])
        .await
        .unwrap()
        .get(0);
    assert!(marker);
    assert_eq!(
        apply(&mut db, "herald schema", HISTORY, &with_late)
            .await
            .unwrap(),
        0,
        "applied once"
    );
}

#[tokio::test]
async fn a_table_tracked_before_v9_captures_the_same_events_after_it_and_can_switch_to_relay_mode()
{
    let (url, db) = migrated_to(|v| v <= 7).await;
    // A composite key, to compare how keys are built.
    let changes = "insert into public.things values (1, 'a', 'x');
                   update public.things set v = 'y';
                   delete from public.things;
                   truncate public.things;";
    db.batch_execute(&format!(
        "create table public.things (id int, k text, v text, primary key (k, id));
         select herald.track('public.things');
         {changes}"
    ))
    .await
    .unwrap();

    let applied = pgherald::db::migrate::run(&url, None, None, false)
        .await
        .expect("the upgrade applies");
    assert!(applied >= 1);
    db.batch_execute(changes).await.unwrap();

    let events: Vec<String> = db
        .query(
            "select concat_ws(' | ', relid = 'public.things'::regclass, table_name, op, pk,
                              new_row, old_row)
               from herald.events order by id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(events.len(), 8, "{events:#?}");
    assert_eq!(events[..4], events[4..], "stored alike before and after V9");
    assert_eq!(
        events[0],
        r#"t | public.things | INSERT | {"k": "a", "id": 1} | {"k": "a", "v": "x", "id": 1}"#
    );

    let mode = "select t.relay, p.proname::text from herald.tracked t
                  join pg_trigger g on g.tgrelid = t.relid and g.tgname = 'herald_capture'
                  join pg_proc p on p.oid = g.tgfoid";
    let row = db.query_one(mode, &[]).await.unwrap();
    assert_eq!((row.get(0), row.get(1)), (false, "capture".to_owned()));
    db.batch_execute("select herald.track('public.things', relay => true)")
        .await
        .unwrap();
    let row = db.query_one(mode, &[]).await.unwrap();
    assert_eq!(
        (row.get(0), row.get(1)),
        (true, "capture_relayed".to_owned())
    );
}

#[tokio::test]
async fn events_written_before_the_outbox_was_partitioned_are_kept_and_read_after_it() {
    let (url, db) = migrated_to(|v| v <= 10).await;
    db.batch_execute(
        "create table public.things (id int primary key, v text);
         select herald.track('public.things');
         insert into public.things values (1, 'a'), (2, 'b');
         update public.things set v = 'c' where id = 1;
         delete from public.things where id = 2;",
    )
    .await
    .unwrap();
    let before = stored_events(&db).await;
    assert_eq!(before.len(), 4);

    let applied = pgherald::db::migrate::run(&url, None, None, false)
        .await
        .expect("the upgrade applies");
    assert!(applied >= 1);
    let kind: String = db
        .query_one(
            "select relkind::text from pg_class where oid = 'herald.events'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kind, "p", "partitioned");
    assert_eq!(stored_events(&db).await, before, "moved over, ids and all");
    // Read as the listener reads them, and new events follow them.
    let read: i64 = db
        .query_one(
            "select count(*) from herald.read_events('1:1:', pg_current_snapshot()::text, 0, 100)",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(read, 4);
    db.batch_execute("insert into public.things values (3, 'd')")
        .await
        .unwrap();
    let after = stored_events(&db).await;
    assert_eq!(after[..4], before[..]);
    assert_eq!(after.len(), 5);
    let ids: Vec<i64> = db
        .query("select id from herald.events order by id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(ids[4] > ids[3], "{ids:?}");
}

/// Every stored column of every event, in id order.
async fn stored_events(db: &Client) -> Vec<String> {
    db.query(
        "select concat_ws(' | ', id, xid, relid, table_name, op, pk, new_row, old_row, committed_at)
           from herald.events order by id",
        &[],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}
