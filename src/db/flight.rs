//! The authorizer's transactions, sent in one flight: a transaction (begin,
//! import a snapshot, set a statement timeout, one call, commit) costs one
//! round trip, and the transactions of a page's moments together cost one.
//!
//! tokio-postgres pipelines the requests in flight together on one client:
//! a request is written when its future is first polled, so polling every
//! request of the flight once, in order, before awaiting any answer, sends
//! them all at once, and Postgres runs them in that order. What it does
//! after an error decides what each answer means:
//!
//! - A transaction's start is one simple query: `BEGIN`, then (in a
//!   snapshot) `SET TRANSACTION SNAPSHOT`, then the statement timeout. An
//!   error skips the rest of that query and, `BEGIN` having run, leaves the
//!   transaction aborted. The statements completed before the error say
//!   which one failed: a refused import is [`ImportFailed`], as when the
//!   import had a round trip of its own.
//! - The call (extended protocol, up to its Sync) then fails at once
//!   ("current transaction is aborted"). Its answer is used only when the
//!   start succeeded: run anywhere else (outside the snapshot, or outside
//!   any transaction had `BEGIN` failed) it would not mean what it says.
//! - `COMMIT` is a query of its own, so it runs whatever happened before:
//!   it commits, or ends an aborted transaction (Postgres rolls it back and
//!   answers `ROLLBACK`). Every flight leaves the connection outside any
//!   transaction, without a round trip more, and so it goes back to the pool.
//!
//! Transactions of one flight are independent: an error ends only its own.

use std::pin::Pin;
use std::task::Poll;

use futures::StreamExt;
use futures::future::{BoxFuture, FutureExt, MaybeDone, maybe_done, poll_fn};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row, SimpleQueryMessage};

use super::DbError;
use super::as_of::ExportedSnapshot;
use super::authorizer::DEFAULT_STATEMENT_TIMEOUT;

/// Importing a snapshot failed although the connection is fine: the
/// exporting transaction has ended.
#[derive(Debug)]
pub(super) struct ImportFailed(pub(super) tokio_postgres::Error);

/// One transaction of a flight: `sql` with `params` (their types given, so
/// that no separate prepare is needed), in snapshot `at` (`None`: an
/// ordinary transaction, judging now).
pub(super) struct Transaction<'a> {
    /// The snapshot to import.
    pub(super) at: Option<&'a ExportedSnapshot>,
    /// The one statement.
    pub(super) sql: &'a str,
    /// Its parameters.
    pub(super) params: &'a [(&'a (dyn ToSql + Sync), Type)],
}

/// What a transaction of a flight answered: its statement's rows. The inner
/// error: its snapshot could not be imported, and nothing it answered counts.
pub(super) type Answer = Result<Result<Vec<Row>, ImportFailed>, DbError>;

/// Runs `transactions` in one flight on `client`; one answer each, in order.
/// The client is held exclusively: another user's request between a
/// transaction's requests would run inside that transaction.
pub(super) async fn fly(client: &mut Client, transactions: &[Transaction<'_>]) -> Vec<Answer> {
    let client = &*client;
    let mut requests: Vec<BoxFuture<'_, Reply>> = Vec::with_capacity(3 * transactions.len());
    for tx in transactions {
        requests.push(start(client, tx.at).map(Reply::Start).boxed());
        let call = client.query_typed(tx.sql, tx.params);
        requests.push(call.map(Reply::Call).boxed());
        requests.push(client.batch_execute("COMMIT").map(Reply::Commit).boxed());
    }
    let mut replies = in_order(requests).await.into_iter();
    transactions
        .iter()
        .map(|tx| {
            let (Some(Reply::Start(start)), Some(Reply::Call(call)), Some(Reply::Commit(commit))) =
                (replies.next(), replies.next(), replies.next())
            else {
                unreachable!("three replies per transaction, in the order sent");
            };
            answer(tx.at.is_some(), start, call, commit)
        })
        .collect()
}

/// A transaction's answer from its three replies: the first error, in the
/// order the requests ran, or the call's rows.
fn answer(
    in_snapshot: bool,
    start: Result<(), (usize, tokio_postgres::Error)>,
    call: Result<Vec<Row>, tokio_postgres::Error>,
    commit: Result<(), tokio_postgres::Error>,
) -> Answer {
    match start {
        Ok(()) => {}
        // Statement 1 of a start in a snapshot is the import. A server's
        // refusal (no longer exported): the caller judges now.
        Err((1, e)) if in_snapshot && e.code().is_some() => return Ok(Err(ImportFailed(e))),
        Err((_, e)) => return Err(e.into()),
    }
    let rows = call?;
    commit?;
    Ok(Ok(rows))
}

/// The start of a transaction, as one simple query. Its error comes with the
/// number of its statements that completed before it.
async fn start(
    client: &Client,
    at: Option<&ExportedSnapshot>,
) -> Result<(), (usize, tokio_postgres::Error)> {
    let begin = match at {
        // The import must be the transaction's first statement.
        Some(at) => format!(
            "BEGIN ISOLATION LEVEL REPEATABLE READ; SET TRANSACTION SNAPSHOT '{}'; ",
            at.as_str()
        ),
        None => "BEGIN; ".to_owned(),
    };
    // A hanging policy must not hold the page forever: the session's own
    // statement_timeout if it has one, else ours.
    let sql = format!(
        "{begin}select pg_catalog.set_config('statement_timeout', '{}ms', true)
          where pg_catalog.current_setting('statement_timeout') = '0'",
        DEFAULT_STATEMENT_TIMEOUT.as_millis()
    );
    let mut completed = 0;
    let stream = client.simple_query_raw(&sql).await.map_err(|e| (0, e))?;
    let mut stream = std::pin::pin!(stream);
    while let Some(message) = stream.next().await {
        match message {
            Ok(SimpleQueryMessage::CommandComplete(_)) => completed += 1,
            Ok(_) => {}
            Err(e) => return Err((completed, e)),
        }
    }
    Ok(())
}

/// A request's reply.
enum Reply {
    Start(Result<(), (usize, tokio_postgres::Error)>),
    Call(Result<Vec<Row>, tokio_postgres::Error>),
    Commit(Result<(), tokio_postgres::Error>),
}

/// Awaits every request, polling them in order, so that each is written
/// before the next (and all before any answer is awaited): the order of the
/// flight is the order of `requests`, whatever a join would choose.
async fn in_order(requests: Vec<BoxFuture<'_, Reply>>) -> Vec<Reply> {
    let mut pending: Vec<Pin<Box<MaybeDone<BoxFuture<'_, Reply>>>>> = requests
        .into_iter()
        .map(|request| Box::pin(maybe_done(request)))
        .collect();
    poll_fn(|cx| {
        let mut done = true;
        for request in pending.iter_mut() {
            done &= request.as_mut().poll(cx).is_ready();
        }
        if done { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    pending
        .iter_mut()
        .map(|request| {
            request
                .as_mut()
                .take_output()
                .expect("every request of a flight has its reply")
        })
        .collect()
}
