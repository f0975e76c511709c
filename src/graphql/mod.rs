//! The GraphQL API: schema, context, resolvers, and the `JSON` scalar.

pub mod context;
pub mod json;
pub mod mutation;
pub mod query;
pub mod request;
pub mod subscription;
pub mod types;

use std::sync::Arc;

use juniper::RootNode;

pub use context::Context;
pub use mutation::Mutation;
pub use query::Query;
pub use subscription::Subscription;

/// The pgherald schema.
pub type Schema = RootNode<Query, Mutation, Subscription>;

/// Builds the schema (once per process; shared behind an `Arc`).
pub fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(Query, Mutation, Subscription))
}
