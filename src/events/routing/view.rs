//! A page's view of routing: the routes and keys it may use, and the
//! questions the hub asks of them (which contexts an event reaches, whether
//! a subscriber may want it, what a route decides).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

use super::{State, TableCaller, plain};
use crate::auth::Caller;
use crate::db::as_of::Moment;
use crate::db::authorizer::Check;
use crate::db::routes::{MomentKeys, Route, Shape};
use crate::events::Event;
use crate::events::route_index::RouteIndex;

/// What a page may use: the routes and keys (moved out of [`Routing`] for
/// the page, and given back with [`Routing::finish`]).
#[derive(Default)]
pub(in crate::events) struct View {
    pub(super) state: Option<State>,
    /// The page's narrowed contexts by key, and the pairs it is for.
    pub(super) index: RouteIndex,
    pub(super) indexed: Vec<TableCaller>,
    pub(super) skipped: AtomicU64,
    pub(super) decided: AtomicU64,
}

impl View {
    /// The route and keys of `caller` on `relid` (keys `None` for an
    /// everyone route), or `None` when the authorizer alone decides.
    fn usable(
        &self,
        relid: u32,
        context: u64,
        caller: &Caller,
    ) -> Option<(&Route, Option<&MomentKeys>)> {
        let state = self.state.as_ref()?;
        let route = state.route(relid, &caller.role)?.as_deref()?;
        if !plain(caller) {
            // Postgres cannot hold its role or claims: the authorizer fails it.
            return None;
        }
        let keys = match &route.shape {
            Shape::Everyone => None,
            Shape::Keyed { arms, .. } if arms.is_empty() => Some(&*NO_KEYS),
            Shape::Keyed { .. } => match state.keys.get(&(relid, context)) {
                Some((_, Some(keys))) => Some(keys),
                // Not computable for this caller: the authorizer decides.
                _ => return None,
            },
        };
        Some((route, keys))
    }

    /// The contexts of `callers` that keyed routes narrow, by key.
    pub(super) fn index_of(&self, callers: &[(u32, u64, Arc<Caller>)]) -> RouteIndex {
        let mut index = RouteIndex::default();
        for (relid, context, caller) in callers {
            if let Some((route, Some(keys))) = self.usable(*relid, *context, caller)
                && let Shape::Keyed { column, .. } = &route.shape
            {
                index.add(*relid, *context, column, keys);
            }
        }
        index
    }

    /// Whether subscriptions of `context` to `relid` can want an event only
    /// when [`Self::reached`] lists the context.
    pub(in crate::events) fn narrows(&self, relid: u32, context: u64) -> bool {
        self.index.narrows(relid, context)
    }

    /// The narrowed contexts `event` reaches (a version of its row holds one
    /// of their keys).
    pub(in crate::events) fn reached(&self, event: &Event) -> Vec<u64> {
        let (reached, missed) = self.index.reached(event);
        self.skipped.fetch_add(missed as u64, Ordering::Relaxed);
        reached
    }

    /// Whether `caller`'s subscription may want `event` at all: `false` only
    /// when its route shows that it can see neither version of the row.
    pub(in crate::events) fn admits(&self, event: &Event, context: u64, caller: &Caller) -> bool {
        let Some((route, keys)) = self.usable(event.relid, context, caller) else {
            return true;
        };
        let admits = |image: &Option<Arc<Value>>, keys: Option<&Arc<[String]>>| {
            image
                .as_ref()
                .is_some_and(|i| route.admits(i, keys.map(|k| k.as_ref())))
        };
        let admitted = admits(&event.new_row, keys.map(|k| &k.after))
            || admits(&event.old_row, keys.map(|k| &k.before));
        if !admitted {
            self.skipped.fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    /// The verdict on `check` (under `caller`, context number `context`)
    /// when the route alone decides it, with the columns the caller may select.
    pub(in crate::events) fn judge(
        &self,
        check: &Check,
        context: u64,
        caller: &Caller,
    ) -> Option<(bool, Arc<[String]>)> {
        let (route, keys) = self.usable(check.relid, context, caller)?;
        let keys = match (check.moment, keys) {
            (Moment::Now, _) => return None,
            (_, None) => None,
            (Moment::Before, Some(keys)) => Some(keys.before.as_ref()),
            (Moment::After, Some(keys)) => Some(keys.after.as_ref()),
        };
        let visible = route.verdict(&check.image, keys)?;
        self.decided.fetch_add(1, Ordering::Relaxed);
        Some((visible, route.columns.clone()))
    }
}

/// The keys of a caller when no policy lets anyone see a row.
static NO_KEYS: std::sync::LazyLock<MomentKeys> = std::sync::LazyLock::new(MomentKeys::default);
