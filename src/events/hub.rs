//! The hub: which subscriptions exist, and routing each batch of events to them.
//!
//! The listener hands every batch to [`Hub::dispatch`]: events are matched to
//! subscriptions by table, operation and filter; [`super::delivery`] decides,
//! with one authorizer round trip per moment (old images as of the batch's
//! start, new ones as of its end), which version of which row each gets; each
//! subscription's bounded queue receives its deliveries in outbox order. A
//! subscriber whose queue is full is waited for while it keeps reading
//! ([`super::backlog`]) and ended with an error once it stops, never
//! skipped; so is one whose security context the authorizer could not evaluate (its role was
//! dropped, say): it alone, the other subscribers get their deliveries.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use tokio::sync::{Notify, watch};
use tracing::Instrument;

use super::Event;
use super::backlog::{Backlog, Outcome, STALL, Subscriber};
use super::delivery::{Bounds, Delivery, Interest, Plan};
use super::queue::{self, Queue, QueueSender, Refused};
use super::registry::{Candidate, Entry, Registry};
use super::renderings::RenderingStats;
use super::routing::{Routing, RoutingStats, View};
use super::snapshot::Snapshot;
use crate::auth::Caller;
use crate::db::DbError;
use crate::db::as_of::AsOf;
use crate::db::authorizer::{Authorize, AuthorizerStats, ContextFailure, Isolation};
use crate::db::routes::RouteSource;
use crate::metrics::pipeline::Pipeline;

/// Contexts new since the last page whose routing keys a page computes
/// ahead of their first event, at most (one database call for them all).
const KEYS_AHEAD: usize = 5_000;

/// Why the hub ended a subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// Its queue was full: it got an exact prefix of its events.
    SlowConsumer,
    /// Its table was dropped or is no longer tracked.
    TableGone,
    /// Its security context (role and claims) could not be evaluated: it got
    /// an exact prefix of its events, up to the page that failed.
    ContextFailed(ContextFailure),
    /// Its filter names a column its role may no longer select.
    ColumnRevoked,
}

/// Routes events to subscriptions.
pub struct Hub {
    registry: Mutex<Registry>,
    /// The snapshot every dispatched or in-dispatch batch reaches; `None` until
    /// the listener first connects.
    position: watch::Sender<Option<Snapshot>>,
    /// Asks the listener to read now (for example, for a cursor ahead of it).
    wake: Arc<Notify>,
    authorizer: Arc<dyn Authorize>,
    /// Routes by policy, when the hub has a source of them.
    routing: Option<Routing>,
    /// What the authorizer had to deal with (live pages and catch-up).
    authorizer_stats: Arc<AuthorizerStats>,
    /// What the pipeline measures (stage times, lag, ends), for `/metrics`.
    pipeline: Arc<Pipeline>,
    /// Items rendered and shared by the subscriptions of this hub.
    renderings: Arc<RenderingStats>,
    /// Bumped on every registry change, for those waiting on it.
    changes: watch::Sender<u64>,
    /// Bumped whenever new subscribers' routing keys were computed ahead of
    /// their events ([`Hub::compute_keys_ahead`]).
    keys_ahead: watch::Sender<u64>,
    /// Deliveries a subscription may have queued before it counts as too slow.
    queue_capacity: usize,
}

/// A registered subscription: its queue, and deregistration on drop.
pub struct Registration {
    hub: Arc<Hub>,
    relid: u32,
    id: u64,
    /// Live deliveries.
    pub queue: Queue<Delivery>,
    /// Set when the hub ended the subscription, with the reason.
    pub ended: Arc<OnceLock<EndReason>>,
    /// Everything visible here was dispatched before this subscription joined.
    pub position: Snapshot,
}

impl futures::Stream for Registration {
    type Item = Delivery;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Delivery>> {
        self.queue.poll_recv(cx)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.remove(self.relid, self.id);
    }
}

impl Hub {
    /// A hub that asks `authorizer` who may see what and gives each
    /// subscription a queue of `queue_capacity` deliveries.
    pub fn new(authorizer: Arc<dyn Authorize>, queue_capacity: usize) -> Arc<Hub> {
        Hub::build(authorizer, None, queue_capacity)
    }

    /// A hub that also routes events by policy ([`super::routing`]), with
    /// routes and keys from `routes`.
    pub fn routed(
        authorizer: Arc<dyn Authorize>,
        routes: Arc<dyn RouteSource>,
        queue_capacity: usize,
    ) -> Arc<Hub> {
        Hub::build(authorizer, Some(Routing::new(routes)), queue_capacity)
    }

