//! Judging checks as of a moment: which database state a row image's
//! policies are evaluated against. A live batch is judged at two moments,
//! its old images as of the batch's start and its new images as of its end,
//! each an exported snapshot ([`ExportedSnapshot`]) that the listener holds
//! open; cursor catch-up judges [`Moment::Now`].
//!
//! [`authorize_at`] runs one authorizer transaction per moment, importing the
//! moment's snapshot (`SET TRANSACTION SNAPSHOT`) as its first statement, and
//! merges the verdicts; the moments' transactions go in one flight
//! ([`super::flight`]), one round trip for a page. A snapshot that can no
//! longer be imported (its holder is gone) makes that moment's checks judged
//! now, with a warning, counted in [`Verdicts::fell_back`]: the page is never
//! lost or stalled for it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{Client, IsolationLevel, Transaction};

use super::DbError;
use super::authorizer::{Attempt, Check, Isolation, Verdicts, authorize_isolating, authorize_many};
use super::flight::ImportFailed;
use crate::auth::Caller;

/// When a check is judged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Moment {
    /// Against the database as it is when the check runs.
    Now,
    /// As of the start of the batch (old images).
    Before,
    /// As of the end of the batch (new images).
    After,
}

/// The id `pg_export_snapshot()` returned, checked to be only what Postgres
/// makes (hex digits and dashes), so it can be written into SQL text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportedSnapshot(String);

impl ExportedSnapshot {
    /// `id` if it has the form of an exported snapshot id.
    pub fn parse(id: &str) -> Option<ExportedSnapshot> {
        let plausible = !id.is_empty()
            && id.len() <= 64
            && id.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
        plausible.then(|| ExportedSnapshot(id.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A snapshot a transaction holds open, exported (`pg_export_snapshot()`)
/// the first time a check or a key is judged in it: most pages are decided
/// by routes and never import their moments, and an export writes a file on
/// the server (about a tenth of a millisecond a batch).
#[derive(Clone, Debug)]
pub struct HeldSnapshot(Arc<tokio::sync::Mutex<Export>>);

enum Export {
    /// Not exported yet: its transaction is open on this connection.
    Open {
        client: Arc<Client>,
        timeout: Duration,
    },
    Exported(ExportedSnapshot),
    /// Its transaction ended, or the export failed: judged now.
    Gone,
}

impl fmt::Debug for Export {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Export::Open { .. } => f.write_str("Open"),
            Export::Exported(id) => f.debug_tuple("Exported").field(id).finish(),
            Export::Gone => f.write_str("Gone"),
        }
    }
}

impl HeldSnapshot {
    /// The snapshot of the repeatable-read transaction open on `client`
    /// (its first statement has run), exported within `timeout` when first
    /// asked for. The holder must [`close`](Self::close) it before ending
    /// the transaction.
    pub fn open(client: Arc<Client>, timeout: Duration) -> HeldSnapshot {
        HeldSnapshot(Arc::new(tokio::sync::Mutex::new(Export::Open {
            client,
            timeout,
        })))
    }

    /// The id to import it by, exporting it now if need be; `None` when
    /// its transaction is gone (its moment is then judged now).
    pub async fn id(&self) -> Option<ExportedSnapshot> {
        let mut export = self.0.lock().await;
        let (client, timeout) = match &*export {
            Export::Exported(id) => return Some(id.clone()),
            Export::Gone => return None,
            Export::Open { client, timeout } => (client.clone(), *timeout),
        };
        // (A repeatable-read transaction exports the snapshot its first
        // statement took, whenever it is asked.)
        let exported = tokio::time::timeout(
            timeout,
            client.query_one("select pg_catalog.pg_export_snapshot()", &[]),
        )
        .await;
        let id = match exported {
            Ok(Ok(row)) => row
                .try_get::<_, String>(0)
                .ok()
                .and_then(|id| ExportedSnapshot::parse(&id)),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "exporting a held snapshot failed");
                None
            }
            Err(_) => {
                tracing::warn!("exporting a held snapshot timed out");
                None
            }
        };
        *export = match &id {
            Some(id) => Export::Exported(id.clone()),
            None => Export::Gone,
        };
        id
    }

    /// Ends its use: its transaction is about to end, so no export may
    /// run after this (one would export the connection's next snapshot).
    pub async fn close(&self) {
        *self.0.lock().await = Export::Gone;
    }
}

impl From<ExportedSnapshot> for HeldSnapshot {
    fn from(id: ExportedSnapshot) -> Self {
        HeldSnapshot(Arc::new(tokio::sync::Mutex::new(Export::Exported(id))))
    }
}

