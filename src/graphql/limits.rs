//! Cost limits, checked on a request's text before juniper sees it: a
//! subscription has exactly one root field (the GraphQL spec's rule, which
//! juniper does not enforce: aliases would otherwise register one stream
//! each), and every operation stays within a depth, a number of fields
//! (aliases count) and a complexity. Introspection (`__schema`, `__type`) is
//! exempt: its standard query is deep but bounded by the schema.

use std::collections::HashMap;

use graphql_parser::query::{
    Definition, Document, FragmentDefinition, OperationDefinition, Selection, SelectionSet, Value,
};

/// The limits, from configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CostLimits {
    /// Deepest field nesting.
    pub max_depth: usize,
    /// Field selections per operation, fragments expanded, aliases counted.
    pub max_fields: usize,
    /// Fields weighted by the rows a list may return (`first`, default 100).
    pub max_complexity: u64,
}

impl Default for CostLimits {
    fn default() -> Self {
        CostLimits {
            max_depth: 10,
            max_fields: 500,
            max_complexity: 50_000,
        }
    }
}

/// Why a request was refused; the message is shown to the client.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitError {
    /// A subscription with more (or fewer) than one root field.
    #[error("a subscription must select exactly one root field (found {0})")]
    RootFields(usize),
    /// Too deep.
    #[error("query is too deep: depth {found}, at most {max}")]
    Depth {
        /// Depth found.
        found: usize,
        /// Limit.
        max: usize,
    },
    /// Too many fields.
    #[error("query selects too many fields: {found}, at most {max}")]
    Fields {
        /// Fields found.
        found: usize,
        /// Limit.
        max: usize,
    },
    /// Too expensive.
    #[error("query is too complex: {found}, at most {max} (lists count `first` rows each)")]
    Complexity {
        /// Complexity found.
        found: u64,
        /// Limit.
        max: u64,
    },
}

/// Checks a GraphQL request payload (`{query, operationName, variables}`,
/// as sent over HTTP and WebSocket); a payload without a query passes (the
/// protocol layer reports that).
pub fn check_payload(payload: &serde_json::Value, limits: &CostLimits) -> Result<(), LimitError> {
    let Some(query) = payload.get("query").and_then(serde_json::Value::as_str) else {
        return Ok(());
    };
    let operation = payload
        .get("operationName")
        .and_then(serde_json::Value::as_str);
    check(query, operation, payload.get("variables"), limits)
}

/// Rows a list field returns unless `first` says otherwise.
const DEFAULT_ROWS: u64 = 100;
/// Fragment spreads followed before a cycle is assumed (validation reports it).
const MAX_SPREADS: usize = 64;

/// Checks operation `operation_name` (or the only one) of `query` against
/// `limits`. Text that does not parse, or names no operation, passes: juniper
/// reports those with its own errors.
pub fn check(
    query: &str,
    operation_name: Option<&str>,
    variables: Option<&serde_json::Value>,
    limits: &CostLimits,
) -> Result<(), LimitError> {
    let Ok(document) = graphql_parser::parse_query::<&str>(query) else {
        return Ok(());
    };
    let fragments: HashMap<&str, &FragmentDefinition<&str>> = document
        .definitions
        .iter()
        .filter_map(|d| match d {
            Definition::Fragment(f) => Some((f.name, f)),
            Definition::Operation(_) => None,
        })
        .collect();
    let Some((selection, subscription)) = operation(&document, operation_name) else {
        return Ok(());
    };
    let walk = Walk {
        fragments: &fragments,
        variables,
        paged_roots: !subscription,
    };
    let mut cost = Cost::default();
    walk.selection_set(selection, 1, 1, &mut cost, 0);
    if subscription {
        let roots = walk.root_fields(selection, 0);
        if roots != 1 {
            return Err(LimitError::RootFields(roots));
        }
    }
    if cost.depth > limits.max_depth {
        return Err(LimitError::Depth {
            found: cost.depth,
            max: limits.max_depth,
        });
    }
    if cost.fields > limits.max_fields {
        return Err(LimitError::Fields {
            found: cost.fields,
            max: limits.max_fields,
        });
    }
    if cost.complexity > limits.max_complexity {
        return Err(LimitError::Complexity {
            found: cost.complexity,
            max: limits.max_complexity,
        });
    }
    Ok(())
}

