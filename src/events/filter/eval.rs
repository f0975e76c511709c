//! The validated filter tree and its evaluation on row images, in SQL's
//! three-valued logic (`None` is unknown).

use std::cmp::Ordering;
use std::sync::Arc;

use serde_json::Value;

use super::like::Pattern;
use super::number::Num;
use super::time::{TimeKind, parse_time};
use super::value::{Scalar, jsonb_eq, parse_uuid, read_float};

/// A filter node.
#[derive(Clone, Debug)]
pub(super) enum Node {
    /// True when every child is (true for none).
    All(Vec<Node>),
    /// True when some child is (false for none).
    Any(Vec<Node>),
    /// Negation; unknown stays unknown.
    Not(Box<Node>),
    /// One operator on one column.
    Test(Test),
}

/// How a column's values are read from images and compared.
#[derive(Clone, Debug)]
pub(super) enum Domain {
    /// int2/int4/int8/numeric: exact decimals.
    Number,
    /// float4 (`single`) or float8.
    Float {
        /// float4: values are rounded to single precision.
        single: bool,
    },
    /// bool.
    Bool,
    /// Text kinds, by code point; `bpchar` without trailing spaces.
    Text {
        /// `character(n)`: trailing spaces are insignificant.
        bpchar: bool,
    },
    /// uuid.
    Uuid,
    /// timestamptz, timestamp or date.
    Time(TimeKind),
    /// An enum: labels in sort order.
    Enum(Arc<[String]>),
    /// json/jsonb (a JSON `null` reads as SQL NULL).
    Json,
    /// An array of the element domain.
    Array(Box<Domain>),
    /// Any other type: its text form.
    Other,
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cmp {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
}

impl Cmp {
    fn holds(self, o: Ordering) -> bool {
        match self {
            Cmp::Eq => o == Ordering::Equal,
            Cmp::Neq => o != Ordering::Equal,
            Cmp::Lt => o == Ordering::Less,
            Cmp::Lte => o != Ordering::Greater,
            Cmp::Gt => o == Ordering::Greater,
            Cmp::Gte => o != Ordering::Less,
        }
    }
}

/// What a test checks.
#[derive(Clone, Debug)]
pub(super) enum Check {
    /// `isNull: true` (or `false`).
    IsNull(bool),
    /// `eq`, `neq`, `lt`, …
    Cmp(Cmp, Scalar),
    /// `in`: equal to one of the values.
    In(Vec<Scalar>),
    /// `like`/`ilike`.
    Like(Pattern),
}

/// One operator on one column.
#[derive(Clone, Debug)]
pub(super) struct Test {
    pub(super) column: String,
    pub(super) domain: Domain,
    pub(super) check: Check,
}

impl Node {
    /// SQL's three-valued result on `image`.
    pub(super) fn eval(&self, image: &Value) -> Option<bool> {
        match self {
            Node::All(nodes) => {
                let mut result = Some(true);
                for n in nodes {
                    match n.eval(image) {
                        Some(false) => return Some(false),
                        None => result = None,
                        Some(true) => {}
                    }
                }
                result
            }
            Node::Any(nodes) => {
                let mut result = Some(false);
                for n in nodes {
                    match n.eval(image) {
                        Some(true) => return Some(true),
                        None => result = None,
                        Some(false) => {}
                    }
                }
                result
            }
            Node::Not(n) => n.eval(image).map(|b| !b),
            Node::Test(t) => t.eval(image),
        }
    }

    /// Adds the columns tested to `out`, each once.
    pub(super) fn columns<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Node::All(nodes) | Node::Any(nodes) => nodes.iter().for_each(|n| n.columns(out)),
            Node::Not(n) => n.columns(out),
            Node::Test(t) => {
                if !out.contains(&t.column.as_str()) {
                    out.push(&t.column);
                }
            }
        }
    }
}

impl Test {
    fn eval(&self, image: &Value) -> Option<bool> {
        // A missing column reads as NULL, like jsonb_populate_record.
        let value = image.get(&self.column).filter(|v| !v.is_null());
        match (&self.check, value) {
            (Check::IsNull(want), v) => Some(v.is_none() == *want),
            // `x = any('{}')` is false even for a NULL x.
            (Check::In(list), _) if list.is_empty() => Some(false),
            (_, None) => None,
            (Check::Cmp(Cmp::Eq, want), Some(v)) => equals(&self.domain, v, want),
            (Check::Cmp(Cmp::Neq, want), Some(v)) => equals(&self.domain, v, want).map(|e| !e),
            (Check::Cmp(cmp, want), Some(v)) => order(&self.domain, v, want).map(|o| cmp.holds(o)),
            (Check::In(list), Some(v)) => {
                let mut result = Some(false);
                for want in list {
                    match equals(&self.domain, v, want) {
                        Some(true) => return Some(true),
                        None => result = None,
                        Some(false) => {}
                    }
                }
                result
            }
            (Check::Like(pattern), Some(v)) => Some(pattern.matches(text(&self.domain, v)?)),
        }
    }
}

/// The text of a text-kind image value (a `bpchar` without trailing spaces,
/// as its cast to `text` gives).
fn text<'a>(domain: &Domain, v: &'a Value) -> Option<&'a str> {
    let s = v.as_str()?;
    Some(match domain {
        Domain::Text { bpchar: true } => s.trim_end_matches(' '),
        _ => s,
    })
}

/// Whether image value `v` (not null) equals `want`; `None` when `v` cannot
/// be read as the column's type.
fn equals(domain: &Domain, v: &Value, want: &Scalar) -> Option<bool> {
    match (domain, want) {
        (Domain::Json, Scalar::Json(w)) => Some(jsonb_eq(v, w)),
        (Domain::Array(element), Scalar::Array(wants)) => {
            // array_eq: same length, NULL elements equal each other.
            let got = v.as_array()?;
            if got.len() != wants.len() {
                return Some(false);
            }
            for (g, w) in got.iter().zip(wants) {
                let same = match (g.is_null(), w) {
                    (true, None) => true,
                    (true, Some(_)) | (false, None) => false,
                    (false, Some(w)) => equals(element, g, w)?,
                };
                if !same {
                    return Some(false);
                }
            }
            Some(true)
        }
        _ => order(domain, v, want).map(|o| o == Ordering::Equal),
    }
}

/// Order of image value `v` (not null) against `want`.
fn order(domain: &Domain, v: &Value, want: &Scalar) -> Option<Ordering> {
    if let (Domain::Text { .. } | Domain::Other, Scalar::Text(w)) = (domain, want) {
        return Some(text(domain, v)?.as_bytes().cmp(w.as_bytes()));
    }
    read(domain, v)?.compare(want)
}

/// Reads a scalar image value of `domain`.
pub(super) fn read(domain: &Domain, v: &Value) -> Option<Scalar> {
    Some(match domain {
        Domain::Number => Scalar::Num(Num::read(v)?),
        Domain::Float { single } => Scalar::Float(read_float(v, *single)?),
        Domain::Bool => Scalar::Bool(v.as_bool()?),
        Domain::Uuid => Scalar::Uuid(parse_uuid(v.as_str()?)?),
        Domain::Time(kind) => Scalar::Time(parse_time(v.as_str()?, *kind)?.value),
        Domain::Enum(labels) => {
            let s = v.as_str()?;
            Scalar::Enum(labels.iter().position(|l| l == s)?)
        }
        Domain::Text { .. } | Domain::Other => Scalar::Text(text(domain, v)?.to_owned()),
        Domain::Json | Domain::Array(_) => return None,
    })
}
