//! What `changes` and the typed `notifications` subscription deliver for
//! rows written with plain SQL, over both WebSocket subprotocols
//! (graphql-transport-ws and the legacy graphql-ws), as docs/api.md says:
//!
//! - [`images`]: the row images and operations of inserts, updates and
//!   deletes, and every column of a new notification;
//! - [`selection`]: what `ops` and `filter` let through;
//! - [`ordering`]: commit order, and several subscriptions on one connection;
//! - [`errors`]: GraphQL errors for unknown tables, columns and operators;
//! - [`sharing`]: subscribers wanting the same of an event share one
//!   rendering of it, byte for byte; those who may see or asked for
//!   something else (columns, fields, aliases, `@include`, another schema
//!   generation) never get it.
//!
//! Every scenario runs once per subprotocol: the test
//! `delivery::<file>::<scenario>::over_graphql_transport_ws` and
//! `delivery::<file>::<scenario>::over_legacy_graphql_ws` (in [`sharing`],
//! those about what is shared, not about the frames, run over
//! graphql-transport-ws only).
//!
//! Absence is proven by order: each subscription receives its events in commit
//! order, so an event it must not get is written before one it must get, and
//! the received list is compared exactly.

use crate::helpers::{TestApp, spawn_app};

/// Runs each scenario `name(protocol)` of the module it is invoked in as two
/// tests, `name::over_graphql_transport_ws` and `name::over_legacy_graphql_ws`.
macro_rules! over_both_protocols {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            use $crate::helpers::Protocol;

            #[tokio::test]
            async fn over_graphql_transport_ws() {
                super::$scenario(Protocol::Transport).await;
            }

            #[tokio::test]
            async fn over_legacy_graphql_ws() {
                super::$scenario(Protocol::Legacy).await;
            }
        }
    )*};
}

mod errors;
mod images;
mod ordering;
mod selection;
mod sharing;

/// An instance with tenant Acme and its member alice: (app, tenant, alice).
async fn acme() -> (TestApp, String, String) {
    let app = spawn_app().await;
    let tenant = app.tenant("Acme").await;
    let alice = app.user("alice@acme.test", &[&tenant]).await;
    app.wait_until_read_so_far().await;
    (app, tenant, alice)
}
