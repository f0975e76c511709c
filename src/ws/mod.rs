//! GraphQL over WebSocket on `/graphql`, for both subprotocols
//! (`graphql-transport-ws` and legacy `graphql-ws`).
//!
//! juniper_graphql_ws implements each protocol's state machine; this module
//! owns everything around it that stock juniper_warp gets wrong (see
//! docs/protocols.md). The code flows one way: this file refuses upgrades
//! (per-IP cap), picks the protocol and builds its handler ([`transport`],
//! [`legacy`]) and juniper connection, and hands both to a [`session`],
//! which knows protocols only as a [`handler::Handler`]. [`init`] checks
//! `connection_init`; [`close`] is the table of close codes; [`registry`]
//! counts connections per IP and per subject.

mod close;
mod handler;
mod init;
mod legacy;
mod registry;
mod session;
mod transport;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Reply;

pub use registry::Registry;

use self::close::Close;
use self::session::{Session, Settings};
use crate::origin::{Credential, RequestOrigin};
use crate::state::AppState;

/// The client's address, put into every request by the server loop
/// ([`crate::http::serve`]).
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// A negotiated subprotocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `graphql-transport-ws` (graphql-ws, Apollo, urql).
    TransportWs,
    /// Legacy `graphql-ws` (subscriptions-transport-ws).
    LegacyWs,
}

impl Protocol {
    /// The subprotocol's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::TransportWs => "graphql-transport-ws",
            Protocol::LegacyWs => "graphql-ws",
        }
    }
}

/// Picks the first subprotocol the client offers that we speak.
pub fn negotiate(offered: Option<&str>) -> Option<Protocol> {
    offered?.split(',').map(str::trim).find_map(|p| match p {
        "graphql-transport-ws" => Some(Protocol::TransportWs),
        "graphql-ws" => Some(Protocol::LegacyWs),
        _ => None,
    })
}

/// The headers the upgrade is decided on.
#[derive(Default)]
struct UpgradeHeaders {
    offered: Option<String>,
    authorization: Option<String>,
    cookie: Option<String>,
    origin: Option<String>,
    host: Option<String>,
    fetch_site: Option<String>,
}

fn upgrade_headers() -> impl Filter<Extract = (UpgradeHeaders,), Error = warp::Rejection> + Clone {
    use warp::header::optional;
    optional::<String>("sec-websocket-protocol")
        .and(optional::<String>("authorization"))
        .and(optional::<String>("cookie"))
        .and(optional::<String>("origin"))
        .and(optional::<String>("host"))
        .and(optional::<String>("sec-fetch-site"))
        .map(
            |offered, authorization, cookie, origin, host, fetch_site| UpgradeHeaders {
                offered,
                authorization,
                cookie,
                origin,
                host,
                fetch_site,
            },
        )
}

/// The WebSocket route.
pub fn route(state: Arc<AppState>) -> BoxedFilter<(warp::reply::Response,)> {
    let max = state.limits.max_message_bytes;
    warp::path("graphql")
        .and(warp::path::end())
        .and(warp::ws())
        .and(upgrade_headers())
        .and(warp::ext::optional::<PeerAddr>())
        .map(move |ws: warp::ws::Ws, h: UpgradeHeaders, peer: Option<PeerAddr>| {
            let Some(slot) = state.connections.open_connection(peer.map(|p| p.0.ip())) else {
                tracing::info!(peer = ?peer, "websocket refused: too many connections from this address");
                return warp::reply::with_status(
                    "too many connections from this address\n",
                    StatusCode::TOO_MANY_REQUESTS,
                )
                .into_response();
            };
            let protocol = negotiate(h.offered.as_deref());
            let request = RequestOrigin {
                origin: h.origin.as_deref(),
                host: h.host.as_deref(),
                fetch_site: h.fetch_site.as_deref(),
            };
            let credential = Credential::of(
                h.authorization.as_deref(),
                h.cookie.as_deref(),
                &request,
                &state.origins,
            );
            let state = state.clone();
            // The transport's own limit is a backstop; the session refuses
            // oversized messages with a close code first.
            let reply = ws
                .max_message_size(max.saturating_mul(4))
                .max_frame_size(max.saturating_mul(4))
                .on_upgrade(move |socket| async move {
                    let _slot = slot;
                    run(socket, protocol, credential, state).await;
                });
            match protocol {
                Some(p) => warp::reply::with_header(reply, "sec-websocket-protocol", p.name())
                    .into_response(),
                None => reply.into_response(),
            }
        })
        .boxed()
}

/// Runs one upgraded connection to its end.
async fn run(
    socket: warp::ws::WebSocket,
    protocol: Option<Protocol>,
    credential: Credential,
    state: Arc<AppState>,
) {
    let settings = Settings::from(&state.limits);
    let Ok(_permit) = state.connection_permits.clone().try_acquire_owned() else {
        return session::refuse(socket, Close::InstanceFull, settings.write_timeout).await;
    };
    let (accepted_tx, accepted_rx) = tokio::sync::oneshot::channel();
    let shutdown = state.shutdown.clone();
    match protocol {
        None => {
            session::refuse(
                socket,
                Close::SubprotocolNotAcceptable,
                settings.write_timeout,
            )
            .await;
        }
        Some(Protocol::TransportWs) => {
            let (handler, conn) = transport::connection(&state, credential, accepted_tx);
            Session::new(socket, handler, conn, accepted_rx, settings, shutdown)
                .timed(state.hub.stages().clone())
                .run()
                .await;
        }
        Some(Protocol::LegacyWs) => {
            let (handler, conn) = legacy::connection(&state, credential, accepted_tx);
            Session::new(socket, handler, conn, accepted_rx, settings, shutdown)
                .timed(state.hub.stages().clone())
                .run()
                .await;
        }
    }
}
