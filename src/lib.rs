//! pgherald: realtime GraphQL subscriptions straight from Postgres.
//!
//! How a row change reaches a subscriber, and the module that owns each step:
//!
//! 1. A trigger on a tracked table writes the change to the outbox
//!    `herald.events` and sends a wake-up NOTIFY (`migrations/`); for a table
//!    in relay mode, [`events::relay`] sends it, from the one instance
//!    elected to.
//! 2. [`events::listener`] holds one dedicated LISTEN connection per instance;
//!    each wake-up reads the batch of events committed since the last
//!    snapshot ([`events::batches`], [`events::outbox`], [`events::snapshot`]).
//! 3. [`events::hub`] matches events to subscriptions (table, ops,
//!    [`events::filter`]), decides which security context may see which row
//!    version (old versions as of the batch's start, new ones as of its end:
//!    snapshots held open by [`events::moments`], imported by [`db::as_of`])
//!    through [`events::routing`] where the tables' policies settle it
//!    ([`db::routes`]) and [`db::authorizer`], once per page and moment,
//!    where they do not, and fills bounded per-subscription queues
//!    ([`events::backlog`] paces big transactions).
//! 4. [`graphql`] exposes the generic `changes` stream and, generated from
//!    the tracked tables ([`db::catalog`]), typed queries and subscriptions;
//!    [`events::feed`] joins a subscription to the hub, after converging it
//!    from its [`events::cursor`] to the current rows ([`events::catchup`]).
//!    Each event is rendered once per selection and visible image, shared by
//!    the subscribers that want the same ([`events::renderings`]).
//! 5. [`ws`] speaks both GraphQL-over-WebSocket protocols around
//!    juniper_graphql_ws; [`http`] serves the rest. [`auth`] turns tokens into
//!    callers, whose role and claims [`db::session`] applies transaction-locally.
//!    [`metrics`] serves `/metrics`; [`telemetry`] sets up logs and traces.
//!
//! [`app::Application`] wires it all, [`state::AppState`] is what handlers
//! share; [`cli`] is the command line, which `main.rs` parses and runs;
//! [`demo`] writes for the demo page.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod demo;
pub mod error;
pub mod events;
pub mod fdlimit;
pub mod graphql;
pub mod http;
pub mod metrics;
pub mod origin;
pub mod server;
pub mod state;
pub mod telemetry;
pub mod ws;

pub use app::{Application, StartError};
pub use config::{Config, JwtKey, Limits};
pub use state::AppState;
