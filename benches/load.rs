//! `make bench`: a load benchmark of a real `pgherald serve` process.
//!
//! Opens C WebSocket connections with S subscriptions each, writes E rows at
//! R rows/s with plain SQL, and reports delivered / lost / duplicated,
//! latency from commit to receipt (p50, p99, max), deliveries per second and
//! server RSS per connection. Modes: `fanout` (every subscriber sees every
//! row: one tenant-wide document stream), `targeted` (each row is one
//! user's notification, by a filter), `rls` (each user on the whole
//! notifications table, RLS alone decides), `shared` (a tenant-wide stream
//! as `fanout`, but the connections spread over a few users, so that many
//! subscribers share each security context), `bigtx` (E rows written in one
//! transaction, the server's RSS sampled throughout) and `targets` (every
//! performance target's workload, then a table of met / not met). Prints a
//! table and writes JSON to bench-results/.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio_postgres::NoTls;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[derive(Parser, Debug, Clone)]
#[command(about = "pgherald load benchmark")]
struct Args {
    /// fanout (one tenant-wide stream), targeted (each user's own rows, by a
    /// filter), rls (each user on the whole table, RLS alone decides), shared
    /// (fanout over a few users: many subscribers per security context),
    /// bigtx (E rows in one transaction, RSS sampled), all (fanout, targeted
    /// and rls), or targets (every performance target with its own
    /// parameters; of the flags below only --writers, --only, --server-env
    /// and --server apply).
    #[arg(long, default_value = "all")]
    mode: String,
    /// WebSocket connections.
    #[arg(long, short = 'c', default_value_t = 100)]
    connections: usize,
    /// Subscriptions per connection.
    #[arg(long, short = 's', default_value_t = 1)]
    subs: usize,
    /// Distinct users (security contexts) the connections are spread over,
    /// round robin, one token per user. Default: one user per connection
    /// (`shared`: 5).
    #[arg(long, short = 'u')]
    users: Option<usize>,
    /// Rows written.
    #[arg(long, short = 'e', default_value_t = 2000)]
    events: usize,
    /// Rows per second (0: as fast as the writers can, a burst).
    #[arg(long, short = 'r', default_value_t = 500)]
    rate: u64,
    /// Concurrent writer connections.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Longest wait for deliveries after the last write, in seconds (0: no
    /// limit). The wait also ends after 10 s without progress (30 s for
    /// bigtx), or once every subscription has been ended by the server.
    #[arg(long, default_value_t = 0)]
    max_wait: u64,
    /// With --mode targets: run only these targets (e.g. --only 1,5,7).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Extra environment for the server, KEY=VALUE (repeatable), e.g.
    /// HERALD_SUBSCRIPTION_QUEUE=200000. Printed with the results.
    #[arg(long = "server-env")]
    server_env: Vec<String>,
    /// Server binary.
    #[arg(long, default_value = "target/release/pgherald")]
    server: String,
    #[arg(long, hide = true)]
    bench: bool,
}

const SECRET: &str = "bench-secret";
const STAGES: [&str; 5] = ["hold", "read", "authorize", "dispatch", "write"];

/// What one connection's reader saw. Each reader has its own (no lock
/// contention between readers); they are merged at the end.
#[derive(Default)]
struct Seen {
    /// (subscriber, seq) → times received.
    counts: HashMap<(usize, usize), u32>,
    /// (seq, when received) of every delivery; latencies are computed at the
    /// end, so a frame that arrives before its writer knows the commit time
    /// still counts.
    received: Vec<(usize, Instant)>,
}

/// Counters shared by every reader of a run, for the waits.
#[derive(Default)]
struct Live {
    /// Deliveries received (duplicates included).
    delivered: AtomicUsize,
    /// Subscriptions the server ended (`error` or `complete`).
    ended: AtomicUsize,
    /// Connections closed by the server or lost.
    closed: AtomicUsize,
    /// Error messages printed so far (the first few are).
    printed: AtomicUsize,
    /// Set when the run winds down: closures are no longer news.
    stopping: AtomicBool,
    /// The first few reasons subscriptions were ended, for the report.
    reasons: Mutex<Vec<String>>,
}

impl Live {
    fn note(&self, what: String) {
        if self.stopping.load(Ordering::Relaxed) {
            return;
        }
        let n = self.printed.fetch_add(1, Ordering::Relaxed);
        if n < 5 {
            eprintln!("{what}");
        } else if n == 5 {
            eprintln!("(further errors and closures counted, not printed)");
        }
        let mut reasons = self.reasons.lock().unwrap();
        if reasons.len() < 5 {
            reasons.push(what);
        }
    }
}

/// The reader tasks of a run; dropping this aborts them (also on errors).
struct Readers(Vec<(tokio::task::JoinHandle<()>, Arc<Mutex<Seen>>)>);

impl Drop for Readers {
    fn drop(&mut self) {
        for (task, _) in &self.0 {
            task.abort();
        }
    }
}

/// A graphql-transport-ws frame, parsed without building a `Value`.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    payload: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct NextPayload<'a> {
    #[serde(default, borrow)]
    data: Option<Data<'a>>,
    #[serde(default, borrow)]
    errors: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Data<'a> {
    #[serde(default, borrow)]
    changes: Option<Change<'a>>,
    #[serde(default, borrow)]
    notifications: Option<Change<'a>>,
}

