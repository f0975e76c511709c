//! What each subscriber receives of an event: which security contexts must be
//! asked about which row images (deduplicated, so subscribers with the same
//! role and claims cost one check), at which moment (live: an old image as of
//! the batch's start, a new one as of its end; catch-up: now), and, from the
//! authorizer's verdicts, which versions of the row each subscriber gets.
//! The deliveries of one event in one page share its [`Renderings`].

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use super::cursor::Cursor;
use super::filter::Filter;
use super::renderings::Renderings;
use super::routing::View;
use super::snapshot::Snapshot;
use super::{Event, Op, OpSet};
use crate::auth::Caller;
use crate::db::DbError;
use crate::db::as_of::{AsOf, Moment};
use crate::db::authorizer::{Authorize, AuthorizerStats, Check, Isolation, Verdicts};

/// What a subscription wants.
#[derive(Clone, Debug)]
pub struct Interest {
    /// Table oid.
    pub relid: u32,
    /// Operations wanted.
    pub ops: OpSet,
    /// Row filter.
    pub filter: Filter,
    /// Whose view of the rows.
    pub caller: Arc<Caller>,
}

/// The bounds of the batch an event was read in: it is visible in `high`, not in `low`.
#[derive(Debug)]
pub struct Bounds {
    /// Start of the batch.
    pub low: Snapshot,
    /// End of the batch.
    pub high: Snapshot,
}

/// One event as one subscriber may see it.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The event.
    pub event: Arc<Event>,
    /// The new version, if the subscriber may see it (restricted to its columns).
    pub row: Option<Arc<Value>>,
    /// The old version, if the subscriber could see it.
    pub old: Option<Arc<Value>>,
    /// Batch the event was read in.
    pub bounds: Arc<Bounds>,
    /// How the event was rendered for the other subscribers it was delivered
    /// to with these bounds: shared by every delivery of the event in its
    /// page (or catch-up), and by nothing else, as a rendering shows the
    /// bounds (in its cursor).
    pub renderings: Arc<Renderings>,
}

impl Delivery {
    /// The cursor just after this event.
    pub fn cursor(&self, identity: &str) -> Cursor {
        Cursor {
            identity: identity.to_owned(),
            low: self.bounds.low.clone(),
            high: self.bounds.high.clone(),
            id: self.event.id,
        }
    }
}

/// Check indexes for one candidate: its context, and its new-image and
/// old-image checks.
#[derive(Clone, Copy)]
struct Slots {
    context: usize,
    new: Option<usize>,
    old: Option<usize>,
}

/// The deduplicated authorization questions for a page of events and the
/// (event, caller) candidates that want them.
pub struct Plan<'e> {
    events: &'e [Arc<Event>],
    event_of: Vec<usize>,
    contexts: Vec<Arc<Caller>>,
    /// The hub's number of each context.
    numbers: Vec<u64>,
    checks: Vec<Check>,
    slots: Vec<Slots>,
    /// Per event index, the renderings its deliveries share (`None`: no
    /// candidate wants it).
    renderings: Vec<Option<Arc<Renderings>>>,
}

