//! The shape of a table's SELECT policies, as routing needs it: does every
//! permissive policy compare one column with something that depends only on
//! the caller (`user_id = current_user_id()`, `tenant_id in (select ...)`)?
//! Then a caller may only see rows whose column holds one of its "keys", the
//! values that something takes for it ([`Arm`]s, as SQL the database runs
//! per caller).
//!
//! Read from the policy's stored tree ([`super::node_tree`]), never guessed
//! from its text; the text (Postgres's own rendering of the same tree, which
//! parenthesises every operator) only supplies the SQL of each arm, and must
//! split exactly as the tree does. Anything this module does not recognise
//! is not routed: the generic authorizer decides, as before.
//!
//! What an arm reaches (functions, tables) is collected in [`Reach`] for
//! [`super::routes`] to vet: only functions whose results depend on the
//! caller and tracked rows, never on time or untracked data.

use std::collections::BTreeSet;

use super::node_tree::{Node, Value};

/// Equality operators routing trusts, with their operand type: text equality
/// of the canonical forms of two values is exactly equality of the values.
/// (int2 = int2, int4 = int4, int8 = int8, text = text, uuid = uuid.)
const EQUALITIES: [(i64, i64); 5] = [(94, 21), (96, 23), (410, 20), (98, 25), (2972, 2950)];

/// Collations under which text equality is byte equality (none, default,
/// "C", "POSIX"); other collations may be nondeterministic.
const DETERMINISTIC_COLLATIONS: [i64; 4] = [0, 100, 950, 951];

/// Nodes an arm's caller-only side may consist of.
const SCALAR_NODES: [&str; 14] = [
    "FUNCEXPR",
    "OPEXPR",
    "CONST",
    "RELABELTYPE",
    "COERCEVIAIO",
    "COALESCEEXPR",
    "NULLIFEXPR",
    "CASEEXPR",
    "CASEWHEN",
    "CASETESTEXPR",
    "BOOLEXPR",
    "SQLVALUEFUNCTION",
    "NULLTEST",
    "BOOLEANTEST",
];

/// `SQLValueFunction` operations from `CURRENT_ROLE` on (roles, catalog,
/// schema); the ones before are dates and times.
const FIRST_SESSION_SQL_VALUE: i64 = 9;

/// What the caller's keys are computed from: the SQL of one arm.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Arm {
    /// One value: `column = <expr>`.
    Scalar(String),
    /// The rows of a one-column query: `column IN (<query>)`.
    Set(String),
}

/// The functions and tables arms reach, to be vetted before routing on them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reach {
    /// Functions called (including operators' functions).
    pub functions: BTreeSet<u32>,
    /// Tables read.
    pub tables: BTreeSet<u32>,
}

/// The routable part of one table's policies for one role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Keyed {
    /// The column (attribute number) compared.
    pub attno: i64,
    /// Every arm of every permissive policy.
    pub arms: Vec<Arm>,
    /// Whether "the row's column holds a key" is the whole policy (else only
    /// a necessary condition, and the authorizer still decides).
    pub exact: bool,
    /// What the arms reach.
    pub reach: Reach,
}

/// One policy as `herald.route_policies` returns it.
pub struct Policy<'p> {
    /// Permissive (ORed) or restrictive (ANDed).
    pub permissive: bool,
    /// Its `USING` clause as a stored tree.
    pub tree: &'p str,
    /// The same, as SQL.
    pub expr: &'p str,
}