#[derive(Deserialize)]
struct Change<'a> {
    #[serde(default, borrow)]
    row: Option<Row<'a>>,
}

#[derive(Deserialize)]
struct Row<'a> {
    #[serde(default, borrow)]
    title: Option<Cow<'a, str>>,
}

/// The seq of a `next` frame's row (its title is `e<seq>`), or the errors it
/// carries.
fn next_seq(payload: &RawValue) -> Result<Option<usize>, String> {
    let Ok(p) = serde_json::from_str::<NextPayload>(payload.get()) else {
        return Ok(None);
    };
    if let Some(errors) = p.errors {
        return Err(errors.get().to_owned());
    }
    let Some(data) = p.data else { return Ok(None) };
    let title = data
        .changes
        .and_then(|c| c.row)
        .or_else(|| data.notifications.and_then(|c| c.row))
        .and_then(|r| r.title);
    Ok(title.and_then(|t| t.strip_prefix('e').and_then(|s| s.parse().ok())))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let load_at_start = load_average();
    let most_connections = if args.mode == "targets" {
        TARGETS.iter().map(|t| t.connections).max().unwrap_or(0)
    } else {
        args.connections
    };
    // One descriptor per WebSocket here and in the server (which raises its
    // own limit the same way): -c 10000 needs more than the usual 1024.
    match pgherald::fdlimit::raise() {
        Ok((Some(soft), hard)) if soft < most_connections as u64 + 256 => anyhow::bail!(
            "open-file limit {soft} (hard {hard:?}) is too low for {most_connections} connections: raise the hard limit (ulimit -Hn)"
        ),
        Ok(_) => {}
        Err(e) => eprintln!("open-file limit not raised: {e}"),
    }
    for kv in &args.server_env {
        anyhow::ensure!(
            kv.split_once('=').is_some_and(|(k, _)| !k.is_empty()),
            "--server-env {kv:?}: expected KEY=VALUE"
        );
    }
    let admin_base = std::env::var("HERALD_ADMIN_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .map_err(|_| anyhow::anyhow!("run via `make bench` (needs HERALD_ADMIN_DATABASE_URL)"))?;
    let mut results = Vec::new();
    let mut verdicts = Vec::new();
    match args.mode.as_str() {
        "targets" => {
            for t in TARGETS {
                if !args.only.is_empty() && !args.only.iter().any(|o| o == t.id || o == t.group) {
                    continue;
                }
                let run_args = t.args(&args);
                eprintln!("== target {}: {}", t.id, t.workload());
                let t0 = Instant::now();
                let outcome = run(&run_args, t.mode, &admin_base).await;
                eprintln!("   ({:.0} s)", t0.elapsed().as_secs_f64());
                let verdict = match &outcome {
                    Ok(r) => t.evaluate(r),
                    Err(e) => t.failed(&format!("{e:#}")),
                };
                if let Ok(mut r) = outcome {
                    r["target"] = json!(t.id);
                    results.push(r);
                }
                verdicts.push(verdict);
            }
        }
        "all" | "both" => {
            for mode in ["fanout", "targeted", "rls"] {
                results.push(run(&args, mode, &admin_base).await?);
            }
        }
        m @ ("fanout" | "targeted" | "rls" | "shared" | "bigtx") => {
            results.push(run(&args, m, &admin_base).await?);
        }
        other => anyhow::bail!("unknown mode {other}"),
    }
    print_table(&results);
    if !args.server_env.is_empty() {
        println!("\nserver environment added: {}", args.server_env.join(" "));
    }
    let elapsed = started.elapsed().as_secs_f64();
    if args.mode == "targets" {
        print_targets(&verdicts);
        println!(
            "\n{} of {} targets met; the run took {:.0} min {:.0} s. Figures are from this one machine: server, Postgres and this client share its {} CPUs (load average {} at the start, {} at the end).",
            verdicts.iter().filter(|v| v["met"] == true).count(),
            verdicts.len(),
            (elapsed / 60.0).floor(),
            elapsed % 60.0,
            cpus(),
            load_at_start,
            load_average(),
        );
    }
    std::fs::create_dir_all("bench-results")?;
    let path = format!(
        "bench-results/{}.json",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    );
    let machine = json!({
        "cpus": cpus(),
        "cpu_model": cpu_model(),
        "load_average": {"start": load_at_start, "end": load_average()},
    });
    let mut out = json!({
        "machine": machine,
        "args": format!("{args:?}"),
        "results": results,
        "seconds": elapsed,
    });
    if args.mode == "targets" {
        out["targets"] = json!(verdicts);
    }
    std::fs::write(&path, serde_json::to_string_pretty(&out)?)?;
    println!("\nwritten: {path}");
    Ok(())
}

/// The 1, 5 and 15 minute load averages, as /proc/loadavg has them.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default()
}