impl<'e> Plan<'e> {
    /// Plans the checks for a live batch: old images judged as of its
    /// start, new images as of its end. Candidates are (event index, the
    /// hub's number of the caller's context, caller).
    pub fn live<'c>(
        events: &'e [Arc<Event>],
        candidates: impl IntoIterator<Item = (usize, u64, &'c Arc<Caller>)>,
    ) -> Plan<'e> {
        let moment = |is_new| match is_new {
            true => Moment::After,
            false => Moment::Before,
        };
        let mut plan = Plan {
            events,
            event_of: Vec::new(),
            contexts: Vec::new(),
            numbers: Vec::new(),
            checks: Vec::new(),
            slots: Vec::new(),
            renderings: vec![None; events.len()],
        };
        let mut context_ids: HashMap<u64, usize> = HashMap::new();
        let mut check_ids: HashMap<(usize, usize, bool), usize> = HashMap::new();
        for (event_index, number, caller) in candidates {
            let context = *context_ids.entry(number).or_insert_with(|| {
                plan.contexts.push(caller.clone());
                plan.numbers.push(number);
                plan.contexts.len() - 1
            });
            let event = &events[event_index];
            let checks = &mut plan.checks;
            let mut check = |image: &Option<Arc<Value>>, is_new: bool| {
                let image = image.as_ref()?;
                Some(
                    *check_ids
                        .entry((context, event_index, is_new))
                        .or_insert_with(|| {
                            checks.push(Check {
                                context,
                                relid: event.relid,
                                image: image.clone(),
                                moment: moment(is_new),
                            });
                            checks.len() - 1
                        }),
                )
            };
            let new = check(&event.new_row, true);
            let old = check(&event.old_row, false);
            plan.renderings[event_index].get_or_insert_with(Arc::default);
            plan.event_of.push(event_index);
            plan.slots.push(Slots { context, new, old });
        }
        plan
    }

    /// Distinct security contexts in the plan.
    pub fn context_count(&self) -> usize {
        self.contexts.len()
    }

    /// The security context of candidate `i` (an index the verdicts use).
    pub fn context_of(&self, i: usize) -> usize {
        self.slots[i].context
    }

    /// Asks the authorizer every question of the plan, in one round trip
    /// per moment (more when a context's call must be isolated), the moments
    /// judged in the snapshots of `as_of`, and counts in `stats` what went
    /// wrong.
    /// Checks that `routes` decide are not asked.
    pub(super) async fn authorize(
        &self,
        authorizer: &dyn Authorize,
        as_of: &AsOf,
        isolation: Isolation,
        stats: &AuthorizerStats,
        routes: &View,
    ) -> Result<Verdicts, DbError> {
        if self.checks.is_empty() {
            return Ok(Verdicts::default());
        }
        let judged: Vec<Option<(bool, Arc<[String]>)>> = self
            .checks
            .iter()
            .map(|c| routes.judge(c, self.numbers[c.context], &self.contexts[c.context]))
            .collect();
        let asked: Vec<usize> = (0..self.checks.len())
            .filter(|&i| judged[i].is_none())
            .collect();
        let contexts: Vec<&Caller> = self.contexts.iter().map(|c| c.as_ref()).collect();
        if asked.len() == self.checks.len() {
            let verdicts = authorizer
                .authorize(&contexts, &self.checks, as_of, isolation)
                .await?;
            stats.record(&verdicts);
            return Ok(verdicts);
        }
        let mut verdicts = Verdicts::denying(self.checks.len());
        if !asked.is_empty() {
            let checks: Vec<Check> = asked.iter().map(|&i| self.checks[i].clone()).collect();
            let part = authorizer
                .authorize(&contexts, &checks, as_of, isolation)
                .await?;
            stats.record(&part);
            verdicts.absorb(part, &asked);
        }
        for (i, judged) in judged.iter().enumerate() {
            if let Some((visible, columns)) = judged {
                let check = &self.checks[i];
                verdicts.decide(i, *visible, (check.context, check.relid), columns);
            }
        }
        verdicts.settle(&self.checks);
        Ok(verdicts)
    }

    /// The delivery for candidate `i` (whose subscription wants `interest`),
    /// or `None` when it may not see a version of the row its filter matches.
    pub fn decide(
        &self,
        i: usize,
        interest: &Interest,
        verdicts: &Verdicts,
        bounds: &Arc<Bounds>,
    ) -> Option<Delivery> {
        let event = &self.events[self.event_of[i]];
        let renderings = self.renderings[self.event_of[i]]
            .clone()
            .unwrap_or_default();
        if event.op == Op::Truncate {
            // Reveals no row: every subscriber of the table learns of it.
            return Some(Delivery {
                event: event.clone(),
                row: None,
                old: None,
                bounds: bounds.clone(),
                renderings,
            });
        }
        let slots = self.slots[i];
        let visible = |slot: Option<usize>| slot.is_some_and(|c| verdicts.visible(c));
        let new_visible = visible(slots.new);
        let old_visible = visible(slots.old);
        let matches = |ok: bool, img: &Option<Arc<Value>>| {
            ok && img.as_ref().is_some_and(|r| interest.filter.matches(r))
        };
        if !matches(new_visible, &event.new_row) && !matches(old_visible, &event.old_row) {
            return None;
        }
        let restrict = |img: &Option<Arc<Value>>, ok: bool| {
            img.as_ref()
                .filter(|_| ok)
                .map(|i| verdicts.restrict(slots.context, event.relid, i))
        };
        Some(Delivery {
            event: event.clone(),
            row: restrict(&event.new_row, new_visible),
            old: restrict(&event.old_row, old_visible),
            bounds: bounds.clone(),
            renderings,
        })
    }
}
