//! GraphQL over WebSocket on `/graphql`, for both subprotocols
//! (`graphql-transport-ws` and legacy `graphql-ws`).
//!
//! juniper_graphql_ws implements each protocol's state machine; this module
//! owns everything around it that stock juniper_warp gets wrong (see
//! docs/protocols.md), the upgrade included (warp routes and checks the
//! request; the socket is tokio-tungstenite's, with small buffers: see
//! [`socket_config`]). The code flows one way: this file refuses upgrades
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

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::Either;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::http::header::{
    CONNECTION, HeaderMap, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_PROTOCOL, UPGRADE,
};
use warp::reply::Reply;

pub use registry::Registry;

use self::close::Close;
use self::session::{Session, Settings};
use crate::origin::{Credential, RequestOrigin};
use crate::state::AppState;

/// The client's address, put into every request by the server loop
/// ([`crate::server::serve`]).
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

/// Read buffer of each connection's WebSocket. tungstenite allocates it
/// when the connection opens and zero-fills all of it on the first read, so
/// it is memory every idle connection holds: 1 KiB instead of the default
/// 128 KiB (which warp's upgrade gives no way to change). Clients send
/// little (`connection_init`, `subscribe`, `complete`), so a bigger buffer
/// would save few reads; a message larger than the buffer grows it as far
/// as that message needs (up to the message limit), and it stays that size.
pub(crate) const READ_BUFFER_BYTES: usize = 1024;

/// Outgoing frames are buffered up to this many bytes before they are
/// written (the session flushes after each burst anyway): a burst of small
/// events still goes out in few writes, and no connection buffers 128 KiB
/// (tungstenite's default).
pub(crate) const WRITE_BUFFER_BYTES: usize = 8 * 1024;

/// The WebSocket settings of every upgraded connection.
///
/// The incoming limits are a backstop at 4 × `max_message_bytes`; the
/// session refuses oversized messages with a close code first. The write
/// buffer has no hard cap (`max_write_buffer_size`): the sink waits for a
/// blocked write to drain before it takes the next message, so the buffer
/// never holds more than `WRITE_BUFFER_BYTES` and one message, and a cap
/// would only refuse large events.
pub(crate) fn socket_config(max_message_bytes: usize) -> WebSocketConfig {
    let backstop = max_message_bytes.saturating_mul(4);
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_write_buffer_size(usize::MAX)
        .max_message_size(Some(backstop))
        .max_frame_size(Some(backstop))
}

/// The socket of an upgraded connection.
type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Why a request to `/graphql` is not a WebSocket upgrade: its `Connection`
/// header does not name `upgrade` (answered 400, as warp's own check was).
#[derive(Debug)]
struct NotAnUpgrade;

impl warp::reject::Reject for NotAnUpgrade {}

/// A WebSocket handshake request (RFC 6455, 4.2.1), checked as `warp::ws()`
/// checks it: `GET`, `Upgrade: websocket`, `Connection` naming `upgrade`,
/// `Sec-WebSocket-Version: 13` and a `Sec-WebSocket-Key`. Yields the key
/// and hyper's pending upgrade of the connection (absent when the request
/// did not come through [`crate::server::serve`]).
fn handshake()
-> impl Filter<Extract = (HeaderValue, Option<OnUpgrade>), Error = warp::Rejection> + Clone {
    warp::get()
        .and(warp::header::exact_ignore_case("upgrade", "websocket"))
        .and(
            warp::header::headers_cloned()
                .and_then(|headers: HeaderMap| async move {
                    let upgrade = headers
                        .get_all(CONNECTION)
                        .iter()
                        .filter_map(|v| v.to_str().ok())
                        .flat_map(|v| v.split(','))
                        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
                    if upgrade {
                        Ok(())
                    } else {
                        Err(warp::reject::custom(NotAnUpgrade))
                    }
                })
                .untuple_one(),
        )
        .and(warp::header::exact("sec-websocket-version", "13"))
        .and(warp::header::value("sec-websocket-key"))
        .and(warp::ext::optional::<OnUpgrade>())
}

