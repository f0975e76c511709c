//! One `herald.authorize` call: the arrays a batch of checks is sent as (each
//! distinct row image once), and the rows it answers read back into
//! [`Verdicts`]. A context Postgres cannot be handed fails here, unsent.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;
use tokio_postgres::Row;
use tokio_postgres::types::{ToSql, Type};

use crate::auth::Caller;

use super::DbError;
use super::authorizer::{Check, ContextFailure, Verdicts};
use super::jsonb::ExactJson;

/// The call. Parameter types are sent with it, so that it needs no separate
/// prepare (see [`Call::params`]).
pub(super) const AUTHORIZE: &str =
    "select kind, chk, visible, context, relid, columns, failure, detail
   from herald.authorize($1, $2, $3, $4, $5, $6)";

/// A batch of checks as `herald.authorize` takes them, and what is known
/// before asking: the contexts that failed here.
pub(super) struct Call<'a> {
    /// Verdicts so far: every check denied, unsendable contexts failed.
    verdicts: Verdicts,
    /// Indexes of the checks sent, in the order sent.
    sent: Vec<usize>,
    roles: Vec<String>,
    claims: Vec<String>,
    ctx: Vec<i32>,
    rel: Vec<u32>,
    img: Vec<i32>,
    images: Vec<ExactJson<'a>>,
}

