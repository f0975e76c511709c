//! The hub as a registry, driven without Postgres: a stand-in authorizer lets
//! a user see the rows whose `owner` is its `sub`, fails the context of user
//! `mallory` (as a dropped role would), and records at which moment each
//! image was asked about.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::*;
use crate::auth::Caller;
use crate::db::as_of::{AsOf, ExportedSnapshot, Moment};
use crate::db::authorizer::{Authorize, Check, ContextFailure, Isolation, Verdicts};
use crate::events::filter::Filter;
use crate::events::{Op, OpSet};

/// Visible when the image's `owner` is the caller's `sub`; every column
/// selectable but `secret`; `mallory`'s context fails. Records each check's
/// image title and moment, and the snapshots the moments stood for.
#[derive(Default)]
struct OwnerSees {
    asked: Mutex<Vec<(Value, Moment)>>,
    as_of: Mutex<Vec<AsOf>>,
}

impl Authorize for OwnerSees {
    fn authorize<'a>(
        &'a self,
        contexts: &'a [&'a Caller],
        checks: &'a [Check],
        as_of: &'a AsOf,
        _isolation: Isolation,
    ) -> BoxFuture<'a, Result<Verdicts, DbError>> {
        self.asked.lock().unwrap().extend(checks.iter().map(|c| {
            (
                c.image.get("title").cloned().unwrap_or(Value::Null),
                c.moment,
            )
        }));
        self.as_of.lock().unwrap().push(as_of.clone());
        let visible = checks
            .iter()
            .map(|c| c.image.get("owner").and_then(Value::as_str) == contexts[c.context].sub())
            .collect();
        let columns: HashMap<(usize, u32), Arc<[String]>> = checks
            .iter()
            .map(|c| {
                (
                    (c.context, c.relid),
                    Arc::from(["id".to_owned(), "owner".to_owned()]),
                )
            })
            .collect();
        let mut verdicts = Verdicts::from_parts(visible, columns);
        for (i, c) in contexts.iter().enumerate() {
            if c.sub() == Some("mallory") {
                verdicts = verdicts.with_failure(i, ContextFailure::Role);
            }
        }
        Box::pin(std::future::ready(Ok(verdicts)))
    }
}

const TABLE: u32 = 7;

fn hub(capacity: usize) -> Arc<Hub> {
    let hub = Hub::new(Arc::new(OwnerSees::default()), capacity);
    hub.start_at("10:10:".parse().unwrap());
    hub
}

fn caller(sub: &str) -> Arc<Caller> {
    Arc::new(Caller::new("app_user".into(), json!({"sub": sub}), None))
}

fn interest(sub: &str, ops: OpSet) -> Interest {
    Interest {
        relid: TABLE,
        ops,
        filter: Filter::default(),
        caller: caller(sub),
    }
}

fn event(id: i64, op: Op, new: Option<Value>, old: Option<Value>) -> Arc<Event> {
    Arc::new(Event {
        id,
        xid: 10,
        relid: TABLE,
        table: "public.t".into(),
        op,
        new_row: new.map(Arc::new),
        old_row: old.map(Arc::new),
        committed_at: chrono::Utc::now(),
    })
}

fn row(id: i64, owner: &str) -> Option<Value> {
    Some(json!({"id": id, "owner": owner, "secret": "s"}))
}

/// Dispatches `events` as one batch.
async fn dispatch(hub: &Hub, events: &[Arc<Event>]) -> DispatchStats {
    let high: Snapshot = "11:11:".parse().unwrap();
    let bounds = Arc::new(Bounds {
        low: "10:10:".parse().unwrap(),
        high: high.clone(),
    });
    let epoch = hub.begin_batch(&high);
    hub.dispatch(
        events,
        &bounds,
        &AsOf::default(),
        epoch,
        Isolation::OnError,
        true,
    )
    .await
    .unwrap()
}

fn drain(registration: &mut Registration) -> Vec<(Op, Option<Value>, Option<Value>)> {
    let mut out = Vec::new();
    while let Some(d) = registration.queue.try_recv() {
        out.push((
            d.event.op,
            d.row.map(|r| (*r).clone()),
            d.old.map(|r| (*r).clone()),
        ));
    }
    out
}

#[tokio::test]
async fn each_subscriber_gets_the_versions_it_may_see_restricted_to_its_columns() {
    let hub = hub(16);
    let mut alice = hub.register(interest("alice", OpSet::ALL)).unwrap();
    let mut bob = hub
        .register(interest("bob", OpSet::of([Op::Insert])))
        .unwrap();
    let stats = dispatch(
        &hub,
        &[
            event(1, Op::Insert, row(1, "alice"), None),
            event(2, Op::Insert, row(2, "bob"), None),
            // Moves from alice to bob: alice sees it leave, bob (inserts only) nothing.
            event(3, Op::Update, row(1, "bob"), row(1, "alice")),
        ],
    )
    .await;
    assert_eq!(stats.contexts, 2);
    assert_eq!(
        drain(&mut alice),
        [
            (Op::Insert, Some(json!({"id": 1, "owner": "alice"})), None),
            (Op::Update, None, Some(json!({"id": 1, "owner": "alice"}))),
        ]
    );
    assert_eq!(
        drain(&mut bob),
        [(Op::Insert, Some(json!({"id": 2, "owner": "bob"})), None)]
    );
}

