//! One table's subscriptions, indexed for matching events, kept as
//! subscriptions come and go: those whose filter requires a column to equal
//! some values ([`Filter::probe`](super::filter::Filter::probe)) by those
//! values, and the rest by security context (so that routing, which knows
//! per page which contexts can see a row, picks them by context).
//!
//! An index only narrows the subscriptions looked at; each one found is
//! still checked in full ([`super::registry::Registry::candidates`]). What
//! it must never do is leave out one that wants the event.

use std::collections::HashMap;

use rustc_hash::FxHashMap;
use std::sync::Arc;

use serde_json::Value;

use super::Event;
use super::filter::{Key, Probe};
use super::registry::Entry;

/// Subscriptions to one table.
#[derive(Default)]
pub(super) struct TableIndex {
    /// Per probe (column and type): the subscriptions by wanted value.
    probed: HashMap<String, Probed>,
    /// The subscriptions without a probe, per context number, by id.
    by_context: FxHashMap<u64, FxHashMap<u64, Arc<Entry>>>,
}

struct Probed {
    probe: Probe,
    by_key: HashMap<Key, FxHashMap<u64, Arc<Entry>>>,
}

impl TableIndex {
    /// Adds `entry`; whether it is filed by context (no probe: every event
    /// of the table concerns it).
    pub(super) fn insert(&mut self, entry: &Arc<Entry>) -> bool {
        match entry.interest.filter.probe() {
            Some((probe, keys)) => {
                let probed = self
                    .probed
                    .entry(probe.name().to_owned())
                    .or_insert_with(|| Probed {
                        probe,
                        by_key: HashMap::new(),
                    });
                for key in keys {
                    probed
                        .by_key
                        .entry(key)
                        .or_default()
                        .insert(entry.id, entry.clone());
                }
                false
            }
            None => {
                self.by_context
                    .entry(entry.context)
                    .or_default()
                    .insert(entry.id, entry.clone());
                true
            }
        }
    }

    /// Removes `entry` (as added).
    pub(super) fn remove(&mut self, entry: &Entry) {
        match entry.interest.filter.probe() {
            Some((probe, keys)) => {
                let Some(probed) = self.probed.get_mut(probe.name()) else {
                    return;
                };
                for key in keys {
                    if let Some(entries) = probed.by_key.get_mut(&key) {
                        entries.remove(&entry.id);
                        if entries.is_empty() {
                            probed.by_key.remove(&key);
                        }
                    }
                }
                if probed.by_key.is_empty() {
                    self.probed.remove(probe.name());
                }
            }
            None => {
                if let Some(entries) = self.by_context.get_mut(&entry.context) {
                    entries.remove(&entry.id);
                    if entries.is_empty() {
                        self.by_context.remove(&entry.context);
                    }
                }
            }
        }
    }

    /// Whether it holds no subscription.
    pub(super) fn is_empty(&self) -> bool {
        self.probed.is_empty() && self.by_context.is_empty()
    }

    /// The contexts of the subscriptions without a probe.
    pub(super) fn unprobed_contexts(&self) -> impl Iterator<Item = u64> + '_ {
        self.by_context.keys().copied()
    }

    /// The subscriptions with a probe whose wanted values hold a version of
    /// `event`'s row, each once.
    pub(super) fn probed_for(&self, event: &Event) -> Vec<&Arc<Entry>> {
        let mut found: Vec<&Arc<Entry>> = Vec::new();
        let images: [&Option<Arc<Value>>; 2] = [&event.new_row, &event.old_row];
        for probed in self.probed.values() {
            let mut keys: Vec<Key> = images
                .iter()
                .filter_map(|image| probed.probe.key(image.as_deref()?))
                .collect();
            keys.dedup();
            for key in &keys {
                if let Some(entries) = probed.by_key.get(key) {
                    found.extend(entries.values());
                }
            }
        }
        if found.len() > 1 {
            // A subscription wanting several values may be found by the old
            // and by the new version.
            found.sort_unstable_by_key(|e| e.id);
            found.dedup_by_key(|e| e.id);
        }
        found
    }

    /// The subscriptions without a probe of context `context`.
    pub(super) fn of_context(&self, context: u64) -> impl Iterator<Item = &Arc<Entry>> {
        self.by_context
            .get(&context)
            .into_iter()
            .flat_map(|e| e.values())
    }
}
