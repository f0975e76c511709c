//! Filters as index entries: a filter that requires one column to equal
//! one of some values (`{"user_id": {"eq": X}}`, or such a test ANDed with
//! others) is found by those values, so the hub looks an event's row up
//! instead of evaluating every subscription's filter.
//!
//! An index only narrows: whoever it finds is still checked with
//! [`super::Filter::matches`]. What it must never do is miss a match, so a
//! [`Key`] is equal for two values exactly when the filter's equality holds
//! between them (numbers by value, uuids by their bits, text by its bytes,
//! `character(n)` without trailing spaces). Domains whose equality is not a
//! plain identity of a normal form (floats, json, arrays) are not indexed.

use serde_json::Value;

use super::Filter;
use super::eval::{Check, Cmp, Domain, Node, Test};
use super::number::Num;
use super::value::Scalar;

/// A value as an index key: equal keys for values the filter finds equal.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key(Inner);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Inner {
    Num(Num),
    Bool(bool),
    Text(String),
    Uuid(u128),
    Time(i64),
    Enum(usize),
}

/// Where an indexed filter looks in a row image: a column, read as its
/// type.
#[derive(Clone, Debug)]
pub struct Probe {
    column: String,
    domain: Domain,
    /// Names the (column, type) pair: filters probing the same name share
    /// an index.
    name: String,
}

impl Probe {
    /// Identifies the column and how it is read.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key of `image`'s value, `None` when it is NULL or unreadable
    /// (no indexed filter can match it then).
    pub fn key(&self, image: &Value) -> Option<Key> {
        let value = image.get(&self.column).filter(|v| !v.is_null())?;
        key_of(super::eval::read(&self.domain, value)?)
    }
}

impl Filter {
    /// The column this filter requires to equal one of some values, and
    /// their keys; `None` when it requires no such thing in indexable form.
    pub fn probe(&self) -> Option<(Probe, Vec<Key>)> {
        let test = match &self.root {
            Node::Test(t) => Some(t),
            Node::All(nodes) => nodes.iter().find_map(|n| match n {
                Node::Test(t) if indexable(t) => Some(t),
                _ => None,
            }),
            _ => None,
        }
        .filter(|t| indexable(t))?;
        let keys = match &test.check {
            Check::Cmp(Cmp::Eq, want) => vec![key_of(want.clone())?],
            Check::In(list) => list
                .iter()
                .map(|w| key_of(w.clone()))
                .collect::<Option<Vec<Key>>>()?,
            _ => return None,
        };
        let probe = Probe {
            name: format!("{}\0{:?}", test.column, test.domain),
            column: test.column.clone(),
            domain: test.domain.clone(),
        };
        Some((probe, keys))
    }
}

/// Whether `test` is an equality on a domain with plain keys.
fn indexable(test: &Test) -> bool {
    let equality = matches!(test.check, Check::Cmp(Cmp::Eq, _) | Check::In(_));
    let plain = matches!(
        test.domain,
        Domain::Number
            | Domain::Bool
            | Domain::Text { .. }
            | Domain::Uuid
            | Domain::Time(_)
            | Domain::Enum(_)
            | Domain::Other
    );
    equality && plain
}

fn key_of(scalar: Scalar) -> Option<Key> {
    Some(Key(match scalar {
        Scalar::Num(n) => Inner::Num(n),
        Scalar::Bool(b) => Inner::Bool(b),
        Scalar::Text(t) => Inner::Text(t),
        Scalar::Uuid(u) => Inner::Uuid(u),
        Scalar::Time(t) => Inner::Time(t),
        Scalar::Enum(e) => Inner::Enum(e),
        Scalar::Float(_) | Scalar::Json(_) | Scalar::Array(_) => return None,
    }))
}
