//! The hub's registry of subscriptions: per table, each subscription, and
//! the security contexts (role and claims) they run under; which of them
//! want an event.
//!
//! Contexts get a number when their first subscription registers, so that
//! what is looked up per event and per subscriber (routing keys, the
//! authorizer's grouping) hashes a number, not a context's whole key (its
//! claims as text): hashing those keys was a third of the instance's CPU
//! with a thousand users. Equal keys get equal numbers; a number is freed
//! with the last subscription of its context and never reused.

use std::collections::HashMap;

use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::{Arc, OnceLock};

use super::delivery::{Delivery, Interest};
use super::hub::EndReason;
use super::index::TableIndex;
use super::queue::QueueSender;
use super::routing::View;
use super::{Event, Op};
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

/// An event (by index in its page) that a subscription wants.
pub(super) struct Candidate {
    pub(super) event: usize,
    pub(super) entry: Arc<Entry>,
}

/// Every subscription, by table.
#[derive(Default)]
pub(super) struct Registry {
    pub(super) by_table: FxHashMap<u32, FxHashMap<u64, Arc<Entry>>>,
    pub(super) next_id: u64,
    pub(super) epoch: u64,
    /// Context numbers by key, with how many subscriptions use each.
    numbers: HashMap<Arc<str>, (u64, usize)>,
    next_context: u64,
    /// Per table, its contexts: the caller and how many subscriptions.
    contexts: FxHashMap<u32, FxHashMap<u64, (Arc<Caller>, usize)>>,
    /// Per table, its subscriptions indexed for matching.
    index: FxHashMap<u32, TableIndex>,
    /// (table, context) pairs that gained their first subscription since
    /// the hub last took them ([`Self::take_joined`]), when it has no probe
    /// (every event of the table concerns it): their routing keys are
    /// computed ahead of their first event. (A filtered subscription's are
    /// computed with the first event its values find: idle ones hold none,
    /// and many joining at once do not make one page wait for all of them.)
    /// Only live pairs (a pair's last subscription gone takes it out), so
    /// they are bounded by the contexts.
    joined: FxHashSet<(u32, u64)>,
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

    /// Adds `entry` (its context numbered by [`Self::context_of`]); whether
    /// its (table, context) pair joined (had no subscription before) with a
    /// subscription without a probe.
    pub(super) fn insert(&mut self, entry: Entry) -> bool {
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
        let joined = slot.1 == 1;
        let context = entry.context;
        let entry = Arc::new(entry);
        let unprobed = self.index.entry(relid).or_default().insert(&entry);
        self.by_table
            .entry(relid)
            .or_default()
            .insert(entry.id, entry);
        joined && unprobed && self.joined.insert((relid, context))
    }

