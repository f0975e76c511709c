//! Routing events by policy: which subscribers can see a row at all, known
//! without asking the authorizer about every subscriber.
//!
//! For each (table, role) with subscribers, [`crate::db::routes`] derives a
//! route from the table's policies: "everyone", or "rows whose column holds
//! one of the caller's keys" (`user_id = current_user_id()` keys each user
//! by their id; `tenant_id in (select my_tenant_ids())` by their tenants).
//! Each caller's keys are computed once, as of the batch's two moments, and
//! kept while they cannot have changed. An event then reaches only the
//! subscribers whose keys hold its row's value; when the route is the whole
//! policy ("exact"), that also decides visibility, and the authorizer is not
//! asked; otherwise the authorizer still decides among the routed ones.
//!
//! Kept state is never trusted beyond what can be seen to change:
//! - routes hold for the catalogs' fingerprint they were derived under; a
//!   batch whose two held snapshots do not both show it is routed afresh, or
//!   (a catalog change inside the batch, a snapshot lost) not at all;
//! - keys computed in batch `c` hold in a later batch only when no table
//!   they read has had an event since `c`, and the later batch is read
//!   whole in one page (so none of its later pages can hold such an event).
//!
//! Everything here is a cache: losing it (a cancelled dispatch, a database
//! error) only means asking the authorizer, as without routing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;

use super::Event;
use super::route_index::RouteIndex;
use crate::auth::Caller;
use crate::db::as_of::AsOf;
use crate::db::routes::{MomentKeys, Route, RouteSource, Shape};

mod view;
pub(super) use view::View;

/// Routes and keys kept between batches.
pub(super) struct Routing {
    source: Arc<dyn RouteSource>,
    state: Mutex<State>,
    stats: RoutingStats,
}

/// What routing did, for `/metrics`.
#[derive(Debug, Default)]
pub struct RoutingStats {
    /// Events routed away from a security context (its keys hold neither
    /// version's value), or from a filtered subscription its route shows
    /// cannot see either version.
    skipped: AtomicU64,
    /// Checks decided by a route, without the authorizer.
    decided: AtomicU64,
    /// Callers' keys computed.
    keys_computed: AtomicU64,
    /// Routes derived (routable or not) for a (table, role).
    derived: AtomicU64,
    /// Pages that could not be routed (a snapshot lost, the catalogs changed
    /// within the batch, a database error): the authorizer decided alone.
    unrouted_pages: AtomicU64,
}

impl RoutingStats {
    /// Callers' keys computed so far.
    pub fn keys_computed(&self) -> u64 {
        self.keys_computed.load(Ordering::Relaxed)
    }

    /// The counters, as (exported name, help, value) for `/metrics`.
    pub fn counters(&self) -> [crate::metrics::CounterSpec<'_>; 5] {
        [
            (
                "pgherald_routing_skipped_total",
                "Events routed away from a security context or filtered subscription by a policy route, without the authorizer.",
                &self.skipped,
            ),
            (
                "pgherald_routing_decided_total",
                "Visibility checks decided by a policy route, without the authorizer.",
                &self.decided,
            ),
            (
                "pgherald_routing_keys_computed_total",
                "Routing keys of callers computed.",
                &self.keys_computed,
            ),
            (
                "pgherald_routing_routes_derived_total",
                "Policy routes derived for a (table, role), routable or not.",
                &self.derived,
            ),
            (
                "pgherald_routing_unrouted_pages_total",
                "Pages that could not be routed by policy, and were decided by the authorizer alone.",
                &self.unrouted_pages,
            ),
        ]
    }
}

#[derive(Default)]
struct State {
    /// The catalogs' fingerprint `routes` and `keys` hold for.
    version: Option<Arc<str>>,
    /// Per table, per role: its route, or `None` when it has none. (Looked
    /// up for every caller of every page: FxHash, as SipHash of the role
    /// names was a fifth of a page's time with 1000 callers.)
    routes: FxHashMap<u32, FxHashMap<String, Option<Arc<Route>>>>,
    /// Per (table, caller): its keys and the batch they were computed in
    /// (`None`: they could not be computed).
    keys: FxHashMap<TableCaller, (u64, Option<MomentKeys>)>,
    /// Per table: the last batch that had an event of it.
    changed: FxHashMap<u32, u64>,
    /// The last page's index, and the (table, context) pairs it was built
    /// for: reused while neither they nor their routes and keys change.
    index: Option<(Vec<TableCaller>, RouteIndex)>,
}

/// What filling in routes and keys for a page did to its callers' keys.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keys {
    /// Every key set as the last page had it (a later page of a batch).
    Kept,
    /// Every key set carried forward into a new batch.
    Carried,
    /// Some derived or computed afresh (or a mix).
    Changed,
}