/// The routable shape of `policies` (those that apply to one role), or
/// `None` when they are not all of a shape routing understands.
pub fn keyed(policies: &[Policy<'_>]) -> Option<Keyed> {
    let mut out: Option<Keyed> = None;
    let mut restrictive = false;
    for policy in policies {
        if !policy.permissive {
            restrictive = true;
            continue;
        }
        let Ok(Value::Node(tree)) = super::node_tree::parse(policy.tree) else {
            return None;
        };
        union(&mut out, arms(&tree, policy.expr)?)?;
    }
    // No permissive policy: nobody sees a row; an empty key set says so.
    let mut keyed = out.unwrap_or(Keyed {
        attno: 0,
        arms: Vec::new(),
        exact: true,
        reach: Reach::default(),
    });
    keyed.exact &= !restrictive;
    Some(keyed)
}

/// Adds `part`'s arms to `all` (ORed: either lets a row through); `None`
/// when they route on different columns.
fn union(all: &mut Option<Keyed>, part: Keyed) -> Option<()> {
    match all {
        None => *all = Some(part),
        Some(all) if all.attno == part.attno => {
            all.arms.extend(part.arms);
            all.exact &= part.exact;
            all.reach.functions.extend(part.reach.functions);
            all.reach.tables.extend(part.reach.tables);
        }
        Some(_) => return None,
    }
    Some(())
}

/// The arms of one boolean expression and its SQL.
fn arms(node: &Node, sql: &str) -> Option<Keyed> {
    let sql = unwrap_parens(sql.trim());
    match node.name.as_str() {
        "BOOLEXPR" if node.token("boolop") == Some("or") => {
            let args = node.list("args");
            let parts = split_top(sql, " OR ")?;
            if parts.len() != args.len() {
                return None;
            }
            let mut all: Option<Keyed> = None;
            for (arg, part) in args.iter().zip(parts) {
                union(&mut all, arms(arg.as_node()?, part)?)?;
            }
            all
        }
        "BOOLEXPR" if node.token("boolop") == Some("and") => {
            // Any conjunct that routes is a necessary condition.
            let args = node.list("args");
            let parts = split_top(sql, " AND ")?;
            if parts.len() != args.len() {
                return None;
            }
            args.iter().zip(parts).find_map(|(arg, part)| {
                let mut keyed = arms(arg.as_node()?, part)?;
                keyed.exact = false;
                Some(keyed)
            })
        }
        "OPEXPR" => scalar_arm(node, sql),
        "SUBLINK" => set_arm(node, sql),
        _ => None,
    }
}

/// `column = <caller-only expression>`, either way round.
fn scalar_arm(node: &Node, sql: &str) -> Option<Keyed> {
    let args = node.list("args");
    let [left, right] = args else { return None };
    let (left, right) = (left.as_node()?, right.as_node()?);
    let parts = split_top(sql, " = ")?;
    let [left_sql, right_sql] = parts.as_slice() else {
        return None;
    };
    let (column, value, value_sql) = match (is_column(left), is_column(right)) {
        (true, false) => (left, right, *right_sql),
        (false, true) => (right, left, *left_sql),
        _ => return None,
    };
    let attno = equality_column(node, column)?;
    let mut reach = Reach::default();
    caller_only(value, &mut reach)?;
    Some(Keyed {
        attno,
        arms: vec![Arm::Scalar(value_sql.trim().to_owned())],
        exact: true,
        reach,
    })
}

/// `column IN (<one-column query>)`.
fn set_arm(node: &Node, sql: &str) -> Option<Keyed> {
    if node.number("subLinkType") != Some(2) || node.list("operName") != [Value::Token("=".into())]
    {
        return None;
    }
    let test = node.node("testexpr")?;
    let [column, param] = test.list("args") else {
        return None;
    };
    let (column, param) = (column.as_node()?, param.as_node()?);
    if !is_column(column) || param.name != "PARAM" {
        return None;
    }
    let attno = equality_column(test, column)?;
    let query = node.node("subselect")?;
    let mut reach = Reach::default();
    vet_query(query, &mut reach, None)?;
    let columns = query
        .list("targetList")
        .iter()
        .filter_map(Value::as_node)
        .filter(|t| t.token("resjunk") != Some("true"))
        .count();
    if columns != 1 {
        return None;
    }
    let parts = split_top(sql, " IN ")?;
    let [_, query_sql] = parts.as_slice() else {
        return None;
    };
    let query_sql = unwrap_parens(query_sql);
    if !query_sql.starts_with("SELECT ") {
        return None;
    }
    Some(Keyed {
        attno,
        arms: vec![Arm::Set(query_sql.to_owned())],
        exact: true,
        reach,
    })
}

/// A column of the policy's own table.
fn is_column(node: &Node) -> bool {
    node.name == "VAR" && node.number("varlevelsup") == Some(0) && node.number("varno") == Some(1)
}

/// The column's number, when `op` is an equality routing trusts on its type.
fn equality_column(op: &Node, column: &Node) -> Option<i64> {
    let opno = op.number("opno")?;
    let vartype = column.number("vartype")?;
    let trusted = EQUALITIES.contains(&(opno, vartype))
        && DETERMINISTIC_COLLATIONS.contains(&op.number("inputcollid").unwrap_or(0));
    trusted.then(|| column.number("varattno")).flatten()
}

/// An expression of the caller alone: no columns, no subqueries, nothing
/// of time; its functions go into `reach`.
fn caller_only(node: &Node, reach: &mut Reach) -> Option<()> {
    for n in node.walk() {
        if !SCALAR_NODES.contains(&n.name.as_str()) {
            return None;
        }
        note_functions(n, reach)?;
    }
    Some(())
}

/// A query (a policy's subquery, a SQL function's body) whose rows depend
/// only on the caller and on tables: no reference to an outer row, no
/// parameters, no writes or locks, nothing of time; its functions and
/// tables go into `reach`. Range-table entries of relation `skip` are
/// ignored (the view a function body was parsed as).
pub fn vet_query(query: &Node, reach: &mut Reach, skip: Option<u32>) -> Option<()> {
    for n in query.walk() {
        match n.name.as_str() {
            "QUERY" => {
                let plain = n.number("commandType") == Some(1)
                    && n.token("hasModifyingCTE") != Some("true")
                    && n.token("hasForUpdate") != Some("true");
                if !plain {
                    return None;
                }
            }
            "VAR" if n.number("varlevelsup") != Some(0) => return None,
            "PARAM" if n.number("paramkind") != Some(2) => return None,
            "RANGETBLENTRY" if skip.is_some() && n.number("relid") == skip.map(i64::from) => {}
            "RANGETBLENTRY" => match n.number("rtekind") {
                Some(0) if n.token("relkind") == Some("r") => {
                    reach.tables.insert(u32::try_from(n.number("relid")?).ok()?);
                }
                Some(0 | 4 | 7) | None => return None,
                Some(_) => {}
            },
            _ => note_functions(n, reach)?,
        }
    }
    Some(())
}

/// Adds the functions node `n` calls to `reach`; `None` for a node that
/// reads the time or calls a function by an unknown oid.
fn note_functions(n: &Node, reach: &mut Reach) -> Option<()> {
    let field = match n.name.as_str() {
        "FUNCEXPR" => "funcid",
        "OPEXPR" | "DISTINCTEXPR" | "NULLIFEXPR" | "SCALARARRAYOPEXPR" => "opfuncid",
        "AGGREF" => "aggfnoid",
        "WINDOWFUNC" => "winfnoid",
        "SQLVALUEFUNCTION" => {
            return (n.number("op")? >= FIRST_SESSION_SQL_VALUE).then_some(());
        }
        _ => return Some(()),
    };
    let oid = u32::try_from(n.number(field)?).ok().filter(|&o| o != 0)?;
    reach.functions.insert(oid);
    Some(())
}

/// `sql` without parentheses that enclose all of it.
fn unwrap_parens(mut sql: &str) -> &str {
    loop {
        let inner = sql.trim();
        let enclosed = inner.starts_with('(')
            && inner.ends_with(')')
            && split_top(&inner[1..inner.len() - 1], "\u{0}").is_some()
            && closing_of_first(inner) == Some(inner.len() - 1);
        if !enclosed {
            return inner;
        }
        sql = &inner[1..inner.len() - 1];
    }
}

/// Where the parenthesis opening `sql` closes.
fn closing_of_first(sql: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut at = 0;
    let bytes = sql.as_bytes();
    while at < bytes.len() {
        match bytes[at] {
            b'\'' | b'"' => at = skip_quoted(bytes, at)?,
            b'(' => depth += 1,
            b')' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(at);
                }
            }
            _ => {}
        }
        at += 1;
    }
    None
}

