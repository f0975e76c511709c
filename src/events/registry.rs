//! The hub's registry of subscriptions: per table, each subscription, and
//! the security contexts (role and claims) they run under.
//!
//! Contexts get a number when their first subscription registers, so that
//! what is looked up per event and per subscriber (routing keys, the
//! authorizer's grouping) hashes a number, not a context's whole key (its
//! claims as text): hashing those keys was a third of the instance's CPU
//! with a thousand users. Equal keys get equal numbers; a number is freed
//! with the last subscription of its context and never reused.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use super::delivery::{Delivery, Interest};
use super::hub::EndReason;
use super::queue::QueueSender;
use crate::auth::Caller;

/// A registered subscription.
pub(super) struct Entry {
    pub(super) id: u64,
    /// Its security context's number.
    pub(super) context: u64,
    pub(super) interest: Interest,
    pub(super) queue: QueueSender<Delivery>,
    /// Batches numbered at or below this were read before the subscription existed.
    pub(super) joined_epoch: u64,
    pub(super) ended: Arc<OnceLock<EndReason>>,
}

/// Every subscription, by table.
#[derive(Default)]
pub(super) struct Registry {
    pub(super) by_table: HashMap<u32, HashMap<u64, Arc<Entry>>>,
    pub(super) next_id: u64,
    pub(super) epoch: u64,
    /// Context numbers by key, with how many subscriptions use each.
    numbers: HashMap<Arc<str>, (u64, usize)>,
    next_context: u64,
    /// Per table, its contexts: the caller and how many subscriptions.
    contexts: HashMap<u32, HashMap<u64, (Arc<Caller>, usize)>>,
}

impl Registry {
    /// The number of `caller`'s context, given one if it has none.
    pub(super) fn context_of(&mut self, caller: &Caller) -> u64 {
        if let Some((number, _)) = self.numbers.get(caller.key()) {
            return *number;
        }
        self.next_context += 1;
        self.numbers
            .insert(caller.key().clone(), (self.next_context, 0));
        self.next_context
    }

    /// Adds `entry` (its context numbered by [`Self::context_of`]).
    pub(super) fn insert(&mut self, entry: Entry) {
        let relid = entry.interest.relid;
        if let Some((_, uses)) = self.numbers.get_mut(entry.interest.caller.key()) {
            *uses += 1;
        }
        let slot = self
            .contexts
            .entry(relid)
            .or_default()
            .entry(entry.context)
            .or_insert_with(|| (entry.interest.caller.clone(), 0));
        slot.1 += 1;
        self.by_table
            .entry(relid)
            .or_default()
            .insert(entry.id, Arc::new(entry));
    }

    /// Removes subscription `id` of table `relid`.
    pub(super) fn take(&mut self, relid: u32, id: u64) -> Option<Arc<Entry>> {
        let subs = self.by_table.get_mut(&relid)?;
        let entry = subs.remove(&id)?;
        if subs.is_empty() {
            self.by_table.remove(&relid);
        }
        self.forget(&entry);
        Some(entry)
    }

    /// Removes every subscription of table `relid`.
    pub(super) fn take_table(&mut self, relid: u32) -> Vec<Arc<Entry>> {
        let gone: Vec<Arc<Entry>> = self
            .by_table
            .remove(&relid)
            .map(|subs| subs.into_values().collect())
            .unwrap_or_default();
        for entry in &gone {
            self.forget(entry);
        }
        gone
    }

    /// Counts `entry` (already out of `by_table`) out of its context.
    pub(super) fn forget(&mut self, entry: &Entry) {
        let relid = entry.interest.relid;
        if let Some(contexts) = self.contexts.get_mut(&relid) {
            if let Some(slot) = contexts.get_mut(&entry.context) {
                slot.1 -= 1;
                if slot.1 == 0 {
                    contexts.remove(&entry.context);
                }
            }
            if contexts.is_empty() {
                self.contexts.remove(&relid);
            }
        }
        let key = entry.interest.caller.key();
        if let Some((_, uses)) = self.numbers.get_mut(key) {
            *uses -= 1;
            if *uses == 0 {
                self.numbers.remove(key);
            }
        }
    }

    /// The distinct (table, context number, caller) of subscriptions to
    /// `tables`.
    pub(super) fn callers(&self, tables: &[u32]) -> Vec<(u32, u64, Arc<Caller>)> {
        tables
            .iter()
            .filter_map(|relid| Some((*relid, self.contexts.get(relid)?)))
            .flat_map(|(relid, contexts)| {
                contexts
                    .iter()
                    .map(move |(number, (caller, _))| (relid, *number, caller.clone()))
            })
            .collect()
    }
}
