//! Per-operation GraphQL context: who is asking, and the two things
//! resolvers use (the query pool and the event feed).

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;

use crate::auth::Caller;
use crate::events::feed::Feed;

/// What every resolver sees.
#[derive(Clone)]
pub struct Context {
    /// Whose RLS view applies.
    pub caller: Arc<Caller>,
    /// Query pool (role and claims are set per transaction).
    pub pool: Pool,
    /// Where subscriptions join the event stream.
    pub feed: Arc<Feed>,
    /// Longest a statement of a caller's read may run.
    pub query_timeout: Duration,
}

impl juniper::Context for Context {}