impl<'a> Call<'a> {
    /// The call for `checks` under `contexts`.
    pub(super) fn new(contexts: &[&Caller], checks: &'a [Check]) -> Call<'a> {
        let mut verdicts = Verdicts {
            visible: vec![false; checks.len()],
            ..Verdicts::default()
        };
        for (i, caller) in contexts.iter().enumerate() {
            if let Some(failure) = unrepresentable(caller) {
                tracing::warn!(role = %caller.role.escape_debug(), ?failure,
                    "security context failed: Postgres cannot hold its role or claims");
                verdicts.failed.insert(i, failure);
            }
        }
        // A failed context is sent as an empty role and claims (its index
        // must stay), and none of its checks.
        let roles = contexts
            .iter()
            .enumerate()
            .map(|(i, c)| match verdicts.failed.contains_key(&i) {
                true => String::new(),
                false => c.role.clone(),
            })
            .collect();
        let claims = contexts
            .iter()
            .enumerate()
            .map(|(i, c)| match verdicts.failed.contains_key(&i) {
                true => "{}".to_owned(),
                false => c.claims.to_string(),
            })
            .collect();
        let sent: Vec<usize> = (0..checks.len())
            .filter(|&i| !verdicts.failed.contains_key(&checks[i].context))
            .collect();
        let ctx = sent.iter().map(|&i| checks[i].context as i32).collect();
        let rel = sent.iter().map(|&i| checks[i].relid).collect();
        // Each distinct image is sent once (checks share images through
        // `Arc`s: one event's row checked under many contexts) and referred
        // to by index.
        let mut images: Vec<ExactJson> = Vec::new();
        // Keyed by address (as an integer, so the future stays `Send`).
        let mut index_of: HashMap<usize, i32> = HashMap::new();
        let img = sent
            .iter()
            .map(|&i| {
                let c = &checks[i];
                *index_of
                    .entry(Arc::as_ptr(&c.image) as usize)
                    .or_insert_with(|| {
                        images.push(ExactJson(c.image.as_ref()));
                        images.len() as i32 // 1-based, as SQL arrays
                    })
            })
            .collect();
        Call {
            verdicts,
            sent,
            roles,
            claims,
            ctx,
            rel,
            img,
            images,
        }
    }

    /// Whether there is nothing to ask: the verdicts are known already
    /// ([`Self::unsent`]).
    pub(super) fn is_empty(&self) -> bool {
        self.sent.is_empty()
    }

    /// The verdicts of a call with nothing to ask.
    pub(super) fn unsent(self) -> Verdicts {
        self.verdicts
    }

    /// The parameters of [`AUTHORIZE`], with their types.
    pub(super) fn params(&self) -> [(&(dyn ToSql + Sync), Type); 6] {
        [
            (&self.roles, Type::TEXT_ARRAY),
            (&self.claims, Type::TEXT_ARRAY),
            (&self.ctx, Type::INT4_ARRAY),
            (&self.rel, Type::OID_ARRAY),
            (&self.img, Type::INT4_ARRAY),
            (&self.images, Type::JSONB_ARRAY),
        ]
    }

    /// The verdicts `rows`, the call's answer, give for `checks` (those
    /// [`Self::new`] was given) under `contexts`.
    pub(super) fn read(
        self,
        contexts: &[&Caller],
        checks: &[Check],
        rows: Vec<Row>,
    ) -> Result<Verdicts, DbError> {
        let Call {
            mut verdicts, sent, ..
        } = self;
        let mut hidden: Vec<usize> = Vec::new();
        for row in rows {
            let kind: &str = row.get("kind");
            match kind {
                "verdict" | "hidden" => {
                    // Check numbers are 1-based (SQL ordinality) over the checks sent.
                    let chk: i32 = row.get("chk");
                    if let Some(&i) = sent.get(chk as usize - 1) {
                        verdicts.visible[i] = row.get::<_, bool>("visible");
                        if kind == "hidden" {
                            hidden.push(i);
                        }
                    }
                }
                "columns" => {
                    let context: i32 = row.get("context");
                    let relid: u32 = row.get("relid");
                    let columns: Vec<String> = row.get("columns");
                    verdicts
                        .columns
                        .insert((context as usize, relid), columns.into());
                }
                "failed" => {
                    let context = row.get::<_, i32>("context") as usize;
                    let stage: &str = row.get("failure");
                    let detail: &str = row.get("detail");
                    let failure = ContextFailure::from_stage(stage);
                    tracing::warn!(
                        role = %contexts.get(context).map_or("?", |c| c.role.as_str()),
                        ?failure, detail, "security context failed"
                    );
                    verdicts.failed.insert(context, failure);
                }
                other => return Err(DbError::Data(format!("authorizer row kind {other:?}"))),
            }
        }
        // Checks of a failed context may have been answered before it failed:
        // they do not count.
        verdicts.settle(checks);
        verdicts.hidden_by_errors = hidden
            .iter()
            .filter(|&&i| verdicts.failure(checks[i].context).is_none())
            .count();
        Ok(verdicts)
    }
}

/// What Postgres cannot be handed for `caller`: a role or claims holding NUL
/// (text cannot hold it, jsonb refuses `\u0000`). Such a context fails here,
/// without a round trip.
fn unrepresentable(caller: &Caller) -> Option<ContextFailure> {
    if caller.role.contains('\0') {
        return Some(ContextFailure::Role);
    }
    let mut stack = vec![caller.claims.as_ref()];
    while let Some(value) = stack.pop() {
        match value {
            Value::String(s) if s.contains('\0') => return Some(ContextFailure::Claims),
            Value::Array(items) => stack.extend(items),
            Value::Object(fields) => {
                if fields.keys().any(|k| k.contains('\0')) {
                    return Some(ContextFailure::Claims);
                }
                stack.extend(fields.values());
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn caller(role: &str, claims: Value) -> Caller {
        Caller::new(role.to_owned(), claims, None)
    }

    #[test]
    fn nul_in_a_role_or_anywhere_in_the_claims_cannot_reach_postgres() {
        assert_eq!(
            unrepresentable(&caller(
                "app_user",
                json!({"sub": "u", "a": [1, {"b": "c"}]})
            )),
            None
        );
        assert_eq!(
            unrepresentable(&caller("app_user", json!({"sub": "\\u0000"}))),
            None
        );
        for claims in [
            json!({"sub": "u\u{0}"}),
            json!({"a": {"b": [1, ["x\u{0}y"]]}}),
            json!({"a": {"k\u{0}": 1}}),
        ] {
            assert_eq!(
                unrepresentable(&caller("app_user", claims)),
                Some(ContextFailure::Claims)
            );
        }
        assert_eq!(
            unrepresentable(&caller("app\u{0}user", json!({}))),
            Some(ContextFailure::Role)
        );
    }
}
