//! A raw WebSocket client for protocol-level tests.

use std::time::Duration;

use super::{WAIT, bearer_init};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// What a WebSocket read produced.
#[derive(Debug, PartialEq)]
pub enum Frame {
    /// A JSON text message.
    Json(Value),
    /// A close frame.
    Close(u16, String),
}

/// A text or close frame as received.
enum Raw {
    Text(String),
    Close(u16, String),
}

/// A raw WebSocket client for protocol-level tests.
pub struct WsClient {
    /// The socket.
    pub socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    /// Connects offering `subprotocol`, with extra request headers.
    pub async fn connect_with(
        url: &str,
        subprotocol: Option<&str>,
        headers: &[(&str, &str)],
    ) -> WsClient {
        let mut request = url.into_client_request().unwrap();
        if let Some(p) = subprotocol {
            request
                .headers_mut()
                .insert("sec-websocket-protocol", p.parse().unwrap());
        }
        for (k, v) in headers {
            let name: tokio_tungstenite::tungstenite::http::HeaderName = k.parse().unwrap();
            request.headers_mut().insert(name, v.parse().unwrap());
        }
        let (socket, _response) = tokio_tungstenite::connect_async(request)
            .await
            .expect("websocket connects");
        WsClient { socket }
    }

    /// Connects with `graphql-transport-ws`.
    pub async fn transport(url: &str) -> WsClient {
        Self::connect_with(url, Some("graphql-transport-ws"), &[]).await
    }

    /// Connects with legacy `graphql-ws`.
    pub async fn legacy(url: &str) -> WsClient {
        Self::connect_with(url, Some("graphql-ws"), &[]).await
    }

    /// Sends a JSON message.
    pub async fn send(&mut self, msg: Value) {
        self.socket
            .send(Message::text(msg.to_string()))
            .await
            .unwrap();
    }

    /// Sends raw text.
    pub async fn send_text(&mut self, text: &str) {
        self.socket.send(Message::text(text)).await.unwrap();
    }

    /// Next JSON message or close frame (ping/pong frames skipped).
    pub async fn next(&mut self) -> Frame {
        match self.next_raw().await {
            Raw::Text(t) => Frame::Json(serde_json::from_str(&t).unwrap()),
            Raw::Close(code, reason) => Frame::Close(code, reason),
        }
    }

    /// Next text message exactly as the server wrote it (ping/pong frames
    /// skipped); panics on a close.
    pub async fn next_text(&mut self) -> String {
        match self.next_raw().await {
            Raw::Text(t) => t,
            Raw::Close(code, reason) => panic!("expected a message, got a close {code} {reason}"),
        }
    }

    async fn next_raw(&mut self) -> Raw {
        loop {
            let msg = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("a websocket message within the timeout");
            match msg {
                Some(Ok(Message::Text(t))) => return Raw::Text(t.to_string()),
                Some(Ok(Message::Close(Some(f)))) => {
                    return Raw::Close(f.code.into(), f.reason.to_string());
                }
                Some(Ok(Message::Close(None))) | None | Some(Err(_)) => {
                    return Raw::Close(1006, String::new());
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// Next JSON message; panics on anything else.
    pub async fn next_json(&mut self) -> Value {
        match self.next().await {
            Frame::Json(v) => v,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    /// Whether nothing arrives within `d` (for asserting absence after a
    /// later event has proven the pipeline moved on).
    pub async fn nothing_within(&mut self, d: Duration) -> Option<Value> {
        match tokio::time::timeout(d, self.next()).await {
            Err(_) => None,
            Ok(Frame::Json(v)) => Some(v),
            Ok(other) => Some(json!({"frame": format!("{other:?}")})),
        }
    }

    /// `connection_init` with a token; expects the ack (either protocol).
    pub async fn init(&mut self, token: &str) {
        self.init_with(bearer_init(token)).await;
    }

    /// Sends the `connection_init` message `init`; expects the ack.
    pub async fn init_with(&mut self, init: Value) {
        self.send(init).await;
        let ack = self.next_json().await;
        assert_eq!(ack["type"], "connection_ack", "{ack}");
    }

    /// Starts a graphql-transport-ws subscription.
    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({"type": "subscribe", "id": id, "payload": {"query": query, "variables": variables}}))
            .await;
    }

    /// Starts a legacy graphql-ws subscription.
    pub async fn start(&mut self, id: &str, query: &str, variables: Value) {
        self.send(
            json!({"type": "start", "id": id, "payload": {"query": query, "variables": variables}}),
        )
        .await;
    }

    /// Next data payload of either protocol (`next` or `data`), skipping `ka`.
    pub async fn next_data(&mut self) -> Value {
        loop {
            let msg = self.next_json().await;
            match msg["type"].as_str() {
                Some("next") | Some("data") => return msg,
                Some("ka") => continue,
                _ => panic!("expected data, got {msg}"),
            }
        }
    }
}