    /// Whether contexts joined since [`Self::take_joined`] last took them.
    pub(super) fn has_joined(&self) -> bool {
        !self.joined.is_empty()
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
        if let Some(index) = self.index.get_mut(&relid) {
            index.remove(entry);
            if index.is_empty() {
                self.index.remove(&relid);
            }
        }
        if let Some(contexts) = self.contexts.get_mut(&relid) {
            if let Some(slot) = contexts.get_mut(&entry.context) {
                slot.1 -= 1;
                if slot.1 == 0 {
                    contexts.remove(&entry.context);
                    self.joined.remove(&(relid, entry.context));
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

    /// At most `max` of the (table, context number, caller) that joined
    /// since the last call, taken out.
    pub(super) fn take_joined(&mut self, max: usize) -> Vec<(u32, u64, Arc<Caller>)> {
        take(&mut self.joined, max)
            .into_iter()
            .filter_map(|(relid, context)| {
                let (caller, _) = self.contexts.get(&relid)?.get(&context)?;
                Some((relid, context, caller.clone()))
            })
            .collect()
    }

    /// The distinct (role, table) pairs of subscriptions whose filters name
    /// columns.
    pub(super) fn filtered_pairs(&self) -> Vec<(String, u32)> {
        let mut pairs: Vec<(String, u32)> = self
            .by_table
            .iter()
            .flat_map(|(relid, subs)| {
                subs.values()
                    .filter(|e| !e.interest.filter.columns().is_empty())
                    .map(move |e| (e.interest.caller.role.clone(), *relid))
            })
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        pairs
    }

    /// Removes the subscriptions whose filter names a column that
    /// `selectable(role, table)` does not list (`None`: unknown, kept).
    pub(super) fn take_unselectable(
        &mut self,
        selectable: impl Fn(&str, u32) -> Option<Vec<String>>,
    ) -> Vec<Arc<Entry>> {
        let mut taken = Vec::new();
        for (relid, subs) in self.by_table.iter_mut() {
            let mut known: HashMap<String, Option<Vec<String>>> = HashMap::new();
            subs.retain(|_, e| {
                let role = &e.interest.caller.role;
                let columns = known
                    .entry(role.clone())
                    .or_insert_with(|| selectable(role, *relid));
                let Some(columns) = columns else {
                    return true;
                };
                let keep = e
                    .interest
                    .filter
                    .columns()
                    .iter()
                    .all(|c| columns.iter().any(|s| s == c));
                if !keep {
                    taken.push(e.clone());
                }
                keep
            });
        }
        self.by_table.retain(|_, subs| !subs.is_empty());
        for entry in &taken {
            self.forget(entry);
        }
        taken
    }

    /// The (event, subscription) pairs of `events` (read in batch `epoch`):
    /// subscriptions that joined before the batch, want the operation, and
    /// whose filter matches a version of the row that `routes` lets
    /// through. Only the subscriptions the indexes lead to are looked at:
    /// those whose probe finds a version of the row, and the others of the
    /// contexts `routes` does not narrow or finds the row reaching. Built
    /// event by event, so each subscriber's candidates are in outbox order.
    pub(super) fn candidates(
        &self,
        events: &[Arc<Event>],
        epoch: u64,
        routes: &View,
    ) -> Vec<Candidate> {
        let mut out = Vec::new();
        // Per table, the unprobed contexts every event must visit.
        let mut unnarrowed: FxHashMap<u32, Vec<u64>> = FxHashMap::default();
        for (i, event) in events.iter().enumerate() {
            let Some(index) = self.index.get(&event.relid) else {
                continue;
            };
            let mut visit = |entry: &Arc<Entry>| {
                let wants = entry.joined_epoch < epoch
                    && entry.interest.ops.contains(event.op)
                    && (event.op == Op::Truncate
                        || ([&event.new_row, &event.old_row]
                            .into_iter()
                            .flatten()
                            .any(|img| entry.interest.filter.matches(img))
                            && routes.admits(event, entry.context, &entry.interest.caller)));
                if wants {
                    out.push(Candidate {
                        event: i,
                        entry: entry.clone(),
                    });
                }
            };
            if event.op == Op::Truncate {
                // No row to look up: every subscription of the table.
                self.by_table[&event.relid].values().for_each(visit);
                continue;
            }
            index.probed_for(event).into_iter().for_each(&mut visit);
            let always = unnarrowed.entry(event.relid).or_insert_with(|| {
                index
                    .unprobed_contexts()
                    .filter(|c| !routes.narrows(event.relid, *c))
                    .collect()
            });
            let reached = routes.reached(event);
            for context in always.iter().chain(&reached) {
                index.of_context(*context).for_each(&mut visit);
            }
        }
        out
    }

    /// The distinct (table, context number, caller) whose subscriptions
    /// `events` may concern: every context of a subscription without a
    /// probe, and those of the subscriptions a probe finds.
    pub(super) fn callers(&self, events: &[Arc<Event>]) -> Vec<(u32, u64, Arc<Caller>)> {
        let mut wanted: Vec<(u32, u64)> = Vec::new();
        let mut tables: Vec<u32> = events.iter().map(|e| e.relid).collect();
        tables.sort_unstable();
        tables.dedup();
        for relid in &tables {
            if let Some(index) = self.index.get(relid) {
                wanted.extend(index.unprobed_contexts().map(|c| (*relid, c)));
            }
        }
        for event in events {
            let Some(index) = self.index.get(&event.relid) else {
                continue;
            };
            if event.op == Op::Truncate {
                if let Some(contexts) = self.contexts.get(&event.relid) {
                    wanted.extend(contexts.keys().map(|c| (event.relid, *c)));
                }
                continue;
            }
            let found = index.probed_for(event);
            wanted.extend(found.iter().map(|e| (event.relid, e.context)));
        }
        wanted.sort_unstable();
        wanted.dedup();
        wanted
            .into_iter()
            .filter_map(|(relid, context)| {
                let (caller, _) = self.contexts.get(&relid)?.get(&context)?;
                Some((relid, context, caller.clone()))
            })
            .collect()
    }
}

/// At most `max` of `set`, taken out.
fn take(set: &mut FxHashSet<(u32, u64)>, max: usize) -> Vec<(u32, u64)> {
    let taken: Vec<(u32, u64)> = set.iter().take(max).copied().collect();
    for pair in &taken {
        set.remove(pair);
    }
    if set.is_empty() {
        // (10,000 subscribers joining at once leave a table of that size.)
        set.shrink_to_fit();
    }
    taken
}
