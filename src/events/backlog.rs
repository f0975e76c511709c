//! Deliveries of a page that did not fit in their subscribers' queues, and
//! the wait for them to fit.
//!
//! A big transaction (100k rows) is dispatched page by page, faster than any
//! client reads it: ending every subscriber whose queue fills would lose
//! them the transaction. So the hub holds the page's overflow here and waits
//! while those subscribers keep reading, queue by queue, in order; only a
//! subscriber that takes nothing from its full queue for [`STALL`] is ended
//! as too slow (after an exact prefix, as before). Memory stays bounded by
//! the queues plus one page; a subscriber that stops reading delays the
//! others by at most [`STALL`], once.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use futures::future::select_all;
use tokio::time::Instant;

use super::delivery::Delivery;
use super::queue::{QueueSender, Refused};

/// How long a subscriber with a full queue may take nothing before it is
/// ended as too slow.
pub const STALL: Duration = Duration::from_secs(1);

/// A subscriber, as the backlog needs it: its queue.
pub trait Subscriber {
    /// The subscriber's queue.
    fn queue(&self) -> &QueueSender<Delivery>;
}

/// One subscriber's deliveries waiting for room, in order.
struct Waiting<K, S> {
    key: K,
    subscriber: S,
    pending: VecDeque<Delivery>,
    progress: Instant,
}

/// The overflow of one page, per subscriber (`K` names it).
pub struct Backlog<K, S> {
    waiting: Vec<Waiting<K, S>>,
    index: HashMap<K, usize>,
}

impl<K, S> Default for Backlog<K, S> {
    fn default() -> Self {
        Backlog {
            waiting: Vec::new(),
            index: HashMap::new(),
        }
    }
}

/// How a subscriber's backlog ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It took nothing for [`STALL`]: too slow.
    Stalled,
    /// Its receiver is gone.
    Gone,
}

impl<K: Copy + Eq + std::hash::Hash, S: Subscriber + Clone> Backlog<K, S> {
    /// Whether `key` already has deliveries waiting (later ones must wait
    /// behind them).
    pub fn holds(&self, key: K) -> bool {
        self.index.contains_key(&key)
    }

    /// Queues `delivery` for `key` behind what already waits.
    pub fn push(&mut self, key: K, subscriber: &S, delivery: Delivery) {
        let at = *self.index.entry(key).or_insert_with(|| {
            self.waiting.push(Waiting {
                key,
                subscriber: subscriber.clone(),
                pending: VecDeque::new(),
                progress: Instant::now(),
            });
            self.waiting.len() - 1
        });
        self.waiting[at].pending.push_back(delivery);
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Moves every waiting delivery into its queue as room appears; returns
    /// the subscribers that could not take theirs, and why.
    pub async fn drain(self, stall: Duration) -> Vec<(K, Outcome)> {
        let mut waiting = self.waiting;
        let mut ended = Vec::new();
        loop {
            let now = Instant::now();
            waiting.retain_mut(|w| {
                let mut moved = false;
                while let Some(delivery) = w.pending.pop_front() {
                    match w.subscriber.queue().try_send(delivery) {
                        Ok(()) => moved = true,
                        Err(Refused::Full(delivery)) => {
                            w.pending.push_front(delivery);
                            break;
                        }
                        Err(Refused::Closed(_)) => {
                            ended.push((w.key, Outcome::Gone));
                            return false;
                        }
                    }
                }
                if moved {
                    w.progress = now;
                }
                if w.pending.is_empty() {
                    return false;
                }
                if now.duration_since(w.progress) >= stall {
                    ended.push((w.key, Outcome::Stalled));
                    return false;
                }
                true
            });
            let Some(deadline) = waiting.iter().map(|w| w.progress + stall).min() else {
                return ended;
            };
            let room = select_all(
                waiting
                    .iter()
                    .map(|w| Box::pin(w.subscriber.queue().room())),
            );
            let _ = tokio::time::timeout_at(deadline, room).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::events::delivery::Bounds;
    use crate::events::queue::bounded;
    use crate::events::{Event, Op};

    impl Subscriber for Arc<QueueSender<Delivery>> {
        fn queue(&self) -> &QueueSender<Delivery> {
            self
        }
    }

    fn delivery(id: i64) -> Delivery {
        Delivery {
            event: Arc::new(Event {
                id,
                xid: 1,
                relid: 1,
                table: "public.t".into(),
                op: Op::Insert,
                new_row: None,
                old_row: None,
                committed_at: chrono::Utc::now(),
            }),
            row: None,
            old: None,
            bounds: Arc::new(Bounds {
                low: "10:10:".parse().unwrap(),
                high: "11:11:".parse().unwrap(),
            }),
            renderings: Arc::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_gets_everything_in_order_and_one_that_stops_is_ended_after_the_stall() {
        let (reading_tx, mut reading) = bounded(2);
        let (stopped_tx, mut stopped) = bounded(2);
        let (reading_tx, stopped_tx) = (Arc::new(reading_tx), Arc::new(stopped_tx));
        let mut backlog = Backlog::default();
        for id in 1..=2 {
            reading_tx.try_send(delivery(id)).unwrap();
            stopped_tx.try_send(delivery(id)).unwrap();
        }
        for id in 3..=10 {
            backlog.push(1, &reading_tx, delivery(id));
            backlog.push(2, &stopped_tx, delivery(id));
        }
        let reader = tokio::spawn(async move {
            let mut ids = Vec::new();
            while let Some(d) = reading.recv().await {
                ids.push(d.event.id);
                tokio::time::sleep(Duration::from_millis(300)).await;
                if ids.len() == 10 {
                    break;
                }
            }
            ids
        });
        let started = Instant::now();
        let ended = backlog.drain(STALL).await;
        assert_eq!(ended, [(2, Outcome::Stalled)]);
        assert!(started.elapsed() >= STALL, "the stalled one had its time");
        assert_eq!(reader.await.unwrap(), (1..=10).collect::<Vec<_>>());
        assert_eq!(stopped.try_recv().map(|d| d.event.id), Some(1));
        assert_eq!(stopped.try_recv().map(|d| d.event.id), Some(2));
        assert!(
            stopped.try_recv().is_none(),
            "an exact prefix, nothing more"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_subscriber_gone_while_waiting_is_reported_at_once() {
        let (tx, rx) = bounded(1);
        let tx = Arc::new(tx);
        tx.try_send(delivery(1)).unwrap();
        let mut backlog = Backlog::default();
        backlog.push(7, &tx, delivery(2));
        drop(rx);
        let started = Instant::now();
        assert_eq!(backlog.drain(STALL).await, [(7, Outcome::Gone)]);
        assert!(started.elapsed() < STALL);
    }
}
