//! Unit tests of [`super`].

use super::*;

fn heartbeat() -> Heartbeat {
    let hb = Heartbeat::new(Arc::new(ListenerStatus::default()));
    hb.set_pid(4242);
    hb
}

#[test]
fn its_own_heartbeats_come_back() {
    let hb = heartbeat();
    assert!(!hb.overdue());
    let first = hb.next_payload();
    assert!(hb.overdue());
    assert!(hb.receive(4242, &first));
    assert!(!hb.overdue());
    let second = hb.next_payload();
    let third = hb.next_payload();
    assert!(hb.receive(4242, &third));
    assert!(hb.receive(4242, &second), "a late one still counts");
    assert!(!hb.overdue());
    assert_eq!(hb.status.heartbeat_seen.load(Ordering::Relaxed), 3);
}

#[test]
fn spoofed_heartbeats_do_not_mask_a_missing_one() {
    let hb = heartbeat();
    let own = hb.next_payload();
    let token = own.split(':').next().unwrap().to_owned();
    for (pid, payload) in [
        // Another backend, even with the right token and sequence.
        (77, own.clone()),
        (0, own.clone()),
        // The old format, and numbers ahead of what was sent.
        (4242, "999999999".to_owned()),
        (4242, format!("{token}:999999999")),
        (77, format!("{token}:999999999")),
        // Another session's token.
        (4242, "0123456789abcdef:1".to_owned()),
        (4242, format!("{token}:")),
        (4242, format!("{token}:1:2")),
        (4242, String::new()),
    ] {
        assert!(!hb.receive(pid, &payload), "{pid} {payload:?}");
        assert!(hb.overdue(), "{pid} {payload:?} must not count");
    }
    assert_eq!(hb.status.heartbeat_seen.load(Ordering::Relaxed), 0);
    assert_eq!(hb.status.foreign_heartbeats.load(Ordering::Relaxed), 9);
    assert!(hb.receive(4242, &own));
    assert!(!hb.overdue());
}

#[test]
fn sessions_have_different_tokens() {
    assert_ne!(session_token(), session_token());
    assert_eq!(session_token().len(), 16);
}