#[tokio::test]
async fn a_full_queue_ends_the_subscription_after_an_exact_prefix() {
    let hub = hub(2);
    let mut alice = hub.register(interest("alice", OpSet::ALL)).unwrap();
    let events: Vec<_> = (1..=4)
        .map(|i| event(i, Op::Insert, row(i, "alice"), None))
        .collect();
    let stats = dispatch(&hub, &events).await;
    assert_eq!(stats.overflowed, 1);
    let got: Vec<Value> = drain(&mut alice)
        .into_iter()
        .map(|(_, r, _)| r.unwrap()["id"].clone())
        .collect();
    assert_eq!(got, [json!(1), json!(2)]);
    assert_eq!(alice.ended.get(), Some(&EndReason::SlowConsumer));
    assert_eq!(hub.subscription_count(), 0);
}

#[tokio::test]
async fn truncate_reaches_every_subscriber_of_the_table_and_closing_a_table_ends_them() {
    let hub = hub(16);
    let mut alice = hub.register(interest("alice", OpSet::ALL)).unwrap();
    let mut inserts_only = hub
        .register(interest("bob", OpSet::of([Op::Insert])))
        .unwrap();
    dispatch(&hub, &[event(1, Op::Truncate, None, None)]).await;
    assert_eq!(drain(&mut alice), [(Op::Truncate, None, None)]);
    assert_eq!(drain(&mut inserts_only), []);

    hub.close_table(TABLE);
    assert_eq!(alice.ended.get(), Some(&EndReason::TableGone));
    assert_eq!(hub.subscription_count(), 0);
    assert!(alice.queue.recv().await.is_none(), "the queue is closed");
}

#[tokio::test]
async fn a_subscription_receives_only_batches_begun_after_it_joined() {
    let hub = hub(16);
    let high: Snapshot = "11:11:".parse().unwrap();
    let epoch = hub.begin_batch(&high);
    let mut alice = hub.register(interest("alice", OpSet::ALL)).unwrap();
    let bounds = Arc::new(Bounds {
        low: "10:10:".parse().unwrap(),
        high,
    });
    hub.dispatch(
        &[event(1, Op::Insert, row(1, "alice"), None)],
        &bounds,
        &AsOf::default(),
        epoch,
        Isolation::OnError,
        true,
    )
    .await
    .unwrap();
    assert_eq!(drain(&mut alice), []);
    assert_eq!(alice.position, "11:11:".parse().unwrap());
}