/// The snapshots a page's [`Moment::Before`] and [`Moment::After`] checks are
/// judged in. A moment without one (its holder was lost) is judged now.
#[derive(Clone, Debug, Default)]
pub struct AsOf {
    /// The batch's start.
    pub before: Option<HeldSnapshot>,
    /// The batch's end.
    pub after: Option<HeldSnapshot>,
    /// The catalogs' fingerprint (`herald.routing_version()`) in `before`
    /// and in `after`.
    pub versions: Option<(Arc<str>, Arc<str>)>,
}

impl AsOf {
    /// The catalogs' fingerprint when both snapshots are held and show the
    /// same one: the batch saw no policy, role or grant change, so routes
    /// derived under it hold at both of its moments.
    pub fn routing_version(&self) -> Option<&Arc<str>> {
        let (before, after) = self.versions.as_ref()?;
        let held = self.before.is_some() && self.after.is_some();
        (held && before == after).then_some(after)
    }

    /// The snapshot `moment` stands for, exported (`None`: now, or the
    /// snapshot is gone).
    pub async fn exported(&self, moment: Moment) -> Option<ExportedSnapshot> {
        let held = match moment {
            Moment::Now => None,
            Moment::Before => self.before.as_ref(),
            Moment::After => self.after.as_ref(),
        };
        held?.id().await
    }
}

/// Begins a transaction in `at`, imported as the first statement of a
/// repeatable-read transaction, or (`None`) an ordinary one; for work that
/// is not the authorizer's (which sends its own in one flight). The inner
/// error: `at` could not be imported.
pub(super) async fn begin<'c>(
    client: &'c mut Client,
    at: Option<&ExportedSnapshot>,
) -> Result<Result<Transaction<'c>, ImportFailed>, DbError> {
    let Some(at) = at else {
        return Ok(Ok(client.transaction().await?));
    };
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .start()
        .await?;
    match tx
        .batch_execute(&format!("SET TRANSACTION SNAPSHOT '{}'", at.as_str()))
        .await
    {
        Ok(()) => Ok(Ok(tx)),
        // A server's refusal (no longer exported); the dropped transaction
        // rolls back.
        Err(e) if e.code().is_some() => Ok(Err(ImportFailed(e))),
        Err(e) => Err(e.into()),
    }
}

/// Evaluates `checks` under `contexts`, each as of its [`Moment`] in `as_of`:
/// one transaction (per [`Isolation`], one per context) per moment, on the
/// same connection, the verdicts merged. The first call of every moment goes
/// in one flight (one round trip); what it leaves to do (a moment whose
/// snapshot is gone, contexts to isolate) follows moment by moment, as if
/// each moment's call had been made alone. See the module documentation.
pub async fn authorize_at(
    client: &mut Client,
    contexts: &[&Caller],
    checks: &[Check],
    as_of: &AsOf,
    isolation: Isolation,
) -> Result<Verdicts, DbError> {
    // Exported only when asked about: a held snapshot that is gone by now
    // makes its moment judged now.
    let wants = |moment| checks.iter().any(|c| c.moment == moment);
    let export = |moment| async move {
        match wants(moment) {
            true => as_of.exported(moment).await,
            false => None,
        }
    };
    let (before, after) = futures::join!(export(Moment::Before), export(Moment::After));
    let lost = [
        (Moment::Before, &as_of.before, &before),
        (Moment::After, &as_of.after, &after),
    ]
    .iter()
    .filter(|(moment, held, id)| wants(*moment) && held.is_some() && id.is_none())
    .count();
    let snapshot = |moment| match moment {
        Moment::Now => None,
        Moment::Before => before.as_ref(),
        Moment::After => after.as_ref(),
    };
    // At most three groups, in a fixed order; moments without a snapshot
    // join the "now" group.
    let mut groups: Vec<(Option<&ExportedSnapshot>, Vec<usize>)> = Vec::new();
    for (i, check) in checks.iter().enumerate() {
        let at = snapshot(check.moment);
        match groups.iter_mut().find(|(g, _)| *g == at) {
            Some((_, indexes)) => indexes.push(i),
            None => groups.push((at, vec![i])),
        }
    }
    if let [(at, _)] = groups.as_slice() {
        let mut verdicts = judge(client, contexts, checks, *at, isolation, None).await?;
        verdicts.fell_back += lost;
        return Ok(verdicts);
    }
    let parts: Vec<Vec<Check>> = groups
        .iter()
        .map(|(_, indexes)| indexes.iter().map(|&i| checks[i].clone()).collect())
        .collect();
    // Isolated contexts have a call each: only the one call per moment of
    // Isolation::OnError is made up front.
    let firsts: Vec<Option<Attempt>> = match isolation {
        Isolation::OnError => {
            let flight: Vec<(&[Check], Option<&ExportedSnapshot>)> = parts
                .iter()
                .zip(&groups)
                .map(|(part, (at, _))| (part.as_slice(), *at))
                .collect();
            authorize_many(client, contexts, &flight)
                .await
                .into_iter()
                .map(Some)
                .collect()
        }
        Isolation::Always => parts.iter().map(|_| None).collect(),
    };
    let mut merged = Verdicts::denying(checks.len());
    for ((part, (at, indexes)), first) in parts.iter().zip(&groups).zip(firsts) {
        let verdicts = judge(client, contexts, part, *at, isolation, first).await?;
        merged.absorb(verdicts, indexes);
    }
    merged.settle(checks);
    merged.fell_back += lost;
    Ok(merged)
}

