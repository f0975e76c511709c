//! `make bench`: a load benchmark of a real `pgherald serve` process.
//!
//! Opens C WebSocket connections with S subscriptions each, writes E rows at
//! R rows/s with plain SQL, and reports delivered / lost / duplicated,
//! latency from commit to receipt (p50, p99, max), deliveries per second and
//! server RSS per connection. Modes: `fanout` (every subscriber sees every
//! row: one tenant-wide document stream) and `targeted` (each row is one
//! user's notification). Prints a table and writes JSON to bench-results/.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_postgres::NoTls;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[derive(Parser, Debug, Clone)]
#[command(about = "pgherald load benchmark")]
struct Args {
    /// fanout (one tenant-wide stream), targeted (each user's own rows, by a
    /// filter), rls (each user on the whole table, RLS alone decides), or all.
    #[arg(long, default_value = "all")]
    mode: String,
    /// WebSocket connections (one user each).
    #[arg(long, short = 'c', default_value_t = 100)]
    connections: usize,
    /// Subscriptions per connection.
    #[arg(long, short = 's', default_value_t = 1)]
    subs: usize,
    /// Rows written.
    #[arg(long, short = 'e', default_value_t = 2000)]
    events: usize,
    /// Rows per second.
    #[arg(long, short = 'r', default_value_t = 500)]
    rate: u64,
    /// Concurrent writer connections.
    #[arg(long, default_value_t = 4)]
    writers: usize,
    /// Server binary.
    #[arg(long, default_value = "target/release/pgherald")]
    server: String,
    #[arg(long, hide = true)]
    bench: bool,
}

const SECRET: &str = "bench-secret";

