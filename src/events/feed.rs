//! Joining the event stream: a subscription's live deliveries from the hub,
//! preceded, when it resumes from a cursor, by what it missed (catch-up). The
//! GraphQL layer asks for a stream here and only maps its items.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures::{Stream, StreamExt};

use super::catchup::{self, CatchupError};
use super::cursor::{Cursor, CursorCodec, CursorError};
use super::delivery::{Delivery, Interest};
use super::hub::{EndReason, Hub};
use super::outbox::{self, OutboxError};
use super::snapshot::Snapshot;
use crate::db::authorizer::{ContextFailure, PgAuthorizer};

/// How long a resuming subscription waits for the listener to reach its cursor.
const CURSOR_WAIT: Duration = Duration::from_secs(10);

/// Why a subscription could not start or had to end.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The cursor text is not a cursor of this database, or was altered.
    #[error("after: {0}")]
    InvalidCursor(CursorError),
    /// The cursor cannot be resumed from (another database, or expired).
    #[error(transparent)]
    Resync(CatchupError),
    /// The listener has not reached the cursor, or is not connected yet.
    #[error("service unavailable: {0}")]
    Unavailable(&'static str),
    /// The subscriber did not keep up; it got an exact prefix of its events.
    #[error("subscription ended: the client did not keep up with its events (queue of {0} full)")]
    SlowConsumer(usize),
    /// The table was dropped or is no longer tracked.
    #[error("subscription ended: the table was dropped or is no longer tracked")]
    TableGone,
    /// Its filter names a column its role may no longer select.
    #[error("subscription ended: its filter uses a column the role may no longer select")]
    ColumnRevoked,
    /// The subscriber's security context could not be evaluated.
    #[error("subscription ended: its security context failed ({0:?})")]
    ContextFailed(ContextFailure),
    /// Reading the outbox failed.
    #[error(transparent)]
    Catchup(CatchupError),
}

impl From<CatchupError> for FeedError {
    fn from(e: CatchupError) -> Self {
        match e {
            CatchupError::ForeignCursor
            | CatchupError::Expired
            | CatchupError::Truncated
            | CatchupError::TooManyChanges => FeedError::Resync(e),
            CatchupError::ContextFailed(failure) => FeedError::ContextFailed(failure),
            other => FeedError::Catchup(other),
        }
    }
}

/// Deliveries of one subscription; ends after its first error.
pub type DeliveryStream = Pin<Box<dyn Stream<Item = Result<Delivery, FeedError>> + Send>>;

/// Where subscriptions join: the hub, the pool catch-up reads with, and the
/// database identity cursors carry.
pub struct Feed {
    hub: Arc<Hub>,
    pool: Pool,
    cursors: Arc<CursorCodec>,
    timeout: Duration,
}

impl Feed {
    /// A feed over `hub`, reading catch-up through `pool` with statements
    /// limited to `timeout`.
    pub fn new(hub: Arc<Hub>, pool: Pool, cursors: Arc<CursorCodec>, timeout: Duration) -> Feed {
        Feed {
            hub,
            pool,
            cursors,
            timeout,
        }
    }

    /// Signs and checks cursors.
    pub fn cursors(&self) -> &Arc<CursorCodec> {
        &self.cursors
    }

    /// Where subscriptions count the items they render and share.
    pub fn rendering_stats(&self) -> &Arc<super::renderings::RenderingStats> {
        self.hub.rendering_stats()
    }

    /// A cursor at `snapshot`: everything visible in it counts as consumed.
    pub fn cursor_at(&self, snapshot: Snapshot) -> Cursor {
        self.cursors.at(snapshot)
    }

    /// A cursor meaning "now".
    pub async fn current_cursor(&self) -> Result<Cursor, FeedError> {
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| FeedError::Catchup(CatchupError::Db(e.into())))?;
        let snapshot = outbox::current_snapshot(&**client)
            .await
            .map_err(|e: OutboxError| FeedError::Catchup(e.into()))?;
        Ok(self.cursor_at(snapshot))
    }

    /// Parses a client's cursor text.
    pub fn parse_cursor(&self, text: &str) -> Result<Cursor, FeedError> {
        self.cursors.decode(text).map_err(|e| match e {
            CursorError::Foreign => FeedError::Resync(CatchupError::ForeignCursor),
            other => FeedError::InvalidCursor(other),
        })
    }

    /// Joins the live stream for `interest`; with `after`, first brings the
    /// subscriber from that cursor to now (see [`catchup`]), so nothing is
    /// missed or delivered twice.
    pub async fn subscribe(
        &self,
        interest: Interest,
        after: Option<Cursor>,
    ) -> Result<DeliveryStream, FeedError> {
        // (Cursors of other databases were refused when they were decoded.)
        if let Some(cursor) = &after {
            // A resuming client may arrive at an instance whose listener is
            // still starting: give it a moment to reach the cursor.
            tokio::time::timeout(CURSOR_WAIT, self.hub.wait_for(&cursor.high))
                .await
                .map_err(|_| FeedError::Unavailable("event listener is behind"))?;
        }
        // Join first: catch-up then reads at a snapshot that covers the
        // position the live stream starts after.
        let registration = self
            .hub
            .register(interest.clone())
            .ok_or(FeedError::Unavailable("event listener not connected yet"))?;
        let (caught_up, upto) = match &after {
            Some(cursor) => {
                let authorizer = PgAuthorizer::new(self.pool.clone());
                let caught = catchup::converge(
                    &self.pool,
                    &authorizer,
                    self.hub.authorizer_stats(),
                    &interest,
                    cursor,
                    self.timeout,
                )
                .await?;
                (caught.deliveries, Some(caught.upto))
            }
            None => (Vec::new(), None),
        };
        let ended = registration.ended.clone();
        let capacity = self.hub.queue_capacity();
        let pipeline = self.hub.pipeline().clone();
        let live = registration
            // Transactions catch-up accounted for.
            .filter(move |d| {
                std::future::ready(!upto.as_ref().is_some_and(|s| s.sees(d.event.xid)))
            })
            // Taken off the queue to be rendered and written now.
            .inspect(move |d| pipeline.observe_lag(d.event.committed_at))
            .map(Ok)
            .chain(futures::stream::once(async move {
                Err(match ended.get() {
                    Some(EndReason::SlowConsumer) => FeedError::SlowConsumer(capacity),
                    Some(EndReason::TableGone) => FeedError::TableGone,
                    Some(EndReason::ColumnRevoked) => FeedError::ColumnRevoked,
                    Some(EndReason::ContextFailed(failure)) => FeedError::ContextFailed(*failure),
                    None => FeedError::Unavailable("subscription closed"),
                })
            }));
        // Catch-up has no errors of its own; the live stream ends with one.
        let stream = futures::stream::iter(caught_up.into_iter().map(Ok)).chain(live);
        Ok(Box::pin(stream))
    }
}
