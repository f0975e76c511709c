//! Errors as clients see them: one mapping from internal failures to GraphQL
//! errors with stable `extensions.code`s, never raw SQL or internals.

use juniper::{FieldError, IntoFieldError, ScalarValue, graphql_value};

use crate::db::DbError;
use crate::db::authorizer::ContextFailure;
use crate::events::catchup::CatchupError;
use crate::events::feed::FeedError;

/// A failure of a GraphQL operation.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The client asked for something malformed or unknown.
    #[error("{0}")]
    BadInput(String),
    /// Row-level security or privileges refused the operation.
    #[error("not allowed")]
    Forbidden,
    /// A running subscription's filter uses a column its role may no longer select.
    #[error("subscription ended: its filter uses a column the role may no longer select")]
    ColumnRevoked,
    /// The cursor cannot be resumed from.
    #[error("{0}")]
    ResyncRequired(String),
    /// The subscriber fell too far behind and was ended.
    #[error("subscription ended: the client did not keep up with its events (queue of {0} full)")]
    SlowConsumer(usize),
    /// The subscription's table was dropped or untracked.
    #[error("subscription ended: the table was dropped or is no longer tracked")]
    TableGone,
    /// The read ran longer than the configured query timeout.
    #[error("the query ran longer than the server allows (HERALD_QUERY_TIMEOUT)")]
    Timeout,
    /// The subscriber's security context (role and claims) could not be
    /// evaluated; it got an exact prefix of its changes.
    #[error("{}", context_failed_message(*.0))]
    ContextFailed(ContextFailure),
    /// The service cannot answer right now.
    #[error("service unavailable: {0}")]
    Unavailable(&'static str),
    /// Anything else; details are logged, not shown.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadInput(_) => "BAD_USER_INPUT",
            ApiError::Forbidden | ApiError::ColumnRevoked => "FORBIDDEN",
            ApiError::ResyncRequired(_) => "RESYNC_REQUIRED",
            ApiError::SlowConsumer(_) => "SLOW_CONSUMER",
            ApiError::TableGone => "TABLE_GONE",
            ApiError::Timeout => "TIMEOUT",
            ApiError::ContextFailed(_) => "CONTEXT_FAILED",
            ApiError::Unavailable(_) => "UNAVAILABLE",
            ApiError::Internal => "INTERNAL",
        }
    }
}

fn context_failed_message(failure: ContextFailure) -> &'static str {
    match failure {
        ContextFailure::Role => {
            "subscription ended: the token's role can no longer be assumed (dropped, renamed or no longer granted)"
        }
        ContextFailure::Claims => {
            "subscription ended: the token's claims cannot be passed to the database (they contain a NUL character)"
        }
        ContextFailure::Policy => {
            "subscription ended: the row-level security policies could not be evaluated for this caller (they failed outside any one row, or timed out)"
        }
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        match e.sqlstate() {
            Some("42501") => ApiError::Forbidden,
            // query_canceled: the statement timeout a caller's read runs under.
            Some("57014") => ApiError::Timeout,
            Some(s) if s.starts_with("22") || s.starts_with("23") => {
                ApiError::BadInput("invalid value".into())
            }
            _ => {
                tracing::error!(error = %e, "database error");
                ApiError::Internal
            }
        }
    }
}

impl From<FeedError> for ApiError {
    fn from(e: FeedError) -> Self {
        match e {
            FeedError::InvalidCursor(_) => ApiError::BadInput(e.to_string()),
            FeedError::Resync(_) => ApiError::ResyncRequired(e.to_string()),
            FeedError::Unavailable(what) => ApiError::Unavailable(what),
            FeedError::SlowConsumer(capacity) => ApiError::SlowConsumer(capacity),
            FeedError::TableGone => ApiError::TableGone,
            FeedError::ColumnRevoked => ApiError::ColumnRevoked,
            FeedError::ContextFailed(failure) => ApiError::ContextFailed(failure),
            FeedError::Catchup(CatchupError::Db(e)) => e.into(),
            FeedError::Catchup(other) => {
                tracing::error!(error = %other, "catch-up read failed");
                ApiError::Internal
            }
        }
    }
}

impl From<deadpool_postgres::PoolError> for ApiError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        DbError::from(e).into()
    }
}

impl<S: ScalarValue> IntoFieldError<S> for ApiError {
    fn into_field_error(self) -> FieldError<S> {
        let code = self.code();
        FieldError::new(self.to_string(), graphql_value!({ "code": code }))
    }
}

/// Result of a resolver.
pub type ApiResult<T> = Result<T, ApiError>;