    fn build(
        authorizer: Arc<dyn Authorize>,
        routing: Option<Routing>,
        queue_capacity: usize,
    ) -> Arc<Hub> {
        Arc::new(Hub {
            registry: Mutex::new(Registry::default()),
            position: watch::Sender::new(None),
            wake: Arc::new(Notify::new()),
            authorizer,
            routing,
            authorizer_stats: Arc::default(),
            pipeline: Arc::default(),
            renderings: Arc::default(),
            changes: watch::Sender::new(0),
            keys_ahead: watch::Sender::new(0),
            queue_capacity: queue_capacity.max(1),
        })
    }

    /// Capacity of each subscription's queue.
    pub fn queue_capacity(&self) -> usize {
        self.queue_capacity
    }

    /// What the authorizer had to deal with, for `/metrics`.
    pub fn authorizer_stats(&self) -> &Arc<AuthorizerStats> {
        &self.authorizer_stats
    }

    /// What the pipeline measures (stage times, lag, ends), for `/metrics`.
    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// Items rendered and shared, for `/metrics`.
    pub fn rendering_stats(&self) -> &Arc<RenderingStats> {
        &self.renderings
    }

    /// What routing by policy did, for `/metrics` (`None`: the hub does
    /// not route).
    pub fn routing_stats(&self) -> Option<&RoutingStats> {
        self.routing.as_ref().map(Routing::stats)
    }