/// The selection set of the operation to run, and whether it is a subscription.
fn operation<'d>(
    document: &'d Document<'d, &'d str>,
    name: Option<&str>,
) -> Option<(&'d SelectionSet<'d, &'d str>, bool)> {
    let mut found = document.definitions.iter().filter_map(|d| match d {
        Definition::Operation(op) => Some(op),
        Definition::Fragment(_) => None,
    });
    let pick = |op: &'d OperationDefinition<'d, &'d str>| match op {
        OperationDefinition::SelectionSet(s) => (None, s, false),
        OperationDefinition::Query(q) => (q.name, &q.selection_set, false),
        OperationDefinition::Mutation(m) => (m.name, &m.selection_set, false),
        OperationDefinition::Subscription(s) => (s.name, &s.selection_set, true),
    };
    match name {
        Some(wanted) => found
            .map(pick)
            .find(|(n, _, _)| *n == Some(wanted))
            .map(|(_, s, sub)| (s, sub)),
        None => {
            let first = found.next()?;
            if found.next().is_some() {
                return None;
            }
            let (_, s, sub) = pick(first);
            Some((s, sub))
        }
    }
}

#[derive(Default)]
struct Cost {
    depth: usize,
    fields: usize,
    complexity: u64,
}

struct Walk<'a> {
    fragments: &'a HashMap<&'a str, &'a FragmentDefinition<'a, &'a str>>,
    variables: Option<&'a serde_json::Value>,
    /// Root fields with a selection return pages (`first`, default 100 rows).
    paged_roots: bool,
}

impl<'a> Walk<'a> {
    /// Adds the cost of `set` at `depth`, each field counted `weight` times.
    fn selection_set(
        &self,
        set: &SelectionSet<'a, &'a str>,
        depth: usize,
        weight: u64,
        cost: &mut Cost,
        spreads: usize,
    ) {
        for item in &set.items {
            match item {
                Selection::Field(field) => {
                    if field.name.starts_with("__") {
                        // Introspection and `__typename`: free.
                        continue;
                    }
                    cost.depth = cost.depth.max(depth);
                    cost.fields += 1;
                    cost.complexity = cost.complexity.saturating_add(weight);
                    if !field.selection_set.items.is_empty() {
                        let rows = self.rows(&field.arguments, depth == 1 && self.paged_roots);
                        self.selection_set(
                            &field.selection_set,
                            depth + 1,
                            weight.saturating_mul(rows),
                            cost,
                            spreads,
                        );
                    }
                }
                Selection::InlineFragment(inline) => {
                    self.selection_set(&inline.selection_set, depth, weight, cost, spreads)
                }
                Selection::FragmentSpread(spread) if spreads < MAX_SPREADS => {
                    if let Some(fragment) = self.fragments.get(spread.fragment_name) {
                        self.selection_set(
                            &fragment.selection_set,
                            depth,
                            weight,
                            cost,
                            spreads + 1,
                        );
                    }
                }
                Selection::FragmentSpread(_) => {}
            }
        }
    }

    /// Root fields of `set`, fragments expanded.
    fn root_fields(&self, set: &SelectionSet<'a, &'a str>, spreads: usize) -> usize {
        set.items
            .iter()
            .map(|item| match item {
                Selection::Field(_) => 1,
                Selection::InlineFragment(inline) => {
                    self.root_fields(&inline.selection_set, spreads)
                }
                Selection::FragmentSpread(spread) if spreads < MAX_SPREADS => self
                    .fragments
                    .get(spread.fragment_name)
                    .map_or(0, |f| self.root_fields(&f.selection_set, spreads + 1)),
                Selection::FragmentSpread(_) => 0,
            })
            .sum()
    }