/// A (table, context number).
type TableCaller = (u32, u64);

/// A (table, context number, caller).
type TableCallerOf = (u32, u64, Arc<Caller>);

impl State {
    /// The route of (`relid`, `role`): `None` if not derived yet.
    fn route(&self, relid: u32, role: &str) -> Option<&Option<Arc<Route>>> {
        self.routes.get(&relid)?.get(role)
    }
}

impl Routing {
    /// Routing with routes and keys from `source`.
    pub(super) fn new(source: Arc<dyn RouteSource>) -> Routing {
        Routing {
            source,
            state: Mutex::default(),
            stats: RoutingStats::default(),
        }
    }

    /// What routing did.
    pub(super) fn stats(&self) -> &RoutingStats {
        &self.stats
    }

    /// Notes the tables of a page of batch `epoch`: their events may change
    /// keys read from them. Every page is noted, whoever it reaches.
    pub(super) fn note(&self, events: &[Arc<Event>], epoch: u64) {
        let mut state = self.state.lock().expect("routing state");
        for event in events {
            state.changed.insert(event.relid, epoch);
        }
    }

    /// The routes and keys a page of batch `epoch` may use for `callers`
    /// (table, caller: distinct), deriving and computing what is missing or
    /// stale; also those of `ahead` (contexts new since the last page), so
    /// that their first event finds them. `whole`: the page is the whole
    /// batch. Give the view back with [`Routing::finish`].
    pub(super) async fn prepare(
        &self,
        callers: &[(u32, u64, Arc<Caller>)],
        ahead: &[(u32, u64, Arc<Caller>)],
        as_of: &AsOf,
        epoch: u64,
        whole: bool,
    ) -> View {
        let Some(version) = as_of.routing_version() else {
            self.stats.unrouted_pages.fetch_add(1, Ordering::Relaxed);
            return View::default();
        };
        // Taken out for the page: no lock across the awaits, and a dispatch
        // cancelled midway leaves an empty cache, not a wrong one.
        let mut state = std::mem::take(&mut *self.state.lock().expect("routing state"));
        if state.version.as_ref() != Some(version) {
            state.routes.clear();
            state.keys.clear();
            state.index = None;
            state.version = Some(version.clone());
        }
        let filled = self.fill(&mut state, (callers, ahead), as_of, epoch, whole);
        let Some(keys) = filled.await else {
            self.stats.unrouted_pages.fetch_add(1, Ordering::Relaxed);
            state.index = None;
            self.keep(state);
            return View::default();
        };
        let pairs: Vec<TableCaller> = callers.iter().map(|(r, c, _)| (*r, *c)).collect();
        // Building the index costs a look at every context; most pages can
        // reuse the last one.
        let kept = match (state.index.take(), keys) {
            (Some((built_for, index)), Keys::Kept) if built_for == pairs => Some(index),
            (Some((built_for, mut index)), Keys::Carried) if built_for == pairs => {
                index.carry();
                Some(index)
            }
            _ => None,
        };
        let mut view = View {
            state: Some(state),
            ..View::default()
        };
        view.index = match kept {
            Some(index) => index,
            None => view.index_of(callers),
        };
        view.indexed = pairs;
        view
    }

    /// Gives back what `view` used, and counts what it did.
    pub(super) fn finish(&self, view: View) {
        let add = |to: &AtomicU64, from: &AtomicU64| {
            to.fetch_add(from.load(Ordering::Relaxed), Ordering::Relaxed);
        };
        add(&self.stats.skipped, &view.skipped);
        add(&self.stats.decided, &view.decided);
        if let Some(mut state) = view.state {
            state.index = Some((view.indexed, view.index));
            self.keep(state);
        }
    }

    fn keep(&self, mut state: State) {
        let mut kept = self.state.lock().expect("routing state");
        // Tables noted while the state was out (none: only the listener
        // dispatches, one page at a time).
        for (table, at) in std::mem::take(&mut kept.changed) {
            let seen = state.changed.entry(table).or_insert(at);
            *seen = (*seen).max(at);
        }
        *kept = state;
    }

