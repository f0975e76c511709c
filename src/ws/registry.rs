//! Open WebSocket connections per client IP and per token subject (`sub`),
//! with their caps. A slot is held for as long as its connection lives and
//! gives its place back when dropped.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

/// Counts and caps of open connections.
#[derive(Debug)]
pub struct Registry {
    /// Most connections per client IP (0: no cap).
    per_ip: usize,
    /// Most connections per token subject (0: no cap).
    per_subject: usize,
    counts: Mutex<Counts>,
    /// The number of open connections, for whoever waits on it.
    open: watch::Sender<usize>,
}

#[derive(Debug, Default)]
struct Counts {
    by_ip: HashMap<IpAddr, usize>,
    by_subject: HashMap<String, usize>,
    open: usize,
}

fn take<K: Hash + Eq>(map: &mut HashMap<K, usize>, key: K, cap: usize) -> bool {
    let n = map.entry(key).or_insert(0);
    if cap > 0 && *n >= cap {
        return false;
    }
    *n += 1;
    true
}

fn give_back<K: Hash + Eq>(map: &mut HashMap<K, usize>, key: &K) {
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

impl Registry {
    /// A registry with these caps (0: no cap).
    pub fn new(per_ip: usize, per_subject: usize) -> Arc<Registry> {
        Arc::new(Registry {
            per_ip,
            per_subject,
            counts: Mutex::default(),
            open: watch::Sender::new(0),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Never held across an await, and no code under it panics.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a new connection from `ip` (`None`: unknown address, not
    /// capped), or `None` when that address has its cap of connections open.
    pub fn open_connection(self: &Arc<Self>, ip: Option<IpAddr>) -> Option<ConnectionSlot> {
        let mut counts = self.counts();
        if let Some(ip) = ip {
            if !take(&mut counts.by_ip, ip, self.per_ip) {
                return None;
            }
        }
        counts.open += 1;
        self.open.send_replace(counts.open);
        Some(ConnectionSlot {
            registry: self.clone(),
            ip,
        })
    }

    /// A slot for a connection authenticated as `subject`, or `None` when
    /// that subject has its cap of connections open.
    pub fn open_subject(self: &Arc<Self>, subject: &str) -> Option<SubjectSlot> {
        take(
            &mut self.counts().by_subject,
            subject.to_owned(),
            self.per_subject,
        )
        .then(|| SubjectSlot {
            registry: self.clone(),
            subject: subject.to_owned(),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        *self.open.borrow()
    }

    /// Changes of the number of open connections.
    pub fn watch(&self) -> watch::Receiver<usize> {
        self.open.subscribe()
    }
}

/// One open connection (and its place in its IP's count).
#[derive(Debug)]
pub struct ConnectionSlot {
    registry: Arc<Registry>,
    ip: Option<IpAddr>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut counts = self.registry.counts();
        if let Some(ip) = &self.ip {
            give_back(&mut counts.by_ip, ip);
        }
        counts.open -= 1;
        self.registry.open.send_replace(counts.open);
    }
}

/// A connection's place in its subject's count.
#[derive(Debug)]
pub struct SubjectSlot {
    registry: Arc<Registry>,
    subject: String,
}

impl Drop for SubjectSlot {
    fn drop(&mut self) {
        give_back(&mut self.registry.counts().by_subject, &self.subject);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_per_ip_and_per_subject_and_slots_give_their_place_back() {
        let r = Registry::new(2, 1);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = r.open_connection(Some(a)).unwrap();
        let _a2 = r.open_connection(Some(a)).unwrap();
        assert!(r.open_connection(Some(a)).is_none());
        let _b1 = r.open_connection(Some(b)).unwrap();
        let _unknown = r.open_connection(None).unwrap();
        assert_eq!(r.open(), 4);
        drop(a1);
        assert_eq!(r.open(), 3);
        assert!(r.open_connection(Some(a)).is_some());

        let s = r.open_subject("u1").unwrap();
        assert!(r.open_subject("u1").is_none());
        assert!(r.open_subject("u2").is_some());
        drop(s);
        assert!(r.open_subject("u1").is_some());
    }

    #[test]
    fn zero_means_no_cap() {
        let r = Registry::new(0, 0);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let slots: Vec<_> = (0..1000)
            .map(|_| {
                (
                    r.open_connection(Some(ip)).unwrap(),
                    r.open_subject("u").unwrap(),
                )
            })
            .collect();
        assert_eq!(r.open(), slots.len());
    }
}