/// One moment's checks, falling back to now when its snapshot is gone.
/// `first`: the moment's call, when made already.
async fn judge(
    client: &mut Client,
    contexts: &[&Caller],
    checks: &[Check],
    at: Option<&ExportedSnapshot>,
    isolation: Isolation,
    first: Option<Attempt>,
) -> Result<Verdicts, DbError> {
    match authorize_isolating(client, contexts, checks, isolation, at, first).await? {
        Ok(verdicts) => Ok(verdicts),
        Err(ImportFailed(e)) => {
            tracing::warn!(error = %e, snapshot = at.map_or("", |s| s.as_str()),
                "a held snapshot could not be imported; judging its checks now");
            let mut verdicts = authorize_isolating(client, contexts, checks, isolation, None, None)
                .await?
                .map_err(|ImportFailed(e)| DbError::Postgres(e))?;
            verdicts.fell_back += 1;
            Ok(verdicts)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ids_of_the_form_postgres_exports_are_accepted() {
        assert!(ExportedSnapshot::parse("00000003-0000001B-1").is_some());
        for bad in ["", "x'; drop table t; --", "0000 0003", &"a".repeat(65)] {
            assert!(ExportedSnapshot::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_moment_without_a_snapshot_is_judged_now() {
        let id = ExportedSnapshot::parse("00000003-0000001B-1");
        let as_of = AsOf {
            before: None,
            after: id.clone().map(Into::into),
            versions: None,
        };
        let at = |moment| futures::executor::block_on(as_of.exported(moment));
        assert_eq!(at(Moment::Before), None);
        assert_eq!(at(Moment::After), id);
        assert_eq!(at(Moment::Now), None);
    }

    #[test]
    fn a_closed_snapshot_is_never_exported_again() {
        let id = ExportedSnapshot::parse("00000003-0000001B-1").unwrap();
        let held = HeldSnapshot::from(id.clone());
        futures::executor::block_on(async {
            assert_eq!(held.id().await, Some(id));
            held.close().await;
            assert_eq!(held.id().await, None, "its transaction is about to end");
        });
    }

    #[test]
    fn merged_moments_keep_each_verdict_every_failure_and_only_common_columns() {
        use std::collections::HashMap;
        use std::sync::Arc;

        use super::super::authorizer::ContextFailure;

        let cols =
            |names: &[&str]| -> Arc<[String]> { names.iter().map(|n| (*n).to_owned()).collect() };
        let before = Verdicts::from_parts(
            vec![true, false],
            HashMap::from([((0, 7), cols(&["id", "title"])), ((1, 7), cols(&["id"]))]),
        );
        let mut after =
            Verdicts::from_parts(vec![false, true], HashMap::from([((0, 7), cols(&["id"]))]))
                .with_failure(1, ContextFailure::Policy);
        after.fell_back = 1;
        let mut merged = Verdicts::denying(4);
        merged.absorb(before, &[0, 2]);
        merged.absorb(after, &[1, 3]);
        assert_eq!(
            (0..4).map(|i| merged.visible(i)).collect::<Vec<_>>(),
            [true, false, false, true]
        );
        assert_eq!(merged.failure(1), Some(ContextFailure::Policy));
        assert_eq!(merged.fell_back, 1);
        let image = Arc::new(serde_json::json!({"id": 1, "title": "t"}));
        assert_eq!(
            merged.restrict(0, 7, &image),
            Arc::new(serde_json::json!({"id": 1})),
            "a column selectable at one moment only is not delivered"
        );
    }
}