#[tokio::test]
async fn a_failed_context_ends_only_its_own_subscriptions_with_none_of_the_page() {
    let hub = hub(16);
    let mut alice = hub.register(interest("alice", OpSet::ALL)).unwrap();
    let mut mallory = hub.register(interest("mallory", OpSet::ALL)).unwrap();
    let mut mallory_inserts = hub
        .register(interest("mallory", OpSet::of([Op::Insert])))
        .unwrap();
    let stats = dispatch(
        &hub,
        &[
            event(1, Op::Insert, row(1, "mallory"), None),
            event(2, Op::Insert, row(2, "alice"), None),
            // Needs no verdict, but mallory's page failed: not delivered either.
            event(3, Op::Truncate, None, None),
        ],
    )
    .await;
    assert_eq!(stats.contexts_failed, 1);
    assert_eq!(stats.context_ended, 2);
    assert_eq!(
        drain(&mut alice),
        [
            (Op::Insert, Some(json!({"id": 2, "owner": "alice"})), None),
            (Op::Truncate, None, None),
        ]
    );
    for sub in [&mut mallory, &mut mallory_inserts] {
        assert_eq!(drain(sub), []);
        assert_eq!(
            sub.ended.get(),
            Some(&EndReason::ContextFailed(ContextFailure::Role))
        );
        assert!(sub.queue.recv().await.is_none(), "the queue is closed");
    }
    assert_eq!(hub.subscription_count(), 1);
    let counted = hub.authorizer_stats();
    assert_eq!(
        counted
            .contexts_failed
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert_eq!(
        counted
            .subscriptions_ended
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

fn titled(id: i64, owner: &str, title: &str) -> Option<Value> {
    Some(json!({"id": id, "owner": owner, "title": title}))
}

#[tokio::test]
async fn live_old_images_are_judged_before_the_batch_and_new_ones_after_it() {
    let authorizer = Arc::new(OwnerSees::default());
    let hub = Hub::new(authorizer.clone(), 16);
    hub.start_at("10:10:".parse().unwrap());
    let mut alice = hub.register(interest("alice", OpSet::ALL)).unwrap();
    let high: Snapshot = "11:11:".parse().unwrap();
    let bounds = Arc::new(Bounds {
        low: "10:10:".parse().unwrap(),
        high: high.clone(),
    });
    let as_of = AsOf {
        before: ExportedSnapshot::parse("00000003-0000001B-1").map(Into::into),
        after: ExportedSnapshot::parse("00000004-0000001C-1").map(Into::into),
        versions: None,
    };
    let epoch = hub.begin_batch(&high);
    // Every image distinct, so that each is asked about once.
    let events = [
        event(1, Op::Insert, titled(1, "alice", "inserted"), None),
        event(
            2,
            Op::Update,
            titled(2, "alice", "updated to"),
            titled(2, "alice", "updated from"),
        ),
        event(3, Op::Delete, None, titled(3, "alice", "deleted")),
    ];
    hub.dispatch(&events, &bounds, &as_of, epoch, Isolation::OnError, true)
        .await
        .unwrap();
    assert_eq!(drain(&mut alice).len(), 3);
    let mut asked = authorizer.asked.lock().unwrap().clone();
    asked.sort_by_key(|(title, _)| title.to_string());
    assert_eq!(
        asked,
        [
            (json!("deleted"), Moment::Before),
            (json!("inserted"), Moment::After),
            (json!("updated from"), Moment::Before),
            (json!("updated to"), Moment::After),
        ]
    );
    let forwarded = authorizer.as_of.lock().unwrap().clone();
    assert_eq!(forwarded.len(), 1, "one authorizer call per page");
    for moment in [Moment::Before, Moment::After] {
        assert_eq!(
            forwarded[0].exported(moment).await,
            as_of.exported(moment).await
        );
    }
}

/// A subscription filtered on `owner`.
fn filtered(sub: &str, spec: Value) -> Interest {
    use crate::db::catalog::{Column, Table, TypeKind};
    let column = |name: &str, kind: TypeKind, sql_type: &str| Column {
        name: name.into(),
        kind,
        sql_type: sql_type.into(),
        not_null: false,
    };
    let table = Table {
        relid: TABLE,
        schema: "public".into(),
        name: "t".into(),
        qualified: "public.t".into(),
        primary_key: vec!["id".into()],
        columns: vec![
            column("id", TypeKind::Int, "integer"),
            column("owner", TypeKind::Text, "text"),
        ],
    };
    Interest {
        filter: Filter::parse(&spec, &table, &|_| true).unwrap(),
        ..interest(sub, OpSet::ALL)
    }
}

#[tokio::test]
async fn a_filtered_subscription_is_found_by_the_value_of_either_version_once() {
    let hub = hub(16);
    let mut alice = hub
        .register(filtered("alice", json!({"owner": {"eq": "alice"}})))
        .unwrap();
    let mut bob = hub
        .register(filtered("bob", json!({"owner": {"in": ["bob", "carol"]}})))
        .unwrap();
    let mut carol = hub.register(interest("carol", OpSet::ALL)).unwrap();
    dispatch(
        &hub,
        &[
            event(1, Op::Insert, row(1, "alice"), None),
            // Leaves alice's filter (found by its old version), enters bob's
            // (found by its new one).
            event(2, Op::Update, row(1, "bob"), row(1, "alice")),
            // Both versions hold one of bob's values: found once.
            event(3, Op::Update, row(1, "carol"), row(1, "bob")),
        ],
    )
    .await;
    let r = |owner: &str| Some(json!({"id": 1, "owner": owner}));
    assert_eq!(
        drain(&mut alice),
        [
            (Op::Insert, r("alice"), None),
            (Op::Update, None, r("alice"))
        ]
    );
    assert_eq!(
        drain(&mut bob),
        [(Op::Update, r("bob"), None), (Op::Update, None, r("bob"))]
    );
    assert_eq!(drain(&mut carol), [(Op::Update, r("carol"), None)]);
}

#[tokio::test]
async fn only_contexts_every_event_concerns_have_their_keys_computed_ahead() {
    let hub = hub(8);
    hub.start_at("10:10:".parse().unwrap());
    let _bob = hub
        .register(filtered("bob", json!({"owner": {"eq": "bob"}})))
        .unwrap();
    let _alice = hub.register(interest("alice", OpSet::ALL)).unwrap();
    let _again = hub.register(interest("alice", OpSet::ALL)).unwrap();
    let taken = || {
        let mut reg = hub.registry.lock().unwrap();
        reg.take_joined(10)
            .iter()
            .map(|(_, _, caller)| caller.claims["sub"].as_str().unwrap().to_owned())
            .collect::<Vec<String>>()
    };
    assert_eq!(taken(), ["alice"], "the unfiltered context, once");
    assert_eq!(taken(), Vec::<String>::new(), "taken once");
}