/// The `101 Switching Protocols` answer to a handshake with `key`, naming
/// the negotiated subprotocol if there is one.
fn switching_protocols(key: &HeaderValue, protocol: Option<Protocol>) -> warp::reply::Response {
    let mut response = warp::reply().into_response();
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    let accept = derive_accept_key(key.as_bytes());
    headers.insert(
        SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_str(&accept).expect("base64 is a valid header value"),
    );
    if let Some(p) = protocol {
        headers.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p.name()));
    }
    response
}

/// The WebSocket route.
///
/// warp routes and checks the request; the upgrade itself is ours, so that
/// the socket gets [`socket_config`] (warp's upgrade would give every
/// connection tungstenite's 128 KiB read buffer).
pub fn route(state: Arc<AppState>) -> BoxedFilter<(warp::reply::Response,)> {
    warp::path("graphql")
        .and(warp::path::end())
        .and(handshake())
        .and(upgrade_headers())
        .and(warp::ext::optional::<PeerAddr>())
        .map(
            move |key: HeaderValue,
                  on_upgrade: Option<OnUpgrade>,
                  h: UpgradeHeaders,
                  peer: Option<PeerAddr>| {
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
                match on_upgrade {
                    Some(on_upgrade) => {
                        let state = state.clone();
                        // hyper completes the upgrade once the 101 is written.
                        tokio::spawn(async move {
                            let _slot = slot;
                            let upgraded = match on_upgrade.await {
                                Ok(upgraded) => upgraded,
                                Err(e) => {
                                    tracing::debug!(error = %e, "websocket upgrade failed");
                                    return;
                                }
                            };
                            let config = socket_config(state.limits.max_message_bytes);
                            let socket = WebSocketStream::from_raw_socket(
                                TokioIo::new(upgraded),
                                Role::Server,
                                Some(config),
                            )
                            .await;
                            run(socket, protocol, credential, state).await;
                        });
                    }
                    None => tracing::debug!("websocket not upgraded: no upgrade state on the request"),
                }
                switching_protocols(&key, protocol)
            },
        )
        .boxed()
}

/// One upgraded connection, run to its end by the returned future.
///
/// Everything is built before the future exists: an `async fn` taking the
/// socket would keep its own copy of it (and of its other arguments) next
/// to the session's for the life of the connection.
fn run(
    socket: Socket,
    protocol: Option<Protocol>,
    credential: Credential,
    state: Arc<AppState>,
) -> impl Future<Output = ()> + Send {
    let settings = Settings::from(&state.limits);
    let Ok(permit) = state.connection_permits.clone().try_acquire_owned() else {
        return Either::Left(session::refuse(
            socket,
            Close::InstanceFull,
            settings.write_timeout,
            None,
        ));
    };
    let (accepted_tx, accepted_rx) = tokio::sync::oneshot::channel();
    let shutdown = state.shutdown.clone();
    match protocol {
        None => Either::Left(session::refuse(
            socket,
            Close::SubprotocolNotAcceptable,
            settings.write_timeout,
            Some(permit),
        )),
        Some(Protocol::TransportWs) => {
            let (handler, conn) = transport::connection(&state, credential, accepted_tx);
            let session = Session::new(socket, handler, conn, accepted_rx, settings, shutdown)
                .timed(state.hub.pipeline().clone(), Protocol::TransportWs)
                .holding(permit);
            Either::Right(Either::Left(session.run().map(drop)))
        }
        Some(Protocol::LegacyWs) => {
            let (handler, conn) = legacy::connection(&state, credential, accepted_tx);
            let session = Session::new(socket, handler, conn, accepted_rx, settings, shutdown)
                .timed(state.hub.pipeline().clone(), Protocol::LegacyWs)
                .holding(permit);
            Either::Right(Either::Right(session.run().map(drop)))
        }
    }
}
