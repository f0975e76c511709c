//! What a protocol handler is to the session: it turns client text into
//! steps (messages for its juniper connection, frames to send, a close) and
//! juniper's outputs into steps. Protocols implement [`Handler`]; the session
//! drives any of them and knows none by name.

use super::close::Close;

/// What a protocol handler asks the session to do.
#[derive(Debug)]
pub(super) enum Step<In> {
    /// Hand a client message to the juniper connection.
    Forward(In),
    /// Send a text frame.
    Send(String),
    /// Close the socket.
    Close(Close),
}

impl<In> Step<In> {
    /// Sends `msg` as JSON; should it not serialise, closes with `error`
    /// (each protocol has its own code for an internal error).
    pub(super) fn json(msg: &impl serde::Serialize, error: Close) -> Vec<Step<In>> {
        match serde_json::to_string(msg) {
            Ok(text) => vec![Step::Send(text)],
            Err(e) => {
                tracing::error!(error = %e, "serialising a server message");
                vec![Step::Close(error)]
            }
        }
    }
}

/// A protocol's pre- and post-processing around its juniper connection.
pub(super) trait Handler: Send {
    /// Client message type of the juniper connection.
    type In: Send;
    /// Output type of the juniper connection.
    type Out: Send;
    /// A text frame from the client.
    fn on_text(&mut self, text: &str) -> Vec<Step<Self::In>>;
    /// An output of the juniper connection (`None`: it ended).
    fn on_output(&mut self, out: Option<Self::Out>) -> Vec<Step<Self::In>>;
    /// The client closed the socket: the message telling juniper so, if any.
    fn on_close(&mut self) -> Option<Self::In>;
    /// Whether `connection_init` was accepted.
    fn initialised(&self) -> bool;
}
