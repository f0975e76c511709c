//! One WebSocket connection: [`Session`] moves frames between the socket and
//! a protocol's juniper connection, through the protocol's [`Handler`], and
//! keeps the connection's timers: the init deadline, keep-alive pings, token
//! expiry and shutdown.
//!
//! Every write has a deadline (`HERALD_WRITE_TIMEOUT`): a peer that stops
//! reading cannot hold the loop, and a write that is still blocked when the
//! server shuts down or the token expires is abandoned at once. Either way
//! the connection is dropped without a close frame, which could not be
//! written anyway.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::stream::{SplitSink, SplitStream};
use futures::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::time::{Instant, sleep, sleep_until};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::Protocol;
use super::close::{Close, Dropped};
use super::handler::{Handler, Step};
use super::init::Accepted;
use super::registry::SubjectSlot;
use crate::config::Limits;
use crate::metrics::pipeline::Pipeline;

/// The limits a session enforces.
#[derive(Clone, Copy, Debug)]
pub(super) struct Settings {
    /// Time from the upgrade to an accepted `connection_init`.
    pub init_timeout: Duration,
    /// Interval of ping frames; three without any frame from the client close.
    pub ping_interval: Duration,
    /// Longest any write may take.
    pub write_timeout: Duration,
    /// Largest text message accepted.
    pub max_message_bytes: usize,
}

impl From<&Limits> for Settings {
    fn from(l: &Limits) -> Settings {
        Settings {
            init_timeout: l.init_timeout,
            ping_interval: l.ping_interval,
            write_timeout: l.write_timeout,
            max_message_bytes: l.max_message_bytes,
        }
    }
}

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Ended {
    /// The server closed it with this close frame.
    Closed(Close),
    /// The server dropped it without a close frame.
    Dropped(Dropped),
    /// The client closed it or went away.
    ClientClosed,
}

impl Ended {
    /// Logs how the connection ended: the one place sessions are logged.
    fn log(&self) {
        match self {
            Ended::Closed(close) => close.log(),
            Ended::Dropped(dropped) => dropped.log(),
            Ended::ClientClosed => tracing::debug!("websocket closed by the client"),
        }
    }
}

/// Most outputs written per flush.
const OUTPUT_BURST: usize = 64;

/// What woke the loop.
enum Event<Out> {
    Frame(Option<Result<Message, String>>),
    Output(Option<Out>),
    InitTimeout,
    Ping,
    Expired,
    Accepted(Option<Accepted>),
    Shutdown,
}

/// What ended a wait that was not a write.
enum Interrupt {
    Shutdown,
    Expired,
}

/// One connection's loop and state.
pub(super) struct Session<W, H: Handler, C> {
    socket: W,
    handler: H,
    to_conn: SplitSink<C, H::In>,
    from_conn: SplitStream<C>,
    settings: Settings,
    shutdown: CancellationToken,
    accepted: oneshot::Receiver<Accepted>,
    accepted_known: bool,
    /// The subject's connection slot, held until the session ends.
    slot: Option<SubjectSlot>,
    /// The instance's connection permit, held until the session ends.
    permit: Option<OwnedSemaphorePermit>,
    init_deadline: Instant,
    ping_at: Instant,
    last_heard: Instant,
    expires_at: Option<Instant>,
    /// Where write bursts are timed and frames counted (under the
    /// session's protocol), if anywhere.
    pipeline: Option<(Arc<Pipeline>, Protocol)>,
}