fn with_db(base: &str, db: &str, user: Option<&str>) -> String {
    use std::str::FromStr;
    let c = tokio_postgres::Config::from_str(base).expect("admin URL");
    let host = match &c.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    let mut url = format!("host={host} port={port} dbname={db}");
    // The login role's password, if any, comes from DATABASE_URL; the
    // owner's from the admin URL.
    let (user, password) = match user {
        Some(u) => (
            u.to_owned(),
            std::env::var("DATABASE_URL")
                .ok()
                .and_then(|d| tokio_postgres::Config::from_str(&d).ok())
                .and_then(|d| d.get_password().map(<[u8]>::to_vec)),
        ),
        None => (
            c.get_user().unwrap_or("postgres").to_owned(),
            c.get_password().map(<[u8]>::to_vec),
        ),
    };
    url.push_str(&format!(" user={user}"));
    if let Some(pw) = password {
        url.push_str(&format!(" password='{}'", String::from_utf8_lossy(&pw)));
    }
    url
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Samples the server's RSS every 50 ms until `stop` is set: (peak KiB,
/// samples as (ms since start, KiB)).
fn sample_rss(pid: u32, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<(u64, Vec<(u64, u64)>)> {
    tokio::spawn(async move {
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut peak = 0;
        let mut samples = Vec::new();
        loop {
            tick.tick().await;
            let kib = rss_kib(pid);
            peak = peak.max(kib);
            samples.push((start.elapsed().as_millis() as u64, kib));
            if stop.load(Ordering::Relaxed) {
                return (peak, samples);
            }
        }
    })
}

/// Reads one connection's frames until the connection ends (or the task is
/// aborted).
async fn read_frames<S>(mut ws: S, c: usize, subs: usize, seen: Arc<Mutex<Seen>>, live: Arc<Live>)
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    while let Some(msg) = ws.next().await {
        let msg = match msg {
            Ok(m) => m,
            Err(e) => {
                live.closed.fetch_add(1, Ordering::Relaxed);
                live.note(format!("connection {c} failed: {e}"));
                return;
            }
        };
        let text = match msg {
            Message::Text(text) => text,
            Message::Close(frame) => {
                live.closed.fetch_add(1, Ordering::Relaxed);
                live.note(format!("connection {c} closed: {frame:?}"));
                return;
            }
            _ => continue,
        };
        let now = Instant::now();
        let Ok(frame) = serde_json::from_str::<Frame>(text.as_str()) else {
            continue;
        };
        let sub: usize = frame
            .id
            .as_deref()
            .and_then(|i| i.parse().ok())
            .unwrap_or(0);
        match frame.kind.as_ref() {
            "next" => {
                let Some(payload) = frame.payload else {
                    continue;
                };
                match next_seq(payload) {
                    Ok(Some(seq)) => {
                        let mut s = seen.lock().unwrap();
                        *s.counts.entry((c * subs + sub, seq)).or_default() += 1;
                        s.received.push((seq, now));
                        drop(s);
                        live.delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(None) => {}
                    Err(errors) => {
                        live.note(format!("connection {c} subscription {sub}: {errors}"));
                    }
                }
            }
            "error" => {
                live.ended.fetch_add(1, Ordering::Relaxed);
                live.note(format!(
                    "connection {c} subscription {sub} error: {}",
                    frame.payload.map(RawValue::get).unwrap_or("")
                ));
            }
            "complete" => {
                live.ended.fetch_add(1, Ordering::Relaxed);
                live.note(format!(
                    "connection {c} subscription {sub} completed by the server"
                ));
            }
            _ => {}
        }
    }
    live.closed.fetch_add(1, Ordering::Relaxed);
    live.note(format!("connection {c} ended"));
}

/// One `/metrics` value (0 if absent).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn run(args: &Args, mode: &str, admin_base: &str) -> anyhow::Result<Value> {
    // A fresh database.
    let maintenance = connect(&with_db(admin_base, "postgres", None)).await?;
    // Two statements: DROP DATABASE cannot run in the implicit transaction
    // of a multi-statement query.
    maintenance
        .batch_execute("drop database if exists pgherald_bench with (force)")
        .await?;
    maintenance
        .batch_execute("create database pgherald_bench")
        .await?;
    let admin_url = with_db(admin_base, "pgherald_bench", None);
    let app_url = with_db(admin_base, "pgherald_bench", Some("herald_authenticator"));
    pgherald::db::migrate::run(&admin_url, None, None, true).await?;
    let admin = connect(&admin_url).await?;
    let tenant: String = admin
        .query_one(
            "insert into tenants (name) values ('bench') returning id::text",
            &[],
        )
        .await?
        .get(0);
    let n_users = match (args.users, mode) {
        (Some(u), _) => u.max(1),
        (None, "shared") => 5,
        (None, _) => args.connections.max(1),
    };
    let users: Vec<String> = admin
        .query(
            "with u as (insert into users (email) select 'u' || g || '@bench.test' from generate_series(1, $1::int) g returning id)
             insert into memberships (tenant_id, user_id) select $2::text::uuid, id from u returning user_id::text",
            &[&(n_users as i32), &tenant],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();

    // The server.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.port()
    };
    let mut command = tokio::process::Command::new(&args.server);
    command
        .arg("serve")
        .env("DATABASE_URL", &app_url)
        .env("HERALD_LISTEN", format!("127.0.0.1:{port}"))
        .env("HERALD_JWT_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        // Every connection comes from 127.0.0.1, and in `shared` many come
        // from one user: no per-IP or per-subject cap, and room for all.
        .env("HERALD_MAX_CONNECTIONS_PER_IP", "0")
        .env("HERALD_MAX_CONNECTIONS_PER_SUBJECT", "0")
        .env(
            "HERALD_MAX_CONNECTIONS",
            args.connections.max(10_000).to_string(),
        )
        .kill_on_drop(true);
    for kv in &args.server_env {
        if let Some((k, v)) = kv.split_once('=') {
            command.env(k, v);
        }
    }
    let mut server = command
        .spawn()
        .map_err(|e| anyhow::anyhow!("{}: {e} (run `make build` first)", args.server))?;
    let pid = server.id().unwrap_or(0);
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "server not ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_idle = rss_kib(pid);

    // Subscribers: one token per user (a token minted in another second
    // would carry other claims, i.e. another security context).
    let live = Arc::new(Live::default());
    let verifier = pgherald::auth::Verifier::hs256(SECRET.as_bytes());
    let tokens = users
        .iter()
        .map(|u| verifier.mint(u, "app_user", Duration::from_secs(3600)))
        .collect::<Result<Vec<_>, _>>()?;
    let query = match mode {
        "fanout" | "shared" | "bigtx" => {
            "subscription { changes(table: \"documents\", ops: [INSERT]) { row } }"
        }
        "targeted" => {
            "subscription($me: JSON) { changes(table: \"notifications\", ops: [INSERT], filter: $me) { row } }"
        }
        _ => "subscription { notifications(ops: [INSERT]) { row { title } } }",
    };
    let url = format!("ws://127.0.0.1:{port}/graphql");
    // One connection at a time, as a steady trickle of clients would come:
    // opening them concurrently leaves the server's allocator with more
    // memory after the handshakes (measured: 16.5 to 18 instead of 15.3 KiB
    // per idle connection at 10,000), which is not a connection's cost.
    let mut readers = Readers(Vec::with_capacity(args.connections));
    for c in 0..args.connections {
        let user = &users[c % n_users];
        let token = &tokens[c % n_users];
        let mut req = url.as_str().into_client_request()?;
        req.headers_mut()
            .insert("sec-websocket-protocol", "graphql-transport-ws".parse()?);
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
        ws.send(Message::text(
            json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}})
                .to_string(),
        ))
        .await?;
        for s in 0..args.subs {
            ws.send(Message::text(
                json!({"type": "subscribe", "id": s.to_string(), "payload": {
                    "query": query,
                    "variables": {"me": {"user_id": {"eq": user}}},
                }})
                .to_string(),
            ))
            .await?;
        }
        let seen = Arc::new(Mutex::new(Seen::default()));
        let task = tokio::spawn(read_frames(ws, c, args.subs, seen.clone(), live.clone()));
        readers.0.push((task, seen));
    }
    let want = args.connections * args.subs;
    let deadline = Instant::now() + Duration::from_secs(60 + want as u64 / 100);
    loop {
        let text = http
            .get(format!("{base}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let n = metric(&text, "pgherald_subscriptions") as usize;
        if n >= want {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {n} of {want} subscriptions registered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rss_connected = rss_kib(pid);

    // Writers: E rows at R rows/s (0: at once), spread over W connections;
    // bigtx: E rows in one statement, so one transaction.
    let commits: Arc<Mutex<Vec<Option<Instant>>>> = Arc::new(Mutex::new(vec![None; args.events]));
    let sampling = Arc::new(AtomicBool::new(false));
    let sampler = sample_rss(pid, sampling.clone());
    let start = Instant::now();
    if mode == "bigtx" {
        if args.events > 0 {
            let client = connect(&admin_url).await?;
            client
                .execute(
                    "insert into documents (tenant_id, title)
                     select $1::text::uuid, 'e' || g from generate_series(0, $2::int - 1) g",
                    &[&tenant, &(args.events as i32)],
                )
                .await?;
            let now = Instant::now();
            commits
                .lock()
                .unwrap()
                .iter_mut()
                .for_each(|c| *c = Some(now));
        }
    } else {
        let writers_n = args.writers.max(1);
        let per_writer_interval =
            (args.rate > 0).then(|| Duration::from_secs_f64(writers_n as f64 / args.rate as f64));
        let mut writers = Vec::new();
        for w in 0..writers_n {
            let client = connect(&admin_url).await?;
            let commits = commits.clone();
            let (tenant, users) = (tenant.clone(), users.clone());
            let (events, tenant_wide) = (args.events, !matches!(mode, "targeted" | "rls"));
            writers.push(tokio::spawn(async move {
                let mut tick = per_writer_interval.map(tokio::time::interval);
                let mut seq = w;
                while seq < events {
                    if let Some(t) = tick.as_mut() {
                        t.tick().await;
                    }
                    let title = format!("e{seq}");
                    let r = if tenant_wide {
                        client
                            .execute("insert into documents (tenant_id, title) values ($1::text::uuid, $2)", &[&tenant, &title])
                            .await
                    } else {
                        let user = &users[seq % users.len()];
                        client
                            .execute(
                                "insert into notifications (tenant_id, user_id, title) values ($1::text::uuid, $2::text::uuid, $3)",
                                &[&tenant, user, &title],
                            )
                            .await
                    };
                    r.expect("insert");
                    commits.lock().unwrap()[seq] = Some(Instant::now());
                    seq += writers_n;
                }
            }));
        }
        for w in writers {
            w.await?;
        }
    }
    let write_secs = start.elapsed().as_secs_f64();
    let expected: usize = match mode {
        "targeted" | "rls" => {
            // Each row is one user's: it reaches that user's connections.
            let mut conns_of = vec![0usize; n_users];
            for c in 0..args.connections {
                conns_of[c % n_users] += 1;
            }
            (0..args.events)
                .map(|seq| conns_of[seq % n_users] * args.subs)
                .sum()
        }
        _ => args.events * args.connections * args.subs,
    };
    // Wait for the stragglers: until everything arrived, every subscription
    // was ended, no progress for a while, or --max-wait.
    let stall = Duration::from_secs(if mode == "bigtx" { 30 } else { 10 });
    let cap = (args.max_wait > 0).then(|| Duration::from_secs(args.max_wait));
    let drain_start = Instant::now();
    let mut last_total = 0;
    let mut last_progress = Instant::now();
    let mut gave_up = None;
    loop {
        let total = live.delivered.load(Ordering::Relaxed);
        if total >= expected || (want > 0 && live.ended.load(Ordering::Relaxed) >= want) {
            break;
        }
        if last_progress.elapsed() > stall {
            gave_up = Some(format!("no delivery for {} s", stall.as_secs()));
            break;
        }
        if cap.is_some_and(|c| drain_start.elapsed() > c) {
            gave_up = Some(format!(
                "still missing after --max-wait {} s",
                args.max_wait
            ));
            break;
        }
        if total != last_total {
            last_total = total;
            last_progress = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sampling.store(true, Ordering::Relaxed);
    let (rss_peak, rss_samples) = sampler.await?;
    let rss_after = rss_kib(pid);
    let metrics_text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let stages = stage_means_ms(&metrics_text);
    let slow_consumers = metric(&metrics_text, "pgherald_slow_consumers_total") as u64;
    let context_failed =
        metric(&metrics_text, "pgherald_context_failed_subscriptions_total") as u64;
    let server_deliveries = metric(&metrics_text, "pgherald_deliveries_total") as u64;
    live.stopping.store(true, Ordering::Relaxed);
    let tasks: Vec<_> = std::mem::take(&mut readers.0);
    let mut seens = Vec::with_capacity(tasks.len());
    for (task, seen) in tasks {
        task.abort();
        let _ = task.await;
        seens.push(seen);
    }
    let _ = server.kill().await;

    let mut distinct = 0;
    let mut delivered: u64 = 0;
    let mut lat: Vec<u64> = Vec::new();
    let (mut first, mut last): (Option<Instant>, Option<Instant>) = (None, None);
    let commits = commits.lock().unwrap();
    for seen in &seens {
        let s = seen.lock().unwrap();
        distinct += s.counts.len();
        delivered += s.counts.values().map(|&n| u64::from(n)).sum::<u64>();
        for &(seq, at) in &s.received {
            first = Some(first.map_or(at, |f| f.min(at)));
            last = Some(last.map_or(at, |l| l.max(at)));
            // Commit time: when the writer's INSERT returned (the commit is known).
            if let Some(Some(committed)) = commits.get(seq) {
                lat.push(at.saturating_duration_since(*committed).as_micros() as u64);
            }
        }
    }
    let duplicated = delivered as usize - distinct;
    let lost = expected.saturating_sub(distinct);
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let span = match (first, last) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64().max(write_secs.min(1e-3)),
        _ => 0.0,
    };
    let last_commit = commits.iter().flatten().max().copied();
    let complete_after = match (last, last_commit) {
        (Some(l), Some(c)) => l.saturating_duration_since(c).as_secs_f64(),
        _ => 0.0,
    };
    let ended = live.ended.load(Ordering::Relaxed);
    let mut r = json!({
        "mode": mode,
        "connections": args.connections,
        "subs_per_connection": args.subs,
        "users": n_users,
        "rows": args.events,
        "rate_rows_per_s": if mode == "bigtx" { 0 } else { args.rate },
        "expected": expected,
        "delivered": distinct,
        "lost": lost,
        "duplicated": duplicated,
        "latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": lat.last().copied().unwrap_or(0) as f64 / 1000.0},
        "deliveries_per_s": if span > 0.0 { delivered as f64 / span } else { 0.0 },
        "write_seconds": write_secs,
        "write_rows_per_s": if write_secs > 0.0 { args.events as f64 / write_secs } else { 0.0 },
        "last_delivery_after_last_commit_s": complete_after,
        "rss_kib": {"idle": rss_idle, "connected": rss_connected, "peak": rss_peak, "after": rss_after},
        "rss_kib_per_connection": (rss_connected.saturating_sub(rss_idle)) as f64 / args.connections.max(1) as f64,
        "rss_peak_growth_kib": rss_peak.saturating_sub(rss_connected),
        "slow_consumers": slow_consumers,
        "context_failed_subscriptions": context_failed,
        "subscriptions_ended": ended,
        "connections_closed": live.closed.load(Ordering::Relaxed),
        "end_reasons": *live.reasons.lock().unwrap(),
        "wait_ended": gave_up,
        "server_deliveries_total": server_deliveries,
        "server_env": args.server_env,
        "stage_mean_ms": stages,
    });
    if mode == "bigtx" {
        r["rss_samples_ms_kib"] = json!(rss_samples);
    }
    Ok(r)
}

/// Mean time per pipeline stage (ms), from the server's `/metrics` histograms.
fn stage_means_ms(text: &str) -> Value {
    let mut means = serde_json::Map::new();
    for stage in STAGES {
        let sum = metric(text, &format!("pgherald_stage_{stage}_seconds_sum"));
        let count = metric(text, &format!("pgherald_stage_{stage}_seconds_count"));
        let mean = if count > 0.0 {
            sum / count * 1000.0
        } else {
            0.0
        };
        means.insert(stage.to_owned(), json!({"mean": mean, "count": count}));
    }
    Value::Object(means)
}

fn print_table(results: &[Value]) {
    println!(
        "{:<9} {:>5} {:>4} {:>6} {:>6} {:>9} {:>9} {:>5} {:>5} {:>8} {:>8} {:>8} {:>11} {:>9}",
        "mode",
        "conns",
        "subs",
        "rows",
        "rate",
        "expected",
        "delivered",
        "lost",
        "dup",
        "p50 ms",
        "p99 ms",
        "max ms",
        "deliv/s",
        "KiB/conn"
    );
    for r in results {
        println!(
            "{:<9} {:>5} {:>4} {:>6} {:>6} {:>9} {:>9} {:>5} {:>5} {:>8.1} {:>8.1} {:>8.1} {:>11.0} {:>9.1}",
            r["mode"].as_str().unwrap_or(""),
            n(&r["connections"]),
            n(&r["subs_per_connection"]),
            n(&r["rows"]),
            n(&r["rate_rows_per_s"]),
            n(&r["expected"]),
            n(&r["delivered"]),
            n(&r["lost"]),
            n(&r["duplicated"]),
            r["latency_ms"]["p50"].as_f64().unwrap_or(0.0),
            r["latency_ms"]["p99"].as_f64().unwrap_or(0.0),
            r["latency_ms"]["max"].as_f64().unwrap_or(0.0),
            r["deliveries_per_s"].as_f64().unwrap_or(0.0),
            r["rss_kib_per_connection"].as_f64().unwrap_or(0.0),
        );
    }
    println!("\nmean ms per stage (count), from /metrics:");
    for r in results {
        let stages: Vec<String> = STAGES
            .iter()
            .map(|s| {
                let st = &r["stage_mean_ms"][s];
                format!(
                    "{s} {:.3} ({})",
                    st["mean"].as_f64().unwrap_or(0.0),
                    st["count"].as_f64().unwrap_or(0.0)
                )
            })
            .collect();
        println!(
            "{:<9} {}",
            r["mode"].as_str().unwrap_or("?"),
            stages.join("  ")
        );
    }
    // What the table does not show: the shape of shared and bigtx runs,
    // server-ended subscriptions, incomplete waits.
    let notes: Vec<String> = results.iter().filter_map(note).collect();
    if !notes.is_empty() {
        println!("\nnotes:");
        for line in notes {
            println!("{line}");
        }
    }
}

fn note(r: &Value) -> Option<String> {
    let mode = r["mode"].as_str().unwrap_or("?");
    let mut parts = Vec::new();
    if mode == "shared" || n(&r["users"]) != n(&r["connections"]) {
        parts.push(format!(
            "{} connections x {} subscriptions over {} users ({} subscribers, {} security contexts)",
            n(&r["connections"]),
            n(&r["subs_per_connection"]),
            n(&r["users"]),
            n(&r["connections"]) * n(&r["subs_per_connection"]),
            n(&r["users"]).min(n(&r["connections"])),
        ));
    }
    if n(&r["rate_rows_per_s"]) == 0 && mode != "bigtx" {
        parts.push(format!(
            "{} rows written as a burst in {:.2} s",
            n(&r["rows"]),
            f(&r["write_seconds"])
        ));
    }
    if mode == "bigtx" {
        parts.push(format!(
            "{} rows in one transaction ({:.1} s to commit), last delivery {:.1} s after the commit; server RSS {:.1} MiB before, peak {:.1} MiB (+{:.1} MiB, sampled every 50 ms)",
            n(&r["rows"]),
            f(&r["write_seconds"]),
            f(&r["last_delivery_after_last_commit_s"]),
            n(&r["rss_kib"]["connected"]) as f64 / 1024.0,
            n(&r["rss_kib"]["peak"]) as f64 / 1024.0,
            n(&r["rss_peak_growth_kib"]) as f64 / 1024.0,
        ));
    }
    if n(&r["slow_consumers"]) > 0
        || n(&r["subscriptions_ended"]) > 0
        || n(&r["context_failed_subscriptions"]) > 0
        || mode == "bigtx"
    {
        parts.push(format!(
            "slow consumers ended by the server {} (pgherald_slow_consumers_total), context failures {}, subscriptions ended as seen by the client {}",
            n(&r["slow_consumers"]),
            n(&r["context_failed_subscriptions"]),
            n(&r["subscriptions_ended"]),
        ));
    }
    if let Some(why) = r["wait_ended"].as_str() {
        parts.push(format!("stopped waiting: {why}"));
    }
    (!parts.is_empty()).then(|| format!("{mode:<9} {}", parts.join("; ")))
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// A performance target: its workload and its thresholds.
struct Target {
    /// Row label, e.g. "1b".
    id: &'static str,
    /// The target's number, for --only.
    group: &'static str,
    mode: &'static str,
    connections: usize,
    subs: usize,
    users: Option<usize>,
    events: usize,
    /// Rows per second (0: a burst).
    rate: u64,
    /// Longest wait after the last write (s).
    max_wait: u64,
    check: Check,
}

enum Check {
    /// p50 and p99 at most these (ms).
    Latency { p50: f64, p99: f64 },
    /// Deliveries/s at least 95% of rate × subscribers, p99 at most this
    /// (ms) if given.
    KeepsUp { p99: Option<f64> },
    /// Deliveries/s at least this.
    Throughput { per_s: f64 },
    /// Server RSS per idle connection at most this (KiB).
    MemoryPerConnection { kib: f64 },
    /// Everything delivered, server RSS growth at most this (MiB).
    BigTransaction { mib: f64 },
}

/// The targets, with the parameters `--mode targets` runs them with: each
/// workload's rate and subscriber count as the target states it, and E
/// chosen for about 30 s of writes (the whole run takes a few minutes).
const TARGETS: &[Target] = &[
    Target {
        id: "1a",
        group: "1",
        mode: "targeted",
        connections: 1000,
        subs: 1,
        users: None,
        events: 6000,
        rate: 200,
        max_wait: 30,
        check: Check::Latency { p50: 1.0, p99: 3.0 },
    },
    Target {
        id: "1b",
        group: "1",
        mode: "rls",
        connections: 1000,
        subs: 1,
        users: None,
        events: 6000,
        rate: 200,
        max_wait: 30,
        check: Check::Latency { p50: 1.0, p99: 3.0 },
    },
    Target {
        id: "2",
        group: "2",
        mode: "fanout",
        connections: 100,
        subs: 1,
        users: None,
        events: 1500,
        rate: 50,
        max_wait: 30,
        check: Check::Latency {
            p50: 5.0,
            p99: 20.0,
        },
    },
    Target {
        id: "3",
        group: "3",
        mode: "fanout",
        connections: 1000,
        subs: 1,
        users: None,
        events: 1500,
        rate: 50,
        max_wait: 30,
        check: Check::KeepsUp { p99: Some(100.0) },
    },
    Target {
        id: "4",
        group: "4",
        mode: "fanout",
        connections: 5000,
        subs: 1,
        users: None,
        events: 300,
        rate: 10,
        max_wait: 30,
        check: Check::KeepsUp { p99: None },
    },
    Target {
        id: "5",
        group: "5",
        mode: "shared",
        connections: 1000,
        subs: 10,
        users: Some(5),
        events: 200,
        rate: 0,
        max_wait: 60,
        check: Check::Throughput { per_s: 150_000.0 },
    },
    Target {
        id: "6",
        group: "6",
        mode: "targeted",
        connections: 10_000,
        subs: 1,
        users: None,
        events: 0,
        rate: 200,
        max_wait: 0,
        check: Check::MemoryPerConnection { kib: 16.0 },
    },
    Target {
        id: "7",
        group: "7",
        mode: "bigtx",
        connections: 3,
        subs: 1,
        users: None,
        events: 100_000,
        rate: 0,
        max_wait: 120,
        check: Check::BigTransaction { mib: 64.0 },
    },
];

impl Target {
    fn args(&self, base: &Args) -> Args {
        Args {
            mode: self.mode.to_owned(),
            connections: self.connections,
            subs: self.subs,
            users: self.users,
            events: self.events,
            rate: self.rate,
            max_wait: self.max_wait,
            only: Vec::new(),
            ..base.clone()
        }
    }

    fn subscribers(&self) -> usize {
        self.connections * self.subs
    }

    fn workload(&self) -> String {
        let rows = match (self.mode, self.events, self.rate) {
            ("bigtx", e, _) => format!("{e} rows in one transaction"),
            (_, 0, _) => "idle, no rows".to_owned(),
            (_, e, 0) => format!("{e} rows as a burst"),
            (_, e, r) => format!("{e} rows at {r}/s"),
        };
        let who = match (self.mode, self.users) {
            (_, Some(u)) => format!(
                "{} conns x {} subs over {u} users",
                self.connections, self.subs
            ),
            ("targeted" | "rls", None) => format!("{} users", self.connections),
            ("bigtx", None) => format!("{} subscribers", self.connections),
            (_, None) => format!("{} contexts", self.connections),
        };
        format!("{} {who}, {rows}", self.mode)
    }

    fn threshold(&self) -> String {
        let clean = "none lost or dup";
        match self.check {
            Check::Latency { p50, p99 } => {
                format!("p50 <= {p50} ms, p99 <= {p99} ms, {clean}")
            }
            Check::KeepsUp { p99 } => {
                let need = 0.95 * self.rate as f64 * self.subscribers() as f64;
                let p99 = p99.map(|p| format!(", p99 <= {p} ms")).unwrap_or_default();
                format!(
                    "deliv/s >= {} (95% of {}/s x {}){p99}, {clean}",
                    thousands(need),
                    self.rate,
                    self.subscribers()
                )
            }
            Check::Throughput { per_s } => {
                format!("deliv/s >= {}, {clean}", thousands(per_s))
            }
            Check::MemoryPerConnection { kib } => format!(
                "<= {kib} KiB per idle connection, all {} subscribed",
                self.connections
            ),
            Check::BigTransaction { mib } => {
                format!("every row to every subscriber, RSS peak growth <= {mib} MiB, {clean}")
            }
        }
    }

    fn failed(&self, error: &str) -> Value {
        json!({
            "target": self.id,
            "workload": self.workload(),
            "measured": format!("run failed: {error}"),
            "threshold": self.threshold(),
            "met": false,
            "reasons": [error],
        })
    }

    fn evaluate(&self, r: &Value) -> Value {
        let (p50, p99) = (f(&r["latency_ms"]["p50"]), f(&r["latency_ms"]["p99"]));
        let per_s = f(&r["deliveries_per_s"]);
        let (lost, dup) = (n(&r["lost"]), n(&r["duplicated"]));
        let mut reasons: Vec<String> = Vec::new();
        if lost > 0 {
            let why = r["wait_ended"]
                .as_str()
                .map(|w| format!(" ({w})"))
                .unwrap_or_default();
            reasons.push(format!(
                "{lost} of {} not delivered{why}",
                n(&r["expected"])
            ));
        }
        if dup > 0 {
            reasons.push(format!("{dup} duplicated"));
        }
        let slow = n(&r["slow_consumers"]);
        if slow > 0 {
            reasons.push(format!("{slow} subscriptions ended as slow consumers"));
        }
        let failed_ctx = n(&r["context_failed_subscriptions"]);
        if failed_ctx > 0 {
            reasons.push(format!(
                "{failed_ctx} subscriptions ended by context failures"
            ));
        }
        let clean = format!("lost {lost}, dup {dup}");
        let measured = match self.check {
            Check::Latency {
                p50: max50,
                p99: max99,
            } => {
                if p50 > max50 {
                    reasons.push(format!("p50 {p50:.2} ms > {max50} ms"));
                }
                if p99 > max99 {
                    reasons.push(format!("p99 {p99:.2} ms > {max99} ms"));
                }
                format!("p50 {p50:.2} ms, p99 {p99:.2} ms, {clean}")
            }
            Check::KeepsUp { p99: max99 } => {
                let offered = self.rate as f64 * self.subscribers() as f64;
                if per_s < 0.95 * offered {
                    reasons.push(format!(
                        "{} deliv/s is {:.0}% of {}",
                        thousands(per_s),
                        per_s / offered * 100.0,
                        thousands(offered)
                    ));
                    let wrote = f(&r["write_rows_per_s"]);
                    if wrote < 0.95 * self.rate as f64 {
                        reasons.push(format!(
                            "the writers reached only {wrote:.1} rows/s of {}",
                            self.rate
                        ));
                    }
                }
                let mut m = format!(
                    "{} deliv/s ({:.0}% of {}), ",
                    thousands(per_s),
                    per_s / offered * 100.0,
                    thousands(offered)
                );
                if let Some(max99) = max99 {
                    if p99 > max99 {
                        reasons.push(format!("p99 {p99:.1} ms > {max99} ms"));
                    }
                }
                m.push_str(&format!("p50 {p50:.1} ms, p99 {p99:.1} ms, {clean}"));
                m
            }
            Check::Throughput { per_s: min } => {
                if per_s < min {
                    reasons.push(format!("{} deliv/s < {}", thousands(per_s), thousands(min)));
                }
                format!(
                    "{} deliv/s ({} conns x {} subs over {} users, {} rows as a burst), {clean}",
                    thousands(per_s),
                    self.connections,
                    self.subs,
                    n(&r["users"]),
                    self.events
                )
            }
            Check::MemoryPerConnection { kib } => {
                let per = f(&r["rss_kib_per_connection"]);
                if per > kib {
                    reasons.push(format!("{per:.1} KiB > {kib} KiB"));
                }
                format!(
                    "{per:.1} KiB/conn (RSS {:.1} -> {:.1} MiB over {} conns)",
                    n(&r["rss_kib"]["idle"]) as f64 / 1024.0,
                    n(&r["rss_kib"]["connected"]) as f64 / 1024.0,
                    self.connections
                )
            }
            Check::BigTransaction { mib } => {
                let growth = n(&r["rss_peak_growth_kib"]) as f64 / 1024.0;
                if growth > mib {
                    reasons.push(format!("RSS grew {growth:.1} MiB > {mib} MiB"));
                }
                format!(
                    "delivered {}/{} ({} subscribers), RSS +{growth:.1} MiB at peak, slow consumers {slow}, last delivery {:.1} s after commit, dup {dup}",
                    n(&r["delivered"]),
                    n(&r["expected"]),
                    self.subscribers(),
                    f(&r["last_delivery_after_last_commit_s"]),
                )
            }
        };
        json!({
            "target": self.id,
            "workload": self.workload(),
            "measured": measured,
            "threshold": self.threshold(),
            "met": reasons.is_empty(),
            "reasons": reasons,
        })
    }
}

/// 150000.0 → "150,000".
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn print_targets(verdicts: &[Value]) {
    let rows: Vec<[String; 4]> = verdicts
        .iter()
        .map(|v| {
            let result = if v["met"] == true {
                "met".to_owned()
            } else {
                let reasons: Vec<&str> = v["reasons"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                format!("NOT MET: {}", reasons.join("; "))
            };
            [
                format!(
                    "{} {}",
                    v["target"].as_str().unwrap_or("?"),
                    v["workload"].as_str().unwrap_or("")
                ),
                v["measured"].as_str().unwrap_or("").to_owned(),
                v["threshold"].as_str().unwrap_or("").to_owned(),
                result,
            ]
        })
        .collect();
    let header = ["target", "measured", "threshold", "result"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    println!("\nperformance targets:");
    let line = |cells: [&str; 4]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| {
                if i == 3 {
                    c.to_string()
                } else {
                    format!("{c}{}", " ".repeat(w - c.chars().count()))
                }
            })
            .collect();
        println!("{}", padded.join(" | "));
    };
    line(header);
    println!(
        "{}",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-|-")
    );
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3]]);
    }
}
