//! Small helpers for WebSocket frames.

use warp::ws::Message;

/// A close frame whose reason fits the 123-byte limit of the protocol (cut on
/// a character boundary); longer reasons make an invalid frame.
pub fn close(code: u16, reason: &str) -> Message {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::close_with(code, reason[..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_are_cut_to_123_bytes_on_a_char_boundary() {
        let long = "é".repeat(100);
        let msg = close(4400, &long);
        let (code, reason) = msg.close_frame().unwrap();
        assert_eq!(code, 4400);
        assert!(reason.len() <= 123);
        assert!(reason.chars().all(|c| c == 'é'));
    }
}
