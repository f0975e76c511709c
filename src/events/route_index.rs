//! For one page, the security contexts whose routes narrow them, by
//! routing key: which contexts an event's row can reach, found by looking
//! its value up instead of asking every context's route.
//!
//! Built by [`super::routing::View`] from the keys it holds for the page;
//! an event reaches a context when the new version's value is one of the
//! context's keys at the batch's end, or the old version's one of its keys
//! at the batch's start (exactly what `Route::admits` decides).

use std::collections::HashMap;
use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use serde_json::Value;

use super::Event;
use crate::db::routes::{MomentKeys, key_text};

/// Per table, the narrowed contexts by key.
#[derive(Default)]
pub(super) struct RouteIndex {
    tables: FxHashMap<u32, TableRoutes>,
}

#[derive(Default)]
struct TableRoutes {
    /// One per routed column (roles may route a table by different ones).
    columns: Vec<ColumnRoutes>,
    /// The contexts narrowed.
    narrowed: FxHashSet<u64>,
}

struct ColumnRoutes {
    column: String,
    /// Contexts by key at the batch's start (old versions).
    before: Arc<HashMap<String, Vec<u64>>>,
    /// Contexts by key at the batch's end (new versions).
    after: Arc<HashMap<String, Vec<u64>>>,
}

impl RouteIndex {
    /// Adds `context` of table `relid`, reached only through `keys` in
    /// `column`.
    pub(super) fn add(&mut self, relid: u32, context: u64, column: &str, keys: &MomentKeys) {
        let table = self.tables.entry(relid).or_default();
        let at = match table.columns.iter().position(|c| c.column == column) {
            Some(at) => at,
            None => {
                table.columns.push(ColumnRoutes {
                    column: column.to_owned(),
                    before: Arc::default(),
                    after: Arc::default(),
                });
                table.columns.len() - 1
            }
        };
        let routes = &mut table.columns[at];
        let before = Arc::make_mut(&mut routes.before);
        for key in keys.before.iter() {
            before.entry(key.clone()).or_default().push(context);
        }
        let after = Arc::make_mut(&mut routes.after);
        for key in keys.after.iter() {
            after.entry(key.clone()).or_default().push(context);
        }
        table.narrowed.insert(context);
    }

    /// The index of a later batch in which every context's keys are carried
    /// forward: both of its moments have this one's keys at its end.
    pub(super) fn carry(&mut self) {
        for table in self.tables.values_mut() {
            for routes in &mut table.columns {
                routes.before = routes.after.clone();
            }
        }
    }

    /// Whether `context` of `relid` is reached only through its keys.
    pub(super) fn narrows(&self, relid: u32, context: u64) -> bool {
        self.tables
            .get(&relid)
            .is_some_and(|t| t.narrowed.contains(&context))
    }

    /// The narrowed contexts `event` reaches, each once, and how many it
    /// does not.
    pub(super) fn reached(&self, event: &Event) -> (Vec<u64>, usize) {
        let Some(table) = self.tables.get(&event.relid) else {
            return (Vec::new(), 0);
        };
        let mut reached = Vec::new();
        for routes in &table.columns {
            let mut look = |image: Option<&Value>, by: &HashMap<String, Vec<u64>>| {
                let found = image
                    .and_then(|i| key_text(i.get(routes.column.as_str())))
                    .and_then(|key| by.get(key.as_ref()));
                reached.extend(found.into_iter().flatten());
            };
            look(event.new_row.as_deref(), &routes.after);
            look(event.old_row.as_deref(), &routes.before);
        }
        reached.sort_unstable();
        reached.dedup();
        let missed = table.narrowed.len() - reached.len();
        (reached, missed)
    }
}