    /// Derives missing routes and computes missing or stale keys of the
    /// page's callers and of those ahead, and tells what that did to the
    /// keys; `None` when the page cannot be routed.
    async fn fill(
        &self,
        state: &mut State,
        (callers, ahead): (&[TableCallerOf], &[TableCallerOf]),
        as_of: &AsOf,
        epoch: u64,
        whole: bool,
    ) -> Option<Keys> {
        let mut missing: Vec<(u32, String)> = callers
            .iter()
            .chain(ahead)
            .filter(|(relid, _, c)| state.route(*relid, &c.role).is_none())
            .map(|(relid, _, c)| (*relid, c.role.clone()))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        let derived = !missing.is_empty();
        if !missing.is_empty() {
            let derived = match self.source.derive(&missing, as_of).await {
                Ok(Some(derived)) => derived,
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!(error = %e, "deriving routes failed; authorizing unrouted");
                    return None;
                }
            };
            if Some(derived.version.as_str()) != state.version.as_deref() {
                tracing::debug!(derived = %derived.version, held = ?state.version,
                    "routes derived under another catalog version; not routing this page");
                return None;
            }
            self.stats
                .derived
                .fetch_add(missing.len() as u64, Ordering::Relaxed);
            for ((relid, role), route) in missing.into_iter().zip(derived.routes) {
                state.routes.entry(relid).or_default().insert(role, route);
            }
        }
        let (mut kept, mut carried) = (0usize, 0usize);
        let mut stale: Vec<(u32, u64, Arc<Caller>, Arc<Route>)> = Vec::new();
        for (relid, context, caller) in callers.iter().chain(ahead) {
            // (Fields borrowed apart: keys are updated while routes are read.)
            let route = state.routes.get(relid).and_then(|r| r.get(&caller.role));
            let Some(Some(route)) = route else {
                continue;
            };
            let Shape::Keyed { arms, reads, .. } = &route.shape else {
                continue;
            };
            if arms.is_empty() {
                continue;
            }
            let cached = state.keys.get_mut(&(*relid, *context));
            let fresh = cached.is_some_and(|(at, keys)| {
                let reusable = *at != epoch
                    && whole
                    && reads
                        .iter()
                        .all(|t| state.changed.get(t).is_none_or(|c| c <= at));
                if reusable {
                    // Carried forward: what it read has not changed since
                    // the end of batch `at`, which is where this batch
                    // starts, so both moments have its end's keys.
                    *at = epoch;
                    if let Some(keys) = keys {
                        keys.before = keys.after.clone();
                    }
                    carried += 1;
                } else if *at == epoch {
                    kept += 1;
                }
                *at == epoch
            });
            if !fresh {
                stale.push((*relid, *context, caller.clone(), route.clone()));
            }
        }
        if !ahead.is_empty() {
            // (A context both ahead and among the callers, once.)
            stale.sort_unstable_by_key(|(relid, context, ..)| (*relid, *context));
            stale.dedup_by_key(|(relid, context, ..)| (*relid, *context));
        }
        let computed = !stale.is_empty();
        if computed {
            let found = self.compute(&stale, as_of).await?;
            self.stats
                .keys_computed
                .fetch_add(stale.len() as u64, Ordering::Relaxed);
            for ((relid, context, _, _), keys) in stale.iter().zip(found) {
                state.keys.insert((*relid, *context), (epoch, keys));
            }
        }
        Some(match (derived || computed, kept, carried) {
            (false, _, 0) => Keys::Kept,
            (false, 0, _) => Keys::Carried,
            _ => Keys::Changed,
        })
    }

    /// Keys of `stale` callers, one database call per moment.
    async fn compute(
        &self,
        stale: &[(u32, u64, Arc<Caller>, Arc<Route>)],
        as_of: &AsOf,
    ) -> Option<Vec<Option<MomentKeys>>> {
        let mut callers: Vec<&Caller> = Vec::new();
        let mut index: FxHashMap<u64, usize> = FxHashMap::default();
        let mut questions = Vec::with_capacity(stale.len());
        for (_, context, caller, route) in stale {
            let Shape::Keyed { arms, .. } = &route.shape else {
                continue;
            };
            if !plain(caller) {
                questions.push(None);
                continue;
            }
            let at = *index.entry(*context).or_insert_with(|| {
                callers.push(caller);
                callers.len() - 1
            });
            questions.push(Some((at, arms.clone())));
        }
        let asked: Vec<(usize, Arc<[_]>)> = questions.iter().flatten().cloned().collect();
        let mut answers = match self.source.keys(&callers, &asked, as_of).await {
            Ok(Some(answers)) => answers.into_iter(),
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(error = %e, "computing routing keys failed; authorizing unrouted");
                return None;
            }
        };
        Some(
            questions
                .iter()
                .map(|q| q.as_ref().and_then(|_| answers.next().flatten()))
                .collect(),
        )
    }
}

/// Whether Postgres can hold `caller`'s role and claims: no NUL in either
/// (serialized claims spell a NUL `\u0000`; a claim holding that text
/// literally is taken for one too, which only means asking the authorizer).
fn plain(caller: &Caller) -> bool {
    let claims = &caller.key()[caller.role.len()..];
    !caller.role.contains('\0') && !claims.contains("\\u0000")
}