impl<W, E, H, C> Session<W, H, C>
where
    W: Sink<Message, Error = E> + Stream<Item = Result<Message, E>> + Unpin + Send,
    E: Display,
    H: Handler,
    C: Sink<H::In> + Stream<Item = H::Out> + Send + Unpin,
{
    /// A session over `socket` for the protocol `handler` and its juniper
    /// connection `conn`; `accepted` reports an accepted `connection_init`.
    pub fn new(
        socket: W,
        handler: H,
        conn: C,
        accepted: oneshot::Receiver<Accepted>,
        settings: Settings,
        shutdown: CancellationToken,
    ) -> Self {
        let (to_conn, from_conn) = conn.split();
        let now = Instant::now();
        Session {
            socket,
            handler,
            to_conn,
            from_conn,
            settings,
            shutdown,
            accepted,
            accepted_known: false,
            slot: None,
            permit: None,
            init_deadline: now + settings.init_timeout,
            ping_at: now + settings.ping_interval,
            last_heard: now,
            expires_at: None,
            pipeline: None,
        }
    }

    /// Times each burst of writes into `pipeline`, and counts the frames
    /// written under `protocol`.
    pub fn timed(mut self, pipeline: Arc<Pipeline>, protocol: Protocol) -> Self {
        self.pipeline = Some((pipeline, protocol));
        self
    }

    /// Holds the instance's connection `permit` until the session ends.
    pub fn holding(mut self, permit: OwnedSemaphorePermit) -> Self {
        self.permit = Some(permit);
        self
    }

    /// Runs the connection to its end, logs how it ended, and closes the socket.
    pub async fn run(mut self) -> Ended {
        let ended = loop {
            let event = self.next_event().await;
            let steps = match self.handle(event).await {
                Ok(steps) => steps,
                Err(ended) => break ended,
            };
            if let Some(ended) = self.apply(steps).await {
                break ended;
            }
        };
        ended.log();
        if !matches!(ended, Ended::Dropped(_)) {
            let _ = tokio::time::timeout(self.settings.write_timeout, self.socket.close()).await;
        }
        drop(self.slot.take());
        drop(self.permit.take());
        ended
    }

    async fn next_event(&mut self) -> Event<H::Out> {
        let far = Instant::now() + Duration::from_secs(86400 * 365);
        tokio::select! {
            frame = self.socket.next() => Event::Frame(frame.map(|r| r.map_err(|e| e.to_string()))),
            out = self.from_conn.next() => Event::Output(out),
            _ = sleep_until(self.init_deadline), if !self.handler.initialised() => Event::InitTimeout,
            _ = sleep_until(self.ping_at) => Event::Ping,
            _ = sleep_until(self.expires_at.unwrap_or(far)), if self.expires_at.is_some() => Event::Expired,
            accepted = &mut self.accepted, if !self.accepted_known => Event::Accepted(accepted.ok()),
            _ = self.shutdown.cancelled() => Event::Shutdown,
        }
    }

    /// The steps for `event`, or how the session ended.
    async fn handle(&mut self, event: Event<H::Out>) -> Result<Vec<Step<H::In>>, Ended> {
        Ok(match event {
            Event::Frame(Some(Ok(msg))) => {
                self.last_heard = Instant::now();
                match msg {
                    Message::Text(text) if text.len() > self.settings.max_message_bytes => {
                        vec![Step::Close(Close::TooBig)]
                    }
                    Message::Text(text) => self.handler.on_text(text.as_str()),
                    Message::Close(_) => {
                        if let Some(input) = self.handler.on_close() {
                            let _ = self.to_conn.send(input).await;
                        }
                        return Err(Ended::ClientClosed);
                    }
                    Message::Binary(_) => vec![Step::Close(Close::BadRequest(
                        "binary messages are not supported".into(),
                    ))],
                    // Ping frames are answered by the WebSocket layer; pongs
                    // only prove the peer is alive.
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Vec::new(),
                }
            }
            Event::Frame(Some(Err(e))) => {
                tracing::debug!(error = %e, "websocket read failed");
                return Err(Ended::ClientClosed);
            }
            Event::Frame(None) => return Err(Ended::ClientClosed),
            Event::Output(out) => {
                // Take whatever else is ready too, so a burst of events goes
                // out with one flush instead of a write per message.
                let mut steps = self.handler.on_output(out);
                for _ in 0..OUTPUT_BURST {
                    match self.from_conn.next().now_or_never() {
                        Some(out) => steps.extend(self.handler.on_output(out)),
                        None => break,
                    }
                }
                steps
            }
            Event::InitTimeout => vec![Step::Close(Close::InitTimeout)],
            Event::Ping => {
                if self.last_heard.elapsed() > self.settings.ping_interval * 3 {
                    vec![Step::Close(Close::KeepAliveTimeout)]
                } else {
                    self.ping_at = Instant::now() + self.settings.ping_interval;
                    let ping = self.socket.send(Message::Ping(Default::default()));
                    bounded_write(ping, &self.settings, &self.shutdown, self.expires_at)
                        .await
                        .map_err(Ended::Dropped)?;
                    Vec::new()
                }
            }
            Event::Expired => vec![Step::Close(Close::Expired)],
            Event::Accepted(accepted) => {
                self.accepted_known = true;
                if let Some(accepted) = accepted {
                    self.slot = accepted.slot;
                    self.expires_at = accepted.exp.map(|exp| {
                        let left = exp - chrono::Utc::now().timestamp();
                        Instant::now() + Duration::from_secs(left.max(0) as u64)
                    });
                }
                Vec::new()
            }
            Event::Shutdown => vec![Step::Close(Close::Shutdown)],
        })
    }

    /// Carries out `steps`; how the session ended, if it did.
    async fn apply(&mut self, steps: Vec<Step<H::In>>) -> Option<Ended> {
        let mut written = 0u64;
        let started = Instant::now();
        for step in steps {
            match step {
                Step::Forward(input) => {
                    // juniper handles `connection_init` inside this send (the
                    // token check may wait on the database): shutdown and
                    // expiry still end it.
                    let send = self.to_conn.send(input);
                    match interruptible(send, &self.shutdown, self.expires_at).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return Some(Ended::ClientClosed),
                        Err(Interrupt::Shutdown) => return Some(self.close(Close::Shutdown).await),
                        Err(Interrupt::Expired) => return Some(self.close(Close::Expired).await),
                    }
                }
                Step::Send(text) => {
                    let feed = self.socket.feed(Message::text(text));
                    if let Err(dropped) =
                        bounded_write(feed, &self.settings, &self.shutdown, self.expires_at).await
                    {
                        return Some(Ended::Dropped(dropped));
                    }
                    written += 1;
                }
                Step::Close(close) => return Some(self.close(close).await),
            }
        }
        if written > 0 {
            let flush = self.socket.flush();
            if let Err(dropped) =
                bounded_write(flush, &self.settings, &self.shutdown, self.expires_at).await
            {
                return Some(Ended::Dropped(dropped));
            }
            if let Some((pipeline, protocol)) = &self.pipeline {
                pipeline.write.observe(started.elapsed());
                pipeline
                    .frames
                    .of(*protocol)
                    .fetch_add(written, Ordering::Relaxed);
            }
        }
        None
    }

    /// Sends the close frame for `close` (within the write timeout only: a
    /// shutdown must still be able to say 1001).
    async fn close(&mut self, close: Close) -> Ended {
        let send = self.socket.send(close.frame());
        match tokio::time::timeout(self.settings.write_timeout, send).await {
            Ok(Ok(())) => Ended::Closed(close),
            Ok(Err(_)) => Ended::Dropped(Dropped::SocketGone),
            Err(_) => Ended::Dropped(Dropped::WriteTimeout),
        }
    }
}

