//! A protocol-agnostic GraphQL subscriber: one user's initialised WebSocket
//! connection over either subprotocol (graphql-transport-ws or the legacy
//! graphql-ws), with the `changes` and `notifications` subscriptions and
//! reads that assert what each protocol must send.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{TestApp, WsClient};

/// `changes` with every argument but `after` as a variable, selecting every field.
pub const CHANGES: &str = "subscription($table: String!, $ops: [ChangeOp!], $filter: JSON) {
  changes(table: $table, ops: $ops, filter: $filter) { cursor op table row old committedAt }
}";

/// The caller's new notifications: inserts into `notifications`, which RLS
/// restricts to the recipient's rows, selecting the operation and every
/// column of the new row (the event's value is `{op, row: {...}}`).
pub const NOTIFICATIONS: &str = "subscription {
  notifications(ops: [INSERT]) {
    op row { id tenant_id user_id kind title body data created_at read_at }
  }
}";

/// Which GraphQL-over-WebSocket subprotocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `graphql-transport-ws` (the graphql-ws library).
    Transport,
    /// Legacy `graphql-ws` (subscriptions-transport-ws).
    Legacy,
}

impl Protocol {
    /// The message type that carries a result.
    fn data_type(self) -> &'static str {
        match self {
            Protocol::Transport => "next",
            Protocol::Legacy => "data",
        }
    }
}

/// An initialised WebSocket connection of one user, over one subprotocol.
pub struct Subscriber {
    /// The socket.
    pub ws: WsClient,
    /// Its subprotocol.
    pub protocol: Protocol,
    /// Whose token it carries (for failure messages).
    pub who: String,
}

impl Subscriber {
    /// Connects as user `user` (id), named `who` in failure messages.
    pub async fn connect(app: &TestApp, user: &str, who: &str, protocol: Protocol) -> Subscriber {
        Subscriber::with_token(app, &app.token(user), who, protocol).await
    }

    /// Connects with `token` (any role), named `who` in failure messages.
    pub async fn with_token(
        app: &TestApp,
        token: &str,
        who: &str,
        protocol: Protocol,
    ) -> Subscriber {
        let mut ws = match protocol {
            Protocol::Transport => WsClient::transport(&app.ws_url).await,
            Protocol::Legacy => WsClient::legacy(&app.ws_url).await,
        };
        ws.init(token).await;
        Subscriber {
            ws,
            protocol,
            who: who.to_owned(),
        }
    }

    /// Starts operation `id` (`subscribe` or `start`, by protocol).
    pub async fn start(&mut self, id: &str, query: &str, variables: Value) {
        match self.protocol {
            Protocol::Transport => self.ws.subscribe(id, query, variables).await,
            Protocol::Legacy => self.ws.start(id, query, variables).await,
        }
    }

    /// Subscribes `id` to `changes(table, ops, filter)`; `Value::Null`
    /// leaves `ops` or `filter` out.
    pub async fn changes(&mut self, id: &str, table: &str, ops: Value, filter: Value) {
        self.start(
            id,
            CHANGES,
            json!({"table": table, "ops": ops, "filter": filter}),
        )
        .await;
    }

    /// The next message that is not a legacy `ka` keep-alive.
    pub async fn next_message(&mut self) -> Value {
        serde_json::from_str(&self.next_text().await).unwrap()
    }

    /// The next message that is not a legacy `ka` keep-alive, exactly as
    /// the server wrote it.
    pub async fn next_text(&mut self) -> String {
        loop {
            let text = self.ws.next_text().await;
            let msg: Value = serde_json::from_str(&text).unwrap();
            if msg["type"] != "ka" {
                return text;
            }
        }
    }

    /// The next message, which must be a result without errors; returns the
    /// operation id and the value of the result's only root field.
    pub async fn next_result(&mut self) -> (String, Value) {
        let msg = self.next_message().await;
        let who = &self.who;
        assert_eq!(
            msg["type"],
            self.protocol.data_type(),
            "{who}: expected a result message, got {msg}"
        );
        let id = msg["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{who}: a result without an id: {msg}"))
            .to_owned();
        let payload = &msg["payload"];
        assert!(
            payload.get("errors").is_none_or(Value::is_null),
            "{who}: a result with errors: {msg}"
        );
        let data = payload["data"]
            .as_object()
            .unwrap_or_else(|| panic!("{who}: a result without data: {msg}"));
        assert_eq!(data.len(), 1, "{who}: one root field expected: {msg}");
        (id, data.values().next().unwrap().clone())
    }

    /// The next message, which must be a result of operation `id`.
    pub async fn next_event(&mut self, id: &str) -> Value {
        let (got, value) = self.next_result().await;
        assert_eq!(
            got, id,
            "{}: expected an event of {id}, got one of {got}: {value}",
            self.who
        );
        value
    }

    /// `n` events of the connection's only subscription `id`.
    pub async fn events(&mut self, id: &str, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            out.push(self.next_event(id).await);
        }
        out
    }

    /// Events of the connection's only subscription `id`, up to and
    /// including the first that `last` accepts.
    pub async fn events_until(&mut self, id: &str, last: impl Fn(&Value) -> bool) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let event = self.next_event(id).await;
            let done = last(&event);
            out.push(event);
            if done {
                return out;
            }
        }
    }

    /// Events of every subscription of the connection, by operation id, until
    /// each id in `counts` has at least its count.
    pub async fn collect(&mut self, counts: &[(&str, usize)]) -> BTreeMap<String, Vec<Value>> {
        let mut got: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        let done = |got: &BTreeMap<String, Vec<Value>>| {
            counts
                .iter()
                .all(|(id, n)| got.get(*id).map_or(0, Vec::len) >= *n)
        };
        while !done(&got) {
            let (id, value) = self.next_result().await;
            got.entry(id).or_default().push(value);
        }
        got
    }

    /// The next message, which must report that operation `id` failed;
    /// returns its GraphQL errors. graphql-transport-ws: one `error` message
    /// whose payload is the list of errors, and no `complete` (PROTOCOL.md).
    /// Legacy graphql-ws: a `data` result with `errors`, then `complete` (or
    /// an `error` message carrying one error, which that protocol allows too).
    pub async fn operation_error(&mut self, id: &str) -> Vec<Value> {
        let msg = self.next_message().await;
        let who = self.who.clone();
        assert_eq!(
            msg["id"], id,
            "{who}: expected an error for {id}, got {msg}"
        );
        let errors = match (self.protocol, msg["type"].as_str()) {
            (Protocol::Transport, Some("error")) => msg["payload"]
                .as_array()
                .unwrap_or_else(|| panic!("{who}: error payload must be a list: {msg}"))
                .clone(),
            (Protocol::Legacy, Some("error")) => vec![msg["payload"].clone()],
            (Protocol::Legacy, Some("data")) => {
                let errors = msg["payload"]["errors"]
                    .as_array()
                    .unwrap_or_else(|| panic!("{who}: expected an error for {id}, got {msg}"))
                    .clone();
                let complete = self.next_message().await;
                assert_eq!(
                    complete,
                    json!({"type": "complete", "id": id}),
                    "{who}: a result with errors must end the operation"
                );
                errors
            }
            _ => panic!("{who}: expected an error for {id}, got {msg}"),
        };
        assert!(!errors.is_empty(), "{who}: an empty error list: {msg}");
        for e in &errors {
            assert!(
                e["message"].as_str().is_some_and(|m| !m.is_empty()),
                "{who}: an error without a message: {msg}"
            );
        }
        errors
    }
}