/// `sql` split at `separator` where it stands outside parentheses and
/// quotes; `None` when the parentheses or quotes do not balance.
fn split_top<'s>(sql: &'s str, separator: &str) -> Option<Vec<&'s str>> {
    let bytes = sql.as_bytes();
    let sep = separator.as_bytes();
    let mut parts = Vec::new();
    let (mut depth, mut start, mut at) = (0usize, 0, 0);
    while at < bytes.len() {
        match bytes[at] {
            b'\'' | b'"' => at = skip_quoted(bytes, at)?,
            b'(' => depth += 1,
            b')' => depth = depth.checked_sub(1)?,
            _ if depth == 0 && bytes[at..].starts_with(sep) => {
                parts.push(&sql[start..at]);
                at += sep.len();
                start = at;
                continue;
            }
            _ => {}
        }
        at += 1;
    }
    (depth == 0).then(|| {
        parts.push(&sql[start..]);
        parts
    })
}

/// The index of the quote closing the literal or identifier opened at
/// `open` (doubled quotes stay inside; in an `E'...'` literal, so does a
/// backslash-escaped one).
fn skip_quoted(bytes: &[u8], open: usize) -> Option<usize> {
    let quote = bytes[open];
    let escapes = quote == b'\'' && open > 0 && matches!(bytes[open - 1], b'E' | b'e');
    let mut at = open + 1;
    while at < bytes.len() {
        match bytes[at] {
            b'\\' if escapes => at += 1,
            b if b == quote && bytes.get(at + 1) == Some(&quote) => at += 1,
            b if b == quote => return Some(at),
            _ => {}
        }
        at += 1;
    }
    None
}

#[cfg(test)]
#[path = "policy_shape_tests.rs"]
mod tests;
