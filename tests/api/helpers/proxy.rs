//! A TCP proxy in front of Postgres that a test can tell to stop forwarding
//! on the connections it has, without closing them: what a dead network path
//! leaves a client with (a half-open socket, where writes succeed and no
//! answer ever comes). Connections made afterwards are forwarded again.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Sockets of frozen connections, kept open until the proxy is dropped.
type Frozen = Arc<Mutex<Vec<(TcpStream, TcpStream)>>>;

/// The proxy; it stops (and closes every socket) on drop.
pub struct Proxy {
    /// Its address, on 127.0.0.1.
    pub addr: SocketAddr,
    /// Bumped by each freeze: a connection accepted before the bump stops.
    epoch: watch::Sender<u64>,
    frozen: Frozen,
    accept: JoinHandle<()>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (epoch, _) = watch::channel(0u64);
        let frozen = Frozen::default();
        let accept = tokio::spawn(accept_loop(listener, target, epoch.clone(), frozen.clone()));
        Proxy {
            addr,
            epoch,
            frozen,
            accept,
        }
    }

    /// Stops forwarding on every connection open now, leaving both of its
    /// sockets open.
    pub fn freeze_open_connections(&self) {
        self.epoch.send_modify(|e| *e += 1);
    }

    /// How many connections have been frozen.
    pub fn frozen(&self) -> usize {
        self.frozen.lock().unwrap().len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    target: SocketAddr,
    epoch: watch::Sender<u64>,
    frozen: Frozen,
) {
    while let Ok((mut client, _)) = listener.accept().await {
        let mut changes = epoch.subscribe();
        let born = *changes.borrow_and_update();
        let frozen = frozen.clone();
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(target).await else {
                return;
            };
            let stopped = tokio::select! {
                _ = copy_bidirectional(&mut client, &mut server) => false,
                _ = changes.wait_for(|now| *now > born) => true,
            };
            if stopped {
                frozen.lock().unwrap().push((client, server));
            }
        });
    }
}
