//! Every reason pgherald closes a WebSocket, with its code and the reason
//! sent to the client: the one table of close codes (docs/protocols.md lists
//! the same), and the one place closes are logged.

use std::borrow::Cow;

use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use super::init::Refusal;

/// Why the server closes a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Close {
    /// The connection ended normally (`connection_terminate`, the end of the
    /// juniper connection).
    Normal,
    /// The server is shutting down.
    Shutdown,
    /// A message over the size limit.
    TooBig,
    /// Nothing heard from the client for three ping intervals.
    KeepAliveTimeout,
    /// The legacy protocol could not serialise a server message.
    LegacyInternal,
    /// The instance's connection limit is reached.
    InstanceFull,
    /// A malformed message or a binary frame (the text says what was wrong).
    BadRequest(String),
    /// `subscribe` before the token was accepted.
    Unauthorized,
    /// The token was refused at `connection_init` (the text says why).
    Forbidden(String),
    /// The token expired while connected.
    Expired,
    /// No supported subprotocol offered.
    SubprotocolNotAcceptable,
    /// No accepted `connection_init` in time.
    InitTimeout,
    /// `subscribe` with an id still in use.
    SubscriberExists(String),
    /// A second `connection_init`.
    TooManyInits,
    /// The token's subject has too many connections open.
    SubjectLimit,
    /// graphql-transport-ws could not serialise a server message.
    Internal,
    /// The token could not be checked because the database is unavailable.
    Unavailable,
    /// A code juniper chose that this table does not name.
    Other(u16, String),
}

impl Close {
    /// The close for a refused `connection_init`.
    pub fn refused(refusal: Refusal, message: String) -> Close {
        match refusal {
            Refusal::Forbidden => Close::Forbidden(message),
            Refusal::Unavailable => Close::Unavailable,
            Refusal::SubjectLimit => Close::SubjectLimit,
        }
    }

    /// A close juniper asked for, by its code.
    pub fn from_juniper(code: u16, message: String) -> Close {
        match code {
            1000 => Close::Normal,
            4400 => Close::BadRequest(message),
            4401 => Close::Unauthorized,
            4403 => Close::Forbidden(message),
            _ => Close::Other(code, message),
        }
    }

    /// The close code.
    pub fn code(&self) -> u16 {
        match self {
            Close::Normal => 1000,
            Close::Shutdown => 1001,
            Close::TooBig => 1009,
            Close::KeepAliveTimeout | Close::LegacyInternal => 1011,
            Close::InstanceFull => 1013,
            Close::BadRequest(_) => 4400,
            Close::Unauthorized => 4401,
            Close::Forbidden(_) | Close::Expired => 4403,
            Close::SubprotocolNotAcceptable => 4406,
            Close::InitTimeout => 4408,
            Close::SubscriberExists(_) => 4409,
            Close::TooManyInits | Close::SubjectLimit => 4429,
            Close::Internal => 4500,
            Close::Unavailable => 4503,
            Close::Other(code, _) => *code,
        }
    }

    /// The reason sent with the code.
    pub fn reason(&self) -> Cow<'_, str> {
        match self {
            Close::Normal => "Normal Closure".into(),
            Close::Shutdown => "server shutting down".into(),
            Close::TooBig => "message too big".into(),
            Close::KeepAliveTimeout => "keep-alive timeout".into(),
            Close::LegacyInternal | Close::Internal => "Internal server error".into(),
            Close::InstanceFull => "too many connections".into(),
            Close::BadRequest(why) => why.into(),
            Close::Unauthorized => "Unauthorized".into(),
            Close::Forbidden(why) => why.into(),
            Close::Expired => "Forbidden: token expired".into(),
            Close::SubprotocolNotAcceptable => "Subprotocol not acceptable".into(),
            Close::InitTimeout => "Connection initialisation timeout".into(),
            Close::SubscriberExists(id) => format!("Subscriber for {id} already exists").into(),
            Close::TooManyInits => "Too many initialisation requests".into(),
            Close::SubjectLimit => "Too many connections for this subject".into(),
            Close::Unavailable => "Service unavailable: try again later".into(),
            Close::Other(_, why) => why.into(),
        }
    }

    /// The close frame, with the reason cut to the 123 bytes a frame can
    /// carry (on a character boundary); longer reasons make an invalid frame.
    pub fn frame(&self) -> Message {
        let reason = self.reason();
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Message::Close(Some(CloseFrame {
            code: self.code().into(),
            reason: reason[..end].to_owned().into(),
        }))
    }

    /// Logs the close: the server's own failures as errors, what clients do
    /// wrong or what ends a connection normally at debug level.
    pub fn log(&self) {
        let (code, reason) = (self.code(), self.reason());
        match self {
            Close::Internal | Close::LegacyInternal => {
                tracing::error!(code, %reason, "websocket closed on an internal error");
            }
            Close::Unavailable => {
                tracing::warn!(code, %reason, "websocket closed: database unavailable");
            }
            Close::InstanceFull | Close::SubjectLimit => {
                tracing::info!(code, %reason, "websocket refused: connection limit");
            }
            _ => tracing::debug!(code, %reason, "websocket closed"),
        }
    }
}

/// Why a connection ended without a close frame: the socket could not be
/// written to, or went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// A write did not finish within the write timeout (the peer stopped reading).
    WriteTimeout,
    /// The socket failed or the peer went away.
    SocketGone,
    /// Shutdown or token expiry arrived while a write was blocked.
    Interrupted,
}

impl Dropped {
    /// Logs the drop.
    pub fn log(self) {
        match self {
            Dropped::WriteTimeout => {
                tracing::info!("websocket dropped: the client stopped reading (write timeout)");
            }
            Dropped::SocketGone => tracing::debug!("websocket gone"),
            Dropped::Interrupted => {
                tracing::info!(
                    "websocket dropped: shutdown or token expiry while a write was blocked"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_are_cut_to_123_bytes_on_a_char_boundary() {
        let long = "é".repeat(100);
        let Message::Close(Some(frame)) = Close::BadRequest(long).frame() else {
            panic!("not a close frame");
        };
        let (code, reason) = (u16::from(frame.code), frame.reason.as_str());
        assert_eq!(code, 4400);
        assert!(reason.len() <= 123);
        assert!(reason.chars().all(|c| c == 'é'));
    }

    #[test]
    fn codes_follow_the_documented_table() {
        for (close, code) in [
            (Close::Normal, 1000),
            (Close::Shutdown, 1001),
            (Close::TooBig, 1009),
            (Close::KeepAliveTimeout, 1011),
            (Close::InstanceFull, 1013),
            (Close::Unauthorized, 4401),
            (Close::Expired, 4403),
            (Close::InitTimeout, 4408),
            (Close::TooManyInits, 4429),
            (Close::SubjectLimit, 4429),
            (Close::Internal, 4500),
            (Close::Unavailable, 4503),
        ] {
            assert_eq!(close.code(), code, "{close:?}");
        }
    }
}
