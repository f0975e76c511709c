//! A page's moments in one flight: each judged in its own snapshot, and a
//! snapshot that can no longer be imported costs its own moment a judgement
//! now (counted), nothing else, and leaves the connection usable and outside
//! any transaction (src/db/flight.rs).

use std::sync::Arc;

use pgherald::auth::Caller;
use pgherald::db::as_of::{self, AsOf, HeldSnapshot};
use pgherald::db::authorizer::{Check, Isolation, Moment, Verdicts};
use serde_json::json;
use tokio_postgres::Client;

use super::Fixture;
use crate::helpers::hold_snapshot;

/// Makes the notes policy read `public.members`: the caller ("me") sees
/// another's note while a member, as of the moment judged.
async fn notes_for_members(f: &Fixture) {
    f.sql(&format!(
        "create table public.members (who text primary key);
         grant select on public.members to {role};
         create policy members on public.notes for select
           using (exists (select 1 from public.members m
                           where m.who = current_setting('request.jwt.claims', true)::jsonb ->> 'sub'))",
        role = f.role
    ))
    .await;
}

/// Holds a snapshot of the database as it is now, until the returned
/// connection commits or is dropped (exported when first judged in).
async fn hold(f: &Fixture) -> (Arc<Client>, HeldSnapshot) {
    hold_snapshot(&f.app.app_url).await
}

/// One call for a note of "other" checked as of each of `moments`.
async fn judge_at(f: &mut Fixture, moments: &[Moment], as_of: &AsOf) -> Verdicts {
    let image = Arc::new(json!({"id": 1, "owner": "other", "secret": "s"}));
    let caller = Caller::new(f.role.clone(), json!({"sub": "me", "role": f.role}), None);
    let checks: Vec<Check> = moments
        .iter()
        .map(|&moment| Check {
            context: 0,
            relid: f.relid,
            image: image.clone(),
            moment,
        })
        .collect();
    as_of::authorize_at(
        &mut f.client,
        &[&caller],
        &checks,
        as_of,
        Isolation::OnError,
    )
    .await
    .expect("the page is authorized")
}

/// The connection answers (it is in no aborted transaction) and runs each
/// query in a transaction of its own (it is in no open one: two statements
/// get two transaction ids).
async fn assert_outside_any_transaction(client: &Client) {
    let mut ids = Vec::new();
    for _ in 0..2 {
        let row = client
            .query_one("select pg_current_xact_id()::text", &[])
            .await
            .expect("the connection is usable: no aborted transaction left");
        ids.push(row.get::<_, String>(0));
    }
    assert_ne!(ids[0], ids[1], "no transaction left open");
}

#[tokio::test]
async fn each_moment_of_a_page_is_judged_in_its_own_snapshot() {
    let mut f = Fixture::new().await;
    notes_for_members(&f).await;
    let (_start, before) = hold(&f).await;
    f.sql("insert into public.members values ('me')").await;
    let (_end, after) = hold(&f).await;
    f.sql("delete from public.members").await;

    let as_of = AsOf {
        before: Some(before),
        after: Some(after),
        versions: None,
    };
    let v = judge_at(
        &mut f,
        &[Moment::Before, Moment::After, Moment::Now],
        &as_of,
    )
    .await;
    assert_eq!(
        (v.visible(0), v.visible(1), v.visible(2)),
        (false, true, false),
        "not a member at the start, a member at the end, not now"
    );
    assert_eq!(v.fell_back, 0);
    assert_outside_any_transaction(&f.client).await;
    f.finish().await;
}

#[tokio::test]
async fn a_snapshot_gone_is_judged_now_and_leaves_the_connection_outside_any_transaction() {
    let mut f = Fixture::new().await;
    notes_for_members(&f).await;
    f.sql("insert into public.members values ('me')").await;
    let (start, before) = hold(&f).await;
    f.sql("delete from public.members").await;
    // As the listener releases a hold: closed, then its transaction ends.
    before.close().await;
    start.batch_execute("commit").await.unwrap();

    let as_of = AsOf {
        before: Some(before),
        after: None,
        versions: None,
    };
    let v = judge_at(&mut f, &[Moment::Before], &as_of).await;
    assert!(
        !v.visible(0),
        "judged now (no longer a member), not as of the lost snapshot"
    );
    assert_eq!(v.fell_back, 1, "the fallback is counted");
    assert_outside_any_transaction(&f.client).await;
    assert!(!f.sees("other").await, "and the connection works on");
    f.finish().await;
}

#[tokio::test]
async fn a_snapshot_gone_in_a_flight_of_two_moments_costs_only_its_own_moment() {
    let mut f = Fixture::new().await;
    notes_for_members(&f).await;
    f.sql("insert into public.members values ('me')").await;
    let (start, before) = hold(&f).await;
    let (_end, after) = hold(&f).await;
    f.sql("delete from public.members").await;
    // Exported, then its transaction ended: the import fails.
    assert!(before.id().await.is_some());
    start.batch_execute("commit").await.unwrap();

    let as_of = AsOf {
        before: Some(before),
        after: Some(after),
        versions: None,
    };
    let v = judge_at(&mut f, &[Moment::Before, Moment::After], &as_of).await;
    assert_eq!(
        (v.visible(0), v.visible(1)),
        (false, true),
        "the start judged now (no longer a member), the end still as of its snapshot (a member)"
    );
    assert_eq!(v.fell_back, 1);
    assert_outside_any_transaction(&f.client).await;
    f.finish().await;
}
