//! GraphQL over WebSocket on `/graphql`, for both subprotocols
//! (`graphql-transport-ws` and legacy `graphql-ws`).
//!
//! juniper_graphql_ws implements each protocol's state machine; this module
//! owns everything around it that stock juniper_warp gets wrong (see
//! docs/protocols.md): subprotocol negotiation, header and cookie tokens, frame
//! filtering (ping frames are not JSON), message pre-checks and close codes,
//! the init timeout, keep-alive by ping frames, token expiry and shutdown.

mod frames;
mod init;
mod legacy;
mod session;
mod transport;

use std::sync::Arc;

use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Reply;

use crate::auth;
use crate::state::AppState;

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

/// The WebSocket route.
pub fn route(state: Arc<AppState>) -> BoxedFilter<(warp::reply::Response,)> {
    let max = state.limits.max_message_bytes;
    warp::path("graphql")
        .and(warp::path::end())
        .and(warp::ws())
        .and(warp::header::optional::<String>("sec-websocket-protocol"))
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::header::optional::<String>("cookie"))
        .map(
            move |ws: warp::ws::Ws,
                  offered: Option<String>,
                  authorization: Option<String>,
                  cookie: Option<String>| {
                let protocol = negotiate(offered.as_deref());
                let upgrade_token = authorization
                    .as_deref()
                    .and_then(auth::bearer)
                    .or_else(|| cookie.as_deref().and_then(auth::token_from_cookie));
                let state = state.clone();
                // The transport's own limit is a backstop; the session refuses
                // oversized messages with a close code first.
                let reply = ws
                    .max_message_size(max.saturating_mul(4))
                    .max_frame_size(max.saturating_mul(4))
                    .on_upgrade(move |socket| session::run(socket, protocol, upgrade_token, state));
                match protocol {
                    Some(p) => warp::reply::with_header(reply, "sec-websocket-protocol", p.name())
                        .into_response(),
                    None => reply.into_response(),
                }
            },
        )
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_takes_the_first_supported_offer_and_nothing_else() {
        assert_eq!(negotiate(Some("graphql-ws")), Some(Protocol::LegacyWs));
        assert_eq!(
            negotiate(Some("foo, graphql-transport-ws, graphql-ws")),
            Some(Protocol::TransportWs)
        );
        assert_eq!(negotiate(Some("foo")), None);
        assert_eq!(negotiate(None), None);
    }
}
