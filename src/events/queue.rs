//! A subscription's bounded queue of deliveries.
//!
//! Bounded as tokio's `mpsc::channel` is (a full queue refuses, which ends
//! the subscription as too slow), but allocated as it fills: tokio's channel
//! allocates about 1.5 KiB per queue up front (its first block of 32 slots
//! and its cache-padded state), which idle subscriptions paid for nothing.
//! This one is an unbounded futures channel (a few dozen bytes until a
//! delivery is queued) with a count of what is queued.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use futures::StreamExt;
use futures::channel::mpsc;

/// A queue of at most `capacity` items (at least one).
pub fn bounded<T>(capacity: usize) -> (QueueSender<T>, Queue<T>) {
    let (tx, rx) = mpsc::unbounded();
    let queued = Arc::new(AtomicUsize::new(0));
    (
        QueueSender {
            tx,
            queued: queued.clone(),
            capacity: capacity.max(1),
        },
        Queue { rx, queued },
    )
}

/// The sending end.
pub struct QueueSender<T> {
    tx: mpsc::UnboundedSender<T>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

impl<T> QueueSender<T> {
    /// Queues `item`; gives it back if the queue is full or its receiver gone.
    pub fn try_send(&self, item: T) -> Result<(), T> {
        if self.queued.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(item);
        }
        self.tx.unbounded_send(item).map_err(|e| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            e.into_inner()
        })
    }
}

/// The receiving end; it ends once the sender is dropped and it is empty.
pub struct Queue<T> {
    rx: mpsc::UnboundedReceiver<T>,
    queued: Arc<AtomicUsize>,
}

impl<T> Queue<T> {
    fn took(&self, item: Option<T>) -> Option<T> {
        if item.is_some() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
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
        assert_eq!(tx.try_send(3), Err(3), "full");
        assert_eq!(rx.try_recv(), Some(1));
        assert!(tx.try_send(4).is_ok(), "a slot was freed");
        assert_eq!(tx.try_send(5), Err(5));
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
        assert_eq!(tx.try_send(1), Err(1));
    }
}
