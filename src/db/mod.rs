//! Everything that talks to Postgres outside the listener: the pool, the one
//! place that switches role and claims, the authorizer, the catalog of tracked
//! tables, start-up safety checks, migrations, and TLS for every connection.

pub mod as_of;
pub mod authorizer;
mod call;
pub mod catalog;
mod flight;
pub mod jsonb;
pub mod migrate;
pub mod node_tree;
pub mod policy_shape;
pub mod pool;
pub mod roles;
pub mod routes;
pub mod rows;
pub mod session;
pub mod tls;
pub mod verdicts;

/// A database failure, at the edge of this module.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A query failed.
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection could be had from the pool.
    #[error("database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// The database returned something this code does not understand.
    #[error("unexpected data: {0}")]
    Data(String),
}

impl DbError {
    /// The SQLSTATE, when Postgres reported one.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            DbError::Postgres(e) => e.code().map(|c| c.code()),
            DbError::Pool(deadpool_postgres::PoolError::Backend(e)) => e.code().map(|c| c.code()),
            DbError::Pool(_) | DbError::Data(_) => None,
        }
    }
}
