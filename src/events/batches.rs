//! The batches the listener reads: everything committed between its last
//! dispatched snapshot and a new one, held open at both ends so that each
//! batch's old images are judged as of its start and its new images as of
//! its end ([`super::moments`]), read page by page and handed to the hub.
//! Its progress survives reconnects, so that a batch cut short is finished,
//! not re-read (no duplicates) nor dropped (no loss).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_postgres::Client;
use tracing::Instrument;

use super::Event;
use super::delivery::Bounds;
use super::hub::Hub;
use super::listener::{ISOLATE_AFTER, ListenError, ListenerConfig, ListenerStatus, timed};
use super::moments::{Held, Holders};
use super::outbox::{self, PAGE_SIZE, Reader};
use super::snapshot::Snapshot;
use crate::db::as_of::AsOf;
use crate::db::authorizer::{AuthorizerStats, Isolation};

/// How far the listener has read; survives reconnects so that a batch cut
/// short is finished, not re-read (no duplicates) nor dropped (no loss).
#[derive(Default)]
pub(super) struct Progress {
    /// Everything visible here has been dispatched.
    pub(super) low: Option<Snapshot>,
    /// `low`, held open: the next batch's old images are judged in it.
    pub(super) low_held: Option<Held>,
    /// A batch under way.
    batch: Option<Batch>,
    /// Failed attempts at dispatching the next page of the batch.
    failures: u32,
}

/// A batch under way.
struct Batch {
    bounds: Arc<Bounds>,
    epoch: u64,
    /// Last dispatched outbox id.
    after_id: i64,
    /// `bounds.high`, held open: its new images are judged in it, and it
    /// becomes the next batch's start.
    high_held: Option<Held>,
    /// The exported snapshots its moments are judged in.
    as_of: AsOf,
    /// Its first page, read with the hold of its end (until dispatched).
    first_page: Option<Vec<Arc<Event>>>,
    /// Events dispatched so far.
    events: u64,
    /// Its trace span (`listener.batch`), parent of its pages' reads and
    /// dispatches; it ends when the batch does.
    span: tracing::Span,
}