/// A write bounded by the write timeout, and abandoned at shutdown or at the
/// token's expiry.
async fn bounded_write<E>(
    write: impl Future<Output = Result<(), E>>,
    settings: &Settings,
    shutdown: &CancellationToken,
    expires_at: Option<Instant>,
) -> Result<(), Dropped> {
    tokio::select! {
        biased;
        result = write => result.map_err(|_| Dropped::SocketGone),
        _ = sleep(settings.write_timeout) => Err(Dropped::WriteTimeout),
        interrupt = interrupted(shutdown, expires_at) => {
            let _ = interrupt;
            Err(Dropped::Interrupted)
        }
    }
}

/// `fut`, unless shutdown or the token's expiry come first.
async fn interruptible<T>(
    fut: impl Future<Output = T>,
    shutdown: &CancellationToken,
    expires_at: Option<Instant>,
) -> Result<T, Interrupt> {
    tokio::select! {
        biased;
        value = fut => Ok(value),
        interrupt = interrupted(shutdown, expires_at) => Err(interrupt),
    }
}

/// Resolves at shutdown or at `expires_at`, whichever is first.
async fn interrupted(shutdown: &CancellationToken, expires_at: Option<Instant>) -> Interrupt {
    match expires_at {
        Some(at) => tokio::select! {
            _ = shutdown.cancelled() => Interrupt::Shutdown,
            _ = sleep_until(at) => Interrupt::Expired,
        },
        None => {
            shutdown.cancelled().await;
            Interrupt::Shutdown
        }
    }
}

/// Closes a socket that gets no session (no subprotocol, instance full),
/// holding the instance's connection `permit`, if it has one, meanwhile.
pub(super) async fn refuse<W, E>(
    mut socket: W,
    close: Close,
    write_timeout: Duration,
    permit: Option<OwnedSemaphorePermit>,
) where
    W: Sink<Message, Error = E> + Unpin,
{
    let _permit = permit;
    close.log();
    let _ = tokio::time::timeout(write_timeout, async {
        let _ = socket.send(close.frame()).await;
        let _ = socket.close().await;
    })
    .await;
}
