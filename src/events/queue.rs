//! A subscription's bounded queue of deliveries.
//!
//! Bounded as tokio's `mpsc::channel` is (a full queue refuses; the hub then
//! waits for [`QueueSender::room`] while the subscriber keeps reading, and
//! ends it as too slow when it stops), but allocated as it fills: tokio's channel
//! allocates about 1.5 KiB per queue up front (its first block of 32 slots
//! and its cache-padded state), which idle subscriptions paid for nothing.
//! This one is an unbounded futures channel (a few dozen bytes until a
//! delivery is queued) with a count of what is queued.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures::StreamExt;
use futures::channel::mpsc;
use tokio::sync::Notify;

/// A queue of at most `capacity` items (at least one).
pub fn bounded<T>(capacity: usize) -> (QueueSender<T>, Queue<T>) {
    let (tx, rx) = mpsc::unbounded();
    let shared = Arc::new(Shared {
        queued: AtomicUsize::new(0),
        capacity: capacity.max(1),
        room: Notify::new(),
    });
    (
        QueueSender {
            tx,
            shared: shared.clone(),
        },
        Queue { rx, shared },
    )
}

/// What both ends share.
struct Shared {
    queued: AtomicUsize,
    capacity: usize,
    /// Signalled when an item is taken from a full queue.
    room: Notify,
}

/// Why an item was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused<T> {
    /// The queue is full.
    Full(T),
    /// The receiver is gone.
    Closed(T),
}

/// The sending end.
pub struct QueueSender<T> {
    tx: mpsc::UnboundedSender<T>,
    shared: Arc<Shared>,
}

impl<T> QueueSender<T> {
    /// Queues `item`; gives it back if the queue is full or its receiver gone.
    pub fn try_send(&self, item: T) -> Result<(), Refused<T>> {
        let shared = &self.shared;
        if shared.queued.fetch_add(1, Ordering::AcqRel) >= shared.capacity {
            shared.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(match self.tx.is_closed() {
                true => Refused::Closed(item),
                false => Refused::Full(item),
            });
        }
        self.tx.unbounded_send(item).map_err(|e| {
            shared.queued.fetch_sub(1, Ordering::AcqRel);
            Refused::Closed(e.into_inner())
        })
    }

    /// Resolves once an item has been taken from the queue since it was
    /// last full (at once if one has), or its receiver is gone.
    pub async fn room(&self) {
        if self.tx.is_closed() || self.shared.queued.load(Ordering::Acquire) < self.shared.capacity
        {
            return;
        }
        self.shared.room.notified().await;
    }
}

/// The receiving end; it ends once the sender is dropped and it is empty.
pub struct Queue<T> {
    rx: mpsc::UnboundedReceiver<T>,
    shared: Arc<Shared>,
}

impl<T> Drop for Queue<T> {
    fn drop(&mut self) {
        // A sender waiting for room learns that there will be none.
        self.rx.close();
        self.shared.room.notify_one();
    }
}

impl<T> Queue<T> {
    fn took(&self, item: Option<T>) -> Option<T> {
        if item.is_some() {
            let before = self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            if before >= self.shared.capacity {
                // (A permit is kept if nobody waits yet: `room` returns at once.)
                self.shared.room.notify_one();
            }
        }
        item
    }

    /// The next item, `None` once the queue is closed and empty.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.rx.poll_next_unpin(cx).map(|item| self.took(item))
    }

    /// The next item, `None` once the queue is closed and empty.
    pub async fn recv(&mut self) -> Option<T> {
        let item = self.rx.next().await;
        self.took(item)
    }

    /// The next item if one is queued now.
    pub fn try_recv(&mut self) -> Option<T> {
        let item = self.rx.try_recv().ok();
        self.took(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_exactly_its_capacity_and_frees_a_slot_per_item_taken() {
        let (tx, mut rx) = bounded(2);
        assert!(tx.try_send(1).is_ok());
        assert!(tx.try_send(2).is_ok());
        assert_eq!(tx.try_send(3), Err(Refused::Full(3)), "full");
        assert_eq!(rx.try_recv(), Some(1));
        assert!(tx.try_send(4).is_ok(), "a slot was freed");
        assert_eq!(tx.try_send(5), Err(Refused::Full(5)));
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.try_recv(), Some(4));
        assert_eq!(rx.try_recv(), None);
    }

    #[tokio::test]
    async fn ends_after_the_sender_is_dropped_and_refuses_once_the_receiver_is() {
        let (tx, mut rx) = bounded(4);
        tx.try_send(1).unwrap();
        drop(tx);
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv().await, None);
        let (tx, rx) = bounded(4);
        drop(rx);
        assert_eq!(tx.try_send(1), Err(Refused::Closed(1)));
    }

    #[tokio::test]
    async fn room_resolves_when_a_full_queue_gives_up_an_item_or_its_receiver_goes() {
        let (tx, mut rx) = bounded(1);
        tx.try_send(1).unwrap();
        let mut waiting = Box::pin(tx.room());
        assert!(futures::poll!(waiting.as_mut()).is_pending(), "full");
        assert_eq!(rx.try_recv(), Some(1));
        waiting.await;
        tx.try_send(2).unwrap();
        let waiting = tx.room();
        drop(rx);
        waiting.await;
        assert_eq!(tx.try_send(3), Err(Refused::Closed(3)));
    }
}