impl Progress {
    /// Lets go of holds older than `limit`, counting the fallback of a batch
    /// under way that needed them.
    pub(super) fn let_go_of_stale_holds(&mut self, limit: Duration, stats: &AuthorizerStats) {
        let stale = |held: &Option<Held>| held.as_ref().is_some_and(|h| h.age() > limit);
        let mut lost = false;
        if stale(&self.low_held) {
            self.low_held = None;
            if let Some(batch) = &mut self.batch {
                lost |= batch.as_of.before.take().is_some();
            }
        }
        if let Some(batch) = &mut self.batch {
            if stale(&batch.high_held) {
                batch.high_held = None;
                lost |= batch.as_of.after.take().is_some();
            }
        }
        if lost {
            tracing::warn!(
                ?limit,
                "listener down: let go of the batch's held snapshots; \
                the rest of it is judged at dispatch time"
            );
            stats.snapshot_fallbacks.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Reads and dispatches everything committed since `progress.low`.
pub(super) async fn drain(
    client: &Client,
    reader: &Reader,
    holders: &mut Holders,
    timings: &ListenerConfig,
    hub: &Arc<Hub>,
    status: &ListenerStatus,
    progress: &mut Progress,
) -> Result<(), ListenError> {
    let Some(from) = progress.low.clone() else {
        return Ok(());
    };
    if progress.batch.is_none() {
        let started = Instant::now();
        let taken = holders.take(Some(&from)).await;
        hub.pipeline().hold.observe(started.elapsed());
        let (high, high_held, first_page) = match taken {
            Ok(mut held) => {
                let first_page = held.first_page.take();
                (held.snapshot.clone(), Some(held), first_page)
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not hold the batch's end; \
                    its new images are judged at dispatch time");
                (
                    timed(timings, outbox::current_snapshot(client)).await??,
                    None,
                    None,
                )
            }
        };
        if high == from {
            if let (Some(low), Some(held)) = (&progress.low_held, &high_held)
                && hub.keys_pending()
            {
                // Nothing to read: a batch of no events, whose moments are
                // two holds of the same state, to compute the keys of new
                // subscribers in.
                let as_of = AsOf {
                    before: Some(low.export.clone()),
                    after: Some(held.export.clone()),
                    versions: Some((low.version.clone(), held.version.clone())),
                };
                let epoch = hub.begin_batch(&high);
                hub.compute_keys_ahead(&as_of, epoch).await;
            }
            // The same committed transactions, so the same database: keep
            // the younger hold, so that no transaction stays open for long.
            if let Some(held) = high_held {
                if let Some(older) = progress.low_held.replace(held) {
                    holders.release(older).await;
                }
            }
            return Ok(());
        }
        if progress.low_held.as_ref().is_some_and(|h| !h.is_alive()) {
            tracing::warn!(
                "the snapshot held for the batch's start was lost; \
                its old images are judged at dispatch time"
            );
            progress.low_held = None;
        }
        let as_of = AsOf {
            before: progress.low_held.as_ref().map(|h| h.export.clone()),
            after: high_held.as_ref().map(|h| h.export.clone()),
            versions: progress
                .low_held
                .as_ref()
                .zip(high_held.as_ref())
                .map(|(low, high)| (low.version.clone(), high.version.clone())),
        };
        if as_of.before.is_none() || as_of.after.is_none() {
            hub.authorizer_stats()
                .snapshot_fallbacks
                .fetch_add(1, Ordering::Relaxed);
        }
        let epoch = hub.begin_batch(&high);
        let span = tracing::info_span!(
            "listener.batch",
            epoch,
            events = tracing::field::Empty,
            delivered = tracing::field::Empty,
        );
        progress.batch = Some(Batch {
            bounds: Arc::new(Bounds { low: from, high }),
            epoch,
            after_id: 0,
            high_held,
            as_of,
            first_page,
            events: 0,
            span,
        });
    }
    while let Some(batch) = progress.batch.as_mut() {
        let page = match batch.first_page.take() {
            // (Taken: should its dispatch fail, the retry reads it again.)
            Some(page) => page,
            None => {
                let started = Instant::now();
                let read = reader.read_page(
                    client,
                    &batch.bounds.low,
                    &batch.bounds.high,
                    batch.after_id,
                );
                let span = tracing::info_span!(parent: &batch.span, "outbox.read");
                let page = timed(timings, read.instrument(span)).await??;
                hub.pipeline().read.observe(started.elapsed());
                page
            }
        };
        if page.is_empty() && batch.after_id == 0 && hub.keys_pending() {
            // A batch with no events of this database (other databases'
            // commits move the snapshot too): the time for new subscribers'
            // keys.
            hub.compute_keys_ahead(&batch.as_of, batch.epoch).await;
        }
        if let Some(last) = page.last() {
            let isolation = if progress.failures >= ISOLATE_AFTER {
                Isolation::Always
            } else {
                Isolation::OnError
            };
            let started = Instant::now();
            let whole = batch.after_id == 0 && (page.len() as i64) < PAGE_SIZE;
            let span = tracing::info_span!(parent: &batch.span, "hub.dispatch",
                events = page.len(), delivered = tracing::field::Empty);
            let dispatched = hub
                .dispatch(
                    &page,
                    &batch.bounds,
                    &batch.as_of,
                    batch.epoch,
                    isolation,
                    whole,
                )
                .instrument(span.clone())
                .await;
            hub.pipeline().dispatch.observe(started.elapsed());
            let stats = match dispatched {
                Ok(stats) => stats,
                Err(e) => {
                    progress.failures += 1;
                    hub.authorizer_stats()
                        .failed_calls
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, attempt = progress.failures, ?isolation,
                        "authorizing a page failed; it will be retried");
                    return Err(e.into());
                }
            };
            progress.failures = 0;
            span.record("delivered", stats.delivered);
            batch.events += page.len() as u64;
            status
                .events
                .fetch_add(page.len() as u64, Ordering::Relaxed);
            status
                .deliveries
                .fetch_add(stats.delivered as u64, Ordering::Relaxed);
            status
                .overflows
                .fetch_add(stats.overflowed as u64, Ordering::Relaxed);
            tracing::debug!(
                events = page.len(),
                contexts = stats.contexts,
                delivered = stats.delivered,
                "page dispatched"
            );
            batch.after_id = last.id;
        }
        if (page.len() as i64) < PAGE_SIZE {
            // The whole batch is dispatched: its start is no longer needed,
            // its end is the next batch's start.
            let high_held = batch.high_held.take();
            hub.pipeline().batch_events.record(batch.events);
            batch.span.record("events", batch.events);
            progress.low = Some(batch.bounds.high.clone());
            progress.batch = None;
            if let Some(start) = std::mem::replace(&mut progress.low_held, high_held) {
                holders.release(start).await;
            }
        }
    }
    Ok(())
}