    /// Notified when the listener should read at once.
    pub fn wake_handle(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Number of live subscriptions.
    pub fn subscription_count(&self) -> usize {
        let reg = self.registry.lock().expect("hub registry");
        reg.by_table.values().map(HashMap::len).sum()
    }

    /// Live subscriptions per table oid (tables with none may be missing).
    pub fn subscriptions_per_table(&self) -> Vec<(u32, usize)> {
        let reg = self.registry.lock().expect("hub registry");
        reg.by_table
            .iter()
            .map(|(relid, subs)| (*relid, subs.len()))
            .collect()
    }

    /// Waits until the dispatched position covers `snapshot` (nudging the
    /// listener), so a subscription resuming there misses nothing.
    pub async fn wait_for(&self, snapshot: &Snapshot) {
        self.wait_until(|p| p.covers(snapshot)).await
    }

    /// Waits until the listener's position (the end of the batch it is
    /// dispatching or has dispatched) satisfies `reached` (nudging the
    /// listener).
    pub async fn wait_until(&self, reached: impl Fn(&Snapshot) -> bool) {
        let mut rx = self.position.subscribe();
        loop {
            if rx.borrow_and_update().as_ref().is_some_and(&reached) {
                return;
            }
            self.wake.notify_one();
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Whether the listener has a position yet.
    pub fn position(&self) -> Option<Snapshot> {
        self.position.borrow().clone()
    }

    /// Adds a subscription; it receives every batch that starts after now.
    pub fn register(self: &Arc<Self>, interest: Interest) -> Option<Registration> {
        let (tx, rx) = queue::bounded(self.queue_capacity);
        let ended = Arc::new(OnceLock::new());
        let mut reg = self.registry.lock().expect("hub registry");
        // Read under the registry lock: batches begin under it too.
        let position = self.position.borrow().clone()?;
        reg.next_id += 1;
        let id = reg.next_id;
        let relid = interest.relid;
        let context = reg.context_of(&interest.caller);
        let entry = Entry {
            id,
            context,
            interest,
            queue: tx,
            joined_epoch: reg.epoch,
            ended: ended.clone(),
        };
        let joined = reg.insert(entry);
        drop(reg);
        self.changes.send_modify(|n| *n += 1);
        tracing::debug!(subscription = id, table = relid, "subscription registered");
        if joined && self.routing.is_some() {
            // The listener computes its routing keys while no event waits
            // ([`Self::compute_keys_ahead`]).
            self.wake.notify_one();
        }
        Some(Registration {
            hub: self.clone(),
            relid,
            id,
            queue: rx,
            ended,
            position,
        })
    }

    fn remove(&self, relid: u32, id: u64) {
        let mut reg = self.registry.lock().expect("hub registry");
        reg.take(relid, id);
        drop(reg);
        self.changes.send_modify(|n| *n += 1);
    }

    /// Ends every subscription of table `relid` (dropped or untracked).
    pub fn close_table(&self, relid: u32) {
        let mut reg = self.registry.lock().expect("hub registry");
        let gone = reg.take_table(relid);
        drop(reg);
        self.end(gone, EndReason::TableGone);
    }

    /// Ends `entries` (already out of the registry) for `reason`; returns how many.
    fn end(&self, entries: Vec<Arc<Entry>>, reason: EndReason) -> usize {
        for entry in &entries {
            let _ = entry.ended.set(reason);
        }
        let count = entries.len();
        self.pipeline.count_ended(reason, count);
        // Dropping the entries closes their queues: each stream ends after
        // what it already holds.
        drop(entries);
        self.changes.send_modify(|n| *n += 1);
        count
    }

    /// The distinct (role, table) pairs of subscriptions whose filters name
    /// columns.
    pub fn filtered_pairs(&self) -> Vec<(String, u32)> {
        self.registry.lock().expect("hub registry").filtered_pairs()
    }

    /// Ends the subscriptions whose filter names a column that
    /// `selectable(role, table)` does not list (`None`: unknown, left
    /// alone); returns how many.
    pub fn end_unselectable(&self, selectable: impl Fn(&str, u32) -> Option<Vec<String>>) -> usize {
        let ended = self
            .registry
            .lock()
            .expect("hub registry")
            .take_unselectable(selectable);
        match ended.is_empty() {
            true => 0,
            false => self.end(ended, EndReason::ColumnRevoked),
        }
    }

    /// Sets the first position, before any batch (listener start).
    pub fn start_at(&self, snapshot: Snapshot) {
        let reg = self.registry.lock().expect("hub registry");
        self.position.send_replace(Some(snapshot));
        drop(reg);
        self.changes.send_modify(|n| *n += 1);
    }

    /// Changes whenever a subscription is added or removed, or the hub gets
    /// its first position.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Starts a batch reaching `high`; returns its epoch. Subscriptions
    /// registered from now on do not receive it.
    pub fn begin_batch(&self, high: &Snapshot) -> u64 {
        let mut reg = self.registry.lock().expect("hub registry");
        reg.epoch += 1;
        self.position.send_replace(Some(high.clone()));
        reg.epoch
    }

    /// Whether contexts of subscriptions that every event of their table
    /// concerns joined, and their routing keys are not computed yet.
    pub(super) fn keys_pending(&self) -> bool {
        self.routing.is_some() && self.registry.lock().expect("hub registry").has_joined()
    }

    /// Computes the routing keys of the contexts of subscriptions without a
    /// probe that joined since the last page, in batch `epoch` that has no
    /// events, so that their first event (every event of their table
    /// concerns them) finds them instead of waiting for them all at once.
    /// Kept keys are a cache: a failure here only means computing them with
    /// that event.
    pub(super) async fn compute_keys_ahead(&self, as_of: &AsOf, epoch: u64) {
        let Some(routing) = &self.routing else {
            return;
        };
        let joined = self.take_joined();
        if joined.is_empty() {
            return;
        }
        let view = routing.prepare(&[], &joined, as_of, epoch, true).await;
        routing.finish(view);
        self.keys_ahead.send_modify(|n| *n += 1);
    }

    /// Counts the times new subscribers' routing keys were computed ahead
    /// of their events, for those waiting on it.
    pub fn keys_ahead(&self) -> watch::Receiver<u64> {
        self.keys_ahead.subscribe()
    }

    /// Routes one page of a batch: match (narrowed by policy routes),
    /// authorize (old images in the snapshot `as_of.before`, new ones in
    /// `as_of.after`; what routes decide is not asked), enqueue.
    /// Subscriptions whose security context failed are ended (with none of
    /// this page's events); an error means nothing was delivered and the page
    /// must be retried (with [`Isolation::Always`] after a few attempts).
    /// `whole`: the page is its whole batch.
    pub async fn dispatch(
        &self,
        events: &[Arc<Event>],
        bounds: &Arc<Bounds>,
        as_of: &AsOf,
        epoch: u64,
        isolation: Isolation,
        whole: bool,
    ) -> Result<DispatchStats, DbError> {
        let routes = match &self.routing {
            Some(routing) => {
                routing.note(events, epoch);
                let callers = self.callers_of(events);
                // Contexts that joined since the last page: their keys are
                // computed with this page's, not with their first event.
                let joined = self.take_joined();
                routing
                    .prepare(&callers, &joined, as_of, epoch, whole)
                    .await
            }
            None => View::default(),
        };
        let page = Page {
            events,
            bounds,
            as_of,
            epoch,
            isolation,
        };
        let dispatched = self.deliver(page, &routes).await;
        if let Some(routing) = &self.routing {
            routing.finish(routes);
        }
        dispatched
    }

    /// Matches, authorizes and enqueues a page, with `routes`.
    async fn deliver(&self, page: Page<'_>, routes: &View) -> Result<DispatchStats, DbError> {
        let Page {
            events,
            bounds,
            as_of,
            epoch,
            isolation,
        } = page;
        let candidates = self.match_events(events, epoch, routes);
        if candidates.is_empty() {
            return Ok(DispatchStats::default());
        }
        let plan = Plan::live(
            events,
            candidates
                .iter()
                .map(|c| (c.event, c.entry.context, &c.entry.interest.caller)),
        );
        let started = Instant::now();
        let span = tracing::info_span!("authorizer", contexts = plan.context_count());
        let verdicts = plan
            .authorize(
                self.authorizer.as_ref(),
                as_of,
                isolation,
                &self.authorizer_stats,
                routes,
            )
            .instrument(span)
            .await?;
        self.pipeline.authorize.observe(started.elapsed());
        let mut stats = DispatchStats {
            contexts: plan.context_count(),
            contexts_failed: verdicts.failed_contexts(),
            ..DispatchStats::default()
        };
        let mut backlog: Backlog<u64, Arc<Entry>> = Backlog::default();
        for (i, cand) in candidates.iter().enumerate() {
            if cand.entry.ended.get().is_some() {
                continue;
            }
            if let Some(failure) = verdicts.failure(plan.context_of(i)) {
                // Whether it may see this page's rows is unknown: end it
                // rather than let it miss events it would never know of.
                let _ = cand.entry.ended.set(EndReason::ContextFailed(failure));
                stats.context_ended += 1;
                self.pipeline
                    .count_ended(EndReason::ContextFailed(failure), 1);
                self.authorizer_stats
                    .subscriptions_ended
                    .fetch_add(1, Ordering::Relaxed);
                self.remove(cand.entry.interest.relid, cand.entry.id);
                continue;
            }
            let Some(delivery) = plan.decide(i, &cand.entry.interest, &verdicts, bounds) else {
                continue;
            };
            stats.delivered += 1;
            if backlog.holds(cand.entry.id) {
                backlog.push(cand.entry.id, &cand.entry, delivery);
                continue;
            }
            match cand.entry.queue.try_send(delivery) {
                Ok(()) => {}
                Err(Refused::Full(delivery)) => backlog.push(cand.entry.id, &cand.entry, delivery),
                Err(Refused::Closed(_)) => self.remove(cand.entry.interest.relid, cand.entry.id),
            }
        }
        if !backlog.is_empty() {
            let by_id: HashMap<u64, &Arc<Entry>> =
                candidates.iter().map(|c| (c.entry.id, &c.entry)).collect();
            for (id, outcome) in backlog.drain(STALL).await {
                let entry = by_id[&id];
                if outcome == Outcome::Stalled {
                    // It stopped taking its events: end it with an error
                    // rather than skip events it would never know it missed.
                    let _ = entry.ended.set(EndReason::SlowConsumer);
                    stats.overflowed += 1;
                    self.pipeline.count_ended(EndReason::SlowConsumer, 1);
                }
                self.remove(entry.interest.relid, entry.id);
            }
        }
        Ok(stats)
    }

    /// The contexts that joined since the last page (at most [`KEYS_AHEAD`]),
    /// whose keys are to be computed ahead of their first event.
    fn take_joined(&self) -> Vec<(u32, u64, Arc<Caller>)> {
        let mut reg = self.registry.lock().expect("hub registry");
        reg.take_joined(KEYS_AHEAD)
    }

    /// The distinct (table, security context) of subscriptions `events` may
    /// concern.
    fn callers_of(&self, events: &[Arc<Event>]) -> Vec<(u32, u64, Arc<Caller>)> {
        self.registry.lock().expect("hub registry").callers(events)
    }

    fn match_events(&self, events: &[Arc<Event>], epoch: u64, routes: &View) -> Vec<Candidate> {
        let reg = self.registry.lock().expect("hub registry");
        reg.candidates(events, epoch, routes)
    }
}

/// What one dispatch did.
#[derive(Debug, Default, Clone, Copy)]
pub struct DispatchStats {
    /// Distinct security contexts authorized.
    pub contexts: usize,
    /// Deliveries made.
    pub delivered: usize,
    /// Subscriptions ended because their queue was full.
    pub overflowed: usize,
    /// Security contexts that could not be evaluated.
    pub contexts_failed: usize,
    /// Subscriptions ended because their security context failed.
    pub context_ended: usize,
}

/// A page being dispatched, and how.
struct Page<'p> {
    events: &'p [Arc<Event>],
    bounds: &'p Arc<Bounds>,
    as_of: &'p AsOf,
    epoch: u64,
    isolation: Isolation,
}

impl Subscriber for Arc<Entry> {
    fn queue(&self) -> &QueueSender<Delivery> {
        &self.queue
    }
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