    /// How many times a field's selection may be resolved: its `first`, or
    /// the default page size for a page (a query's root field), else once.
    fn rows(&self, arguments: &[(&'a str, Value<'a, &'a str>)], page: bool) -> u64 {
        let first = arguments.iter().find(|(name, _)| *name == "first");
        let value = match first {
            Some((_, Value::Int(n))) => n.as_i64(),
            Some((_, Value::Variable(v))) => self
                .variables
                .and_then(|vars| vars.get(*v))
                .and_then(serde_json::Value::as_i64),
            _ => None,
        };
        match value {
            Some(n) => n.clamp(1, i64::MAX) as u64,
            None if page => DEFAULT_ROWS,
            None => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn run(query: &str) -> Result<(), LimitError> {
        check(query, None, None, &CostLimits::default())
    }

    #[test]
    fn a_subscription_selects_exactly_one_root_field_fragments_and_aliases_included() {
        assert_eq!(run("subscription { a { op } }"), Ok(()));
        assert_eq!(
            run("subscription { a: changes { op } b: changes { op } }"),
            Err(LimitError::RootFields(2))
        );
        assert_eq!(
            run("subscription { ...F } fragment F on Subscription { a { op } b { op } }"),
            Err(LimitError::RootFields(2))
        );
        assert_eq!(
            run("subscription { ... on Subscription { a { op } } c { op } }"),
            Err(LimitError::RootFields(2))
        );
        // Queries may select several root fields.
        assert_eq!(run("{ a { rows { id } } b { rows { id } } }"), Ok(()));
    }

    #[test]
    fn depth_fields_and_complexity_are_bounded() {
        let deep = format!("{{ {}x{} }}", "a { ".repeat(11), " }".repeat(11));
        assert!(matches!(
            run(&deep),
            Err(LimitError::Depth { found: 12, .. })
        ));
        let wide = format!(
            "{{ {} }}",
            (0..501)
                .map(|i| format!("f{i}: x"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        assert!(matches!(
            run(&wide),
            Err(LimitError::Fields { found: 501, .. })
        ));
        // 1000 rows × 1000 rows of 1 field each.
        let costly = "{ t(first: 1000) { rows(first: 1000) { id } } }";
        assert!(matches!(run(costly), Err(LimitError::Complexity { .. })));
        // A full page of a wide row is fine; ten of them in one request are not.
        let page = "t(first: 1000) { rows { a b c d e f g h i j } endCursor }";
        assert_eq!(run(&format!("{{ {page} }}")), Ok(()));
        let pages: String = (0..10).map(|i| format!("p{i}: {page} ")).collect();
        assert!(matches!(
            run(&format!("{{ {pages} }}")),
            Err(LimitError::Complexity { .. })
        ));
        // Pages default to 100 rows.
        let defaulted: String = (0..60)
            .map(|i| format!("p{i}: t {{ rows {{ a b c d e f g h }} }} "))
            .collect();
        let many_fields = CostLimits {
            max_fields: 10_000,
            ..CostLimits::default()
        };
        assert!(matches!(
            check(&format!("{{ {defaulted} }}"), None, None, &many_fields),
            Err(LimitError::Complexity { found: 54_060, .. })
        ));
        let fine = "{ t(first: 10) { rows { id title } endCursor } }";
        assert_eq!(run(fine), Ok(()));
        // `first` from a variable.
        let q = "query($n: Int) { t(first: $n) { rows(first: $n) { id } } }";
        let vars = json!({"n": 1000});
        assert!(check(q, None, Some(&vars), &CostLimits::default()).is_err());
        let vars = json!({"n": 5});
        assert!(check(q, None, Some(&vars), &CostLimits::default()).is_ok());
    }

    #[test]
    fn introspection_is_exempt_and_fragment_cycles_terminate() {
        let introspection = format!(
            "{{ __schema {{ types {{ {}name{} }} }} }}",
            "ofType { ".repeat(20),
            " }".repeat(20)
        );
        assert_eq!(run(&introspection), Ok(()));
        let cyclic = "{ ...A } fragment A on Query { x { ...B } } fragment B on X { y { ...A } }";
        // Validation reports the cycle; here it only has to end (deep, so refused).
        assert!(matches!(run(cyclic), Err(LimitError::Depth { .. })));
    }

    #[test]
    fn the_named_operation_is_the_one_checked() {
        let q = "subscription One { a { op } } subscription Two { a { op } b { op } }";
        let limits = CostLimits::default();
        assert_eq!(check(q, Some("One"), None, &limits), Ok(()));
        assert_eq!(
            check(q, Some("Two"), None, &limits),
            Err(LimitError::RootFields(2))
        );
    }
}