#[derive(Default)]
struct Observed {
    /// (subscriber, seq) → times received.
    counts: HashMap<(usize, usize), u32>,
    /// (seq, when received) of every delivery; latencies are computed at the
    /// end, so a frame that arrives before its writer knows the commit time
    /// still counts.
    received: Vec<(usize, Instant)>,
    first: Option<Instant>,
    last: Option<Instant>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // One descriptor per WebSocket here and in the server (which raises its
    // own limit the same way): -c 10000 needs more than the usual 1024.
    match pgherald::fdlimit::raise() {
        Ok((Some(soft), hard)) if soft < args.connections as u64 + 256 => anyhow::bail!(
            "open-file limit {soft} (hard {hard:?}) is too low for {} connections: raise the hard limit (ulimit -Hn)",
            args.connections
        ),
        Ok(_) => {}
        Err(e) => eprintln!("open-file limit not raised: {e}"),
    }
    let admin_base = std::env::var("HERALD_ADMIN_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .map_err(|_| anyhow::anyhow!("run via `make bench` (needs HERALD_ADMIN_DATABASE_URL)"))?;
    let modes: Vec<&str> = match args.mode.as_str() {
        "all" | "both" => vec!["fanout", "targeted", "rls"],
        m @ ("fanout" | "targeted" | "rls") => vec![m],
        other => anyhow::bail!("unknown mode {other}"),
    };
    let mut results = Vec::new();
    for mode in modes {
        let r = run(&args, mode, &admin_base).await?;
        results.push(r);
    }
    print_table(&results);
    std::fs::create_dir_all("bench-results")?;
    let path = format!(
        "bench-results/{}.json",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    );
    let machine = json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": cpu_model(),
    });
    std::fs::write(
        &path,
        serde_json::to_string_pretty(
            &json!({"machine": machine, "args": format!("{args:?}"), "results": results}),
        )?,
    )?;
    println!("\nwritten: {path}");
    Ok(())
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
    let users: Vec<String> = admin
        .query(
            "with u as (insert into users (email) select 'u' || g || '@bench.test' from generate_series(1, $1::int) g returning id)
             insert into memberships (tenant_id, user_id) select $2::text::uuid, id from u returning user_id::text",
            &[&(args.connections as i32), &tenant],
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
    let mut server = tokio::process::Command::new(&args.server)
        .arg("serve")
        .env("DATABASE_URL", &app_url)
        .env("HERALD_LISTEN", format!("127.0.0.1:{port}"))
        .env("HERALD_JWT_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        // Every connection comes from 127.0.0.1: no per-IP cap, and room
        // for all of them.
        .env("HERALD_MAX_CONNECTIONS_PER_IP", "0")
        .env(
            "HERALD_MAX_CONNECTIONS",
            args.connections.max(10_000).to_string(),
        )
        .kill_on_drop(true)
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

    // Subscribers.
    let observed = Arc::new(Mutex::new(Observed::default()));
    let commits: Arc<Mutex<HashMap<usize, Instant>>> = Arc::new(Mutex::new(HashMap::new()));
    let verifier = pgherald::auth::Verifier::hs256(SECRET.as_bytes());
    let query = match mode {
        "fanout" => "subscription { changes(table: \"documents\", ops: [INSERT]) { row } }",
        "targeted" => {
            "subscription($me: JSON) { changes(table: \"notifications\", ops: [INSERT], filter: $me) { row } }"
        }
        _ => "subscription { notifications(ops: [INSERT]) { row { title } } }",
    };
    let mut readers = Vec::new();
    for (c, user) in users.iter().enumerate() {
        let token = verifier.mint(user, "app_user", Duration::from_secs(3600))?;
        let mut req = format!("ws://127.0.0.1:{port}/graphql").into_client_request()?;
        req.headers_mut()
            .insert("sec-websocket-protocol", "graphql-transport-ws".parse()?);
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await?;
        ws.send(Message::text(
            json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {token}")}}).to_string(),
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
        let observed = observed.clone();
        let subs = args.subs;
        readers.push(tokio::spawn(async move {
            while let Some(Ok(msg)) = ws.next().await {
                if let Message::Close(frame) = &msg {
                    eprintln!("connection {c} closed: {frame:?}");
                }
                let Message::Text(text) = msg else { continue };
                let now = Instant::now();
                let v: Value = match serde_json::from_str(&text) {
                    Ok(v) => v,
                    Err(_) => continue,
                };
                if v["type"] == "error" {
                    eprintln!("subscription error: {v}");
                }
                if v["type"] != "next" {
                    continue;
                }
                let data = &v["payload"]["data"];
                let title = data["changes"]["row"]["title"]
                    .as_str()
                    .or_else(|| data["notifications"]["row"]["title"].as_str());
                let Some(seq) = title
                    .and_then(|t| t.strip_prefix("e"))
                    .and_then(|t| t.parse::<usize>().ok())
                else {
                    continue;
                };
                let sub: usize = v["id"].as_str().and_then(|i| i.parse().ok()).unwrap_or(0);
                let mut o = observed.lock().unwrap();
                *o.counts.entry((c * subs + sub, seq)).or_default() += 1;
                o.received.push((seq, now));
                o.first.get_or_insert(now);
                o.last = Some(now);
            }
        }));
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
        let n: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("pgherald_subscriptions "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
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

    // Writers: E rows at R rows/s, spread over W connections.
    let start = Instant::now();
    let per_writer_interval = Duration::from_secs_f64(args.writers as f64 / args.rate as f64);
    let mut writers = Vec::new();
    for w in 0..args.writers {
        let client = connect(&admin_url).await?;
        let commits = commits.clone();
        let (tenant, users) = (tenant.clone(), users.clone());
        let (events, writers_n, mode) = (args.events, args.writers, mode.to_owned());
        writers.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(per_writer_interval);
            let mut seq = w;
            while seq < events {
                tick.tick().await;
                let title = format!("e{seq}");
                let r = if mode == "fanout" {
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
                commits.lock().unwrap().insert(seq, Instant::now());
                seq += writers_n;
            }
        }));
    }
    for w in writers {
        w.await?;
    }
    let write_secs = start.elapsed().as_secs_f64();
    let expected: usize = match mode {
        "fanout" => args.events * args.connections * args.subs,
        _ => args.events * args.subs,
    };
    // Wait for the stragglers: until everything arrived or 10 s without progress.
    let mut last_total = 0;
    let mut last_progress = Instant::now();
    loop {
        let total: u32 = observed.lock().unwrap().counts.values().sum();
        if total as usize >= expected || last_progress.elapsed() > Duration::from_secs(10) {
            break;
        }
        if total != last_total {
            last_total = total;
            last_progress = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rss_after = rss_kib(pid);
    let stages = stage_means_ms(&http, &base).await?;
    for r in readers {
        r.abort();
    }
    let _ = server.kill().await;

    let o = observed.lock().unwrap();
    let distinct = o.counts.len();
    let delivered: u32 = o.counts.values().sum();
    let duplicated = delivered as usize - distinct;
    let lost = expected.saturating_sub(distinct);
    // Commit time: when the writer's INSERT returned (the commit is known).
    let commits = commits.lock().unwrap();
    let mut lat: Vec<u64> = o
        .received
        .iter()
        .filter_map(|(seq, at)| {
            let committed = commits.get(seq)?;
            Some(at.saturating_duration_since(*committed).as_micros() as u64)
        })
        .collect();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let span = match (o.first, o.last) {
        (Some(a), Some(b)) => b.duration_since(a).as_secs_f64().max(write_secs.min(1e-3)),
        _ => 0.0,
    };
    Ok(json!({
        "mode": mode,
        "connections": args.connections,
        "subs_per_connection": args.subs,
        "rows": args.events,
        "rate_rows_per_s": args.rate,
        "expected": expected,
        "delivered": distinct,
        "lost": lost,
        "duplicated": duplicated,
        "latency_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": lat.last().copied().unwrap_or(0) as f64 / 1000.0},
        "deliveries_per_s": if span > 0.0 { delivered as f64 / span } else { 0.0 },
        "write_seconds": write_secs,
        "rss_kib": {"idle": rss_idle, "connected": rss_connected, "after": rss_after},
        "rss_kib_per_connection": (rss_connected.saturating_sub(rss_idle)) as f64 / args.connections as f64,
        "stage_mean_ms": stages,
    }))
}

/// Mean time per pipeline stage (ms), from the server's `/metrics` histograms.
async fn stage_means_ms(http: &reqwest::Client, base: &str) -> anyhow::Result<Value> {
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    let mut means = serde_json::Map::new();
    for stage in ["hold", "read", "authorize", "dispatch", "write"] {
        let sum = value(&format!("pgherald_stage_{stage}_seconds_sum "));
        let count = value(&format!("pgherald_stage_{stage}_seconds_count "));
        let mean = if count > 0.0 {
            sum / count * 1000.0
        } else {
            0.0
        };
        means.insert(stage.to_owned(), json!({"mean": mean, "count": count}));
    }
    Ok(Value::Object(means))
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
        let stages: Vec<String> = ["hold", "read", "authorize", "dispatch", "write"]
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
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}
