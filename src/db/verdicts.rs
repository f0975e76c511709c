//! The authorizer's answers: which checks passed, which contexts failed and
//! why, and the columns each context may select, to cut row images to.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::authorizer::{Check, ContextFailure};

/// The answers to a batch of [`Check`]s.
#[derive(Debug, Default)]
pub struct Verdicts {
    pub(super) visible: Vec<bool>,
    pub(super) columns: HashMap<(usize, u32), Arc<[String]>>,
    pub(super) failed: HashMap<usize, ContextFailure>,
    /// Checks denied because the policy raised an error on that row image.
    pub hidden_by_errors: usize,
    /// Whether the contexts had to be authorized one per call, because the
    /// call for all of them failed.
    pub isolated: bool,
    /// Moments judged now because their held snapshot could not be imported.
    pub fell_back: usize,
}

impl Verdicts {
    /// Verdicts from their parts: `visible[i]` answers check `i`; `columns`
    /// lists what each (context, table) may select.
    pub fn from_parts(visible: Vec<bool>, columns: HashMap<(usize, u32), Arc<[String]>>) -> Self {
        Verdicts {
            visible,
            columns,
            ..Verdicts::default()
        }
    }

    /// These verdicts, with `context` failed: its checks denied.
    pub fn with_failure(mut self, context: usize, failure: ContextFailure) -> Self {
        self.failed.insert(context, failure);
        self
    }

    /// Whether check `i` passed.
    pub fn visible(&self, i: usize) -> bool {
        self.visible.get(i).copied().unwrap_or(false)
    }

    /// Whether, and why, `context` could not be evaluated.
    pub fn failure(&self, context: usize) -> Option<ContextFailure> {
        self.failed.get(&context).copied()
    }

    /// How many contexts could not be evaluated.
    pub fn failed_contexts(&self) -> usize {
        self.failed.len()
    }

    /// `image` reduced to the columns `context` may select in `relid`.
    pub fn restrict(&self, context: usize, relid: u32, image: &Arc<Value>) -> Arc<Value> {
        let Some(columns) = self.columns.get(&(context, relid)) else {
            return Arc::new(Value::Object(Map::new()));
        };
        let Value::Object(fields) = image.as_ref() else {
            return image.clone();
        };
        if fields.keys().all(|k| columns.iter().any(|c| c == k)) {
            return image.clone();
        }
        let kept = fields
            .iter()
            .filter(|(k, _)| columns.iter().any(|c| c == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Arc::new(Value::Object(kept))
    }

    /// Sets the answer to check `i`, and that `context` may select
    /// `columns` of `relid`: for checks answered without the authorizer.
    pub(crate) fn decide(
        &mut self,
        i: usize,
        visible: bool,
        (context, relid): (usize, u32),
        columns: &Arc<[String]>,
    ) {
        self.visible[i] = visible;
        self.columns
            .entry((context, relid))
            .or_insert_with(|| columns.clone());
    }

    /// Denies every check of a failed context and forgets its columns.
    pub(crate) fn settle(&mut self, checks: &[Check]) {
        if self.failed.is_empty() {
            return;
        }
        for (i, check) in checks.iter().enumerate() {
            if self.failed.contains_key(&check.context) {
                self.visible[i] = false;
            }
        }
        let failed = &self.failed;
        self.columns
            .retain(|(context, _), _| !failed.contains_key(context));
    }

    /// Verdicts denying `n` checks, to [`Self::absorb`] parts into.
    pub(crate) fn denying(n: usize) -> Self {
        Verdicts {
            visible: vec![false; n],
            ..Verdicts::default()
        }
    }

    /// Takes in the verdicts of a part of the checks (`indexes[k]` is part
    /// check `k`). A context failed in any part fails; a context's columns
    /// are those it may select in every part (never more than either allows).
    pub(crate) fn absorb(&mut self, part: Verdicts, indexes: &[usize]) {
        for (k, &i) in indexes.iter().enumerate() {
            self.visible[i] = part.visible(k);
        }
        for (key, columns) in part.columns {
            let kept = match self.columns.remove(&key) {
                Some(had) => had
                    .iter()
                    .filter(|c| columns.contains(c))
                    .cloned()
                    .collect(),
                None => columns,
            };
            self.columns.insert(key, kept);
        }
        for (context, failure) in part.failed {
            self.failed.entry(context).or_insert(failure);
        }
        self.hidden_by_errors += part.hidden_by_errors;
        self.isolated |= part.isolated;
        self.fell_back += part.fell_back;
    }
}
