// `make bench-peers`: the workloads of benches/load.rs against PostGraphile 5
// (server.mjs), measured the same way, and printed beside pgherald's figures.
//
//   node load.mjs [options] WORKLOAD...
//     WORKLOAD            MODE:CONNECTIONS:ROWS:RATE, e.g. targeted:1000:2000:200
//                         MODE: targeted | fanout | rls (as in load.rs)
//     --subs N            subscriptions per connection (default 1)
//     --writers N         concurrent writer connections (default 4)
//     --pgherald FILE     a JSON file written by `make bench` (repeatable):
//                         its results go beside PostGraphile's
//     --pgherald-bin P    pgherald binary, for `migrate --demo` (default
//                         target/release/pgherald from the repository root)
//     --out FILE          JSON output (default benches/results/<date>-peers.json,
//                         or <date>-peers-node-client.json with --server pgherald)
//     --skip-postgraphile only print/write the given pgherald results
//     --server pgherald   cross-check: run this driver (the Node client)
//                         against pgherald instead of PostGraphile, with
//                         load.rs's subscriptions; printed and written as
//                         "pgherald (Node client)"
//
// Environment: HERALD_ADMIN_DATABASE_URL (owner; creates the database) and
// DATABASE_URL (login role the server connects as), as scripts/dbenv.sh
// exports them. Each workload gets a fresh database `pgherald_bench_peers`.
//
// What is measured, as in load.rs: C WebSocket connections (one demo user
// each, HS256 JWT, graphql-transport-ws), E rows written at R rows/s by W
// writer connections as the owner; commit time is taken when the writer's
// INSERT returns; latency is receipt minus commit time, computed at the end
// so frames that arrive before their commit time is known still count;
// delivered / lost / duplicated per (subscription, row); deliveries/s over
// the span from first to last receipt; server RSS per connection from
// /proc/<pid>/status (connected minus idle, over C).
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { createServer } from "node:net";
import { createClient } from "graphql-ws";
import jwt from "jsonwebtoken";
import pg from "pg";
import WebSocket from "ws";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, "../..");
const SECRET = "bench-secret";
const DB = "pgherald_bench_peers";

// ---------------------------------------------------------------- arguments

function parseArgs(argv) {
  const a = {
    subs: 1,
    writers: 4,
    pgherald: [],
    pgheraldBin: join(ROOT, process.env.CARGO_TARGET_DIR ?? "target", "release/pgherald"),
    out: null,
    skipPostgraphile: false,
    server: "postgraphile",
    workloads: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) throw new Error(`${arg} needs a value`);
      return argv[++i];
    };
    switch (arg) {
      case "--subs":
      case "-s":
        a.subs = Number(val());
        break;
      case "--writers":
        a.writers = Number(val());
        break;
      case "--pgherald":
        a.pgherald.push(val());
        break;
      case "--pgherald-bin":
        a.pgheraldBin = val();
        break;
      case "--out":
        a.out = val();
        break;
      case "--server":
        a.server = val();
        if (!["postgraphile", "pgherald"].includes(a.server)) throw new Error("--server: postgraphile or pgherald");
        break;
      case "--skip-postgraphile":
        a.skipPostgraphile = true;
        break;
      case "-h":
      case "--help":
        console.log(readFileSync(fileURLToPath(import.meta.url), "utf8").split("\n").slice(0, 20).join("\n"));
        process.exit(0);
        break;
      default: {
        const m = /^(targeted|fanout|rls):(\d+):(\d+):(\d+)$/.exec(arg);
        if (!m) throw new Error(`unknown argument ${arg} (workloads are MODE:CONNECTIONS:ROWS:RATE)`);
        a.workloads.push({ mode: m[1], connections: +m[2], rows: +m[3], rate: +m[4] });
      }
    }
  }
  if (!(a.subs >= 1) || !(a.writers >= 1)) throw new Error("--subs and --writers must be >= 1");
  return a;
}

// ---------------------------------------------------------------- helpers

function withDb(url, db, user) {
  const u = new URL(url);
  u.pathname = `/${db}`;
  if (user) u.username = user;
  return u.toString();
}

function rssKib(pid) {
  try {
    const line = readFileSync(`/proc/${pid}/status`, "utf8")
      .split("\n")
      .find((l) => l.startsWith("VmRSS:"));
    return Number(line.split(/\s+/)[1]) || 0;
  } catch {
    return 0;
  }
}

// The process's user + system CPU time in seconds (/proc/<pid>/stat fields
// 14 and 15, in clock ticks of 1/100 s on Linux).
function cpuSeconds(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.on("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

async function withClient(url, fn) {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

function cpuModel() {
  try {
    const l = readFileSync("/proc/cpuinfo", "utf8").split("\n").find((x) => x.startsWith("model name"));
    return l ? l.split(":")[1].trim() : "";
  } catch {
    return "";
  }
}

function pkgVersion(name) {
  try {
    return JSON.parse(readFileSync(join(HERE, "node_modules", name, "package.json"), "utf8")).version;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------- database

// Triggers for the peer, in the bench database only: one NOTIFY per row on
// the topic the mode's subscription listens to, payload {"id": <row id>}.
const TRIGGERS = {
  targeted: `
    create function postgraphile_bench.notify_notification() returns trigger
    language plpgsql as $$
    begin
      perform pg_notify('postgraphile:notif:' || new.user_id, json_build_object('id', new.id)::text);
      return null;
    end $$;
    create trigger postgraphile_bench_notify after insert on public.notifications
      for each row execute function postgraphile_bench.notify_notification();`,
  rls: `
    create function postgraphile_bench.notify_notification() returns trigger
    language plpgsql as $$
    begin
      perform pg_notify('postgraphile:notif', json_build_object('id', new.id)::text);
      return null;
    end $$;
    create trigger postgraphile_bench_notify after insert on public.notifications
      for each row execute function postgraphile_bench.notify_notification();`,
  fanout: `
    create function postgraphile_bench.notify_document() returns trigger
    language plpgsql as $$
    begin
      perform pg_notify('postgraphile:docs:' || new.tenant_id, json_build_object('id', new.id)::text);
      return null;
    end $$;
    create trigger postgraphile_bench_notify after insert on public.documents
      for each row execute function postgraphile_bench.notify_document();`,
};

async function prepareDatabase(adminBase, appBase, w, pgheraldBin, target) {
  await withClient(withDb(adminBase, "postgres"), async (c) => {
    await c.query(`drop database if exists ${DB} with (force)`);
    await c.query(`create database ${DB}`);
  });
  const adminUrl = withDb(adminBase, DB);
  const appUrl = withDb(appBase, DB);
  // The demo schema (tables, RLS policies, grants, roles) exactly as pgherald
  // installs it; then pgherald's capture triggers are dropped: the peer does
  // not read them, and they would add work to every INSERT.
  if (!existsSync(pgheraldBin)) throw new Error(`${pgheraldBin} missing (cargo build --release)`);
  execFileSync(pgheraldBin, ["migrate", "--demo"], {
    env: { ...process.env, HERALD_ADMIN_DATABASE_URL: adminUrl, DATABASE_URL: appUrl, RUST_LOG: "warn" },
    stdio: "pipe", // its output only if it fails (execFileSync throws with it)
  });
  const seeded = await withClient(adminUrl, async (c) => {
    if (target === "postgraphile") {
      await c.query("select herald.untrack(relid) from herald.tracked");
      await c.query("create schema postgraphile_bench");
      await c.query(TRIGGERS[w.mode]);
    }
    const tenant = (await c.query("insert into tenants (name) values ('bench') returning id::text")).rows[0].id;
    const users = (
      await c.query(
        `with u as (insert into users (email) select 'u' || g || '@bench.test' from generate_series(1, $1::int) g returning id)
         insert into memberships (tenant_id, user_id) select $2::text::uuid, id from u returning user_id::text as id`,
        [w.connections, tenant],
      )
    ).rows.map((r) => r.id);
    return { tenant, users };
  });
  return { adminUrl, appUrl, ...seeded };
}

// ---------------------------------------------------------------- server

async function startServer(appUrl, target, args, w) {
  const port = await freePort();
  const [cmd, argv, env] =
    target === "postgraphile"
      ? [
          process.execPath,
          [join(HERE, "server.mjs")],
          { DATABASE_URL: appUrl, PORT: String(port), JWT_SECRET: SECRET, NODE_ENV: "production", GRAPHILE_ENV: "production" },
        ]
      : [
          args.pgheraldBin,
          ["serve"],
          {
            // As load.rs starts it.
            DATABASE_URL: appUrl,
            HERALD_LISTEN: `127.0.0.1:${port}`,
            HERALD_JWT_SECRET: SECRET,
            RUST_LOG: "warn",
            HERALD_MAX_CONNECTIONS_PER_IP: "0",
            HERALD_MAX_CONNECTIONS: String(Math.max(w.connections, 10_000)),
          },
        ];
  const child = spawn(cmd, argv, { env: { ...process.env, ...env }, stdio: ["ignore", "inherit", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += d;
    // Only what matters: not the start-up chatter.
    for (const line of String(d).split("\n")) {
      if (line && !/GRAPHILE_ENV|listening on/.test(line)) process.stderr.write(`server: ${line}\n`);
    }
  });
  const exited = new Promise((res) => child.on("exit", (code, sig) => res({ code, sig })));
  const deadline = performance.now() + 60_000;
  for (;;) {
    try {
      const r =
        target === "postgraphile"
          ? await fetch(`http://127.0.0.1:${port}/graphql`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({ query: "{ __typename }" }),
            })
          : await fetch(`http://127.0.0.1:${port}/readyz`);
      if (r.ok) break;
    } catch {
      /* not up yet */
    }
    if (child.exitCode !== null) throw new Error(`server exited: ${stderr}`);
    if (performance.now() > deadline) throw new Error("server not ready");
    await sleep(100);
  }
  const stop = async () => {
    if (child.exitCode === null) {
      child.kill("SIGTERM");
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(t);
    }
  };
  return { port, pid: child.pid, stop };
}

// ---------------------------------------------------------------- one run

// As in load.rs, targeted and fanout ask for the whole row (pgherald's
// `row` is every column) and rls for the title only.
const QUERIES = {
  targeted: {
    query:
      "subscription($u: UUID!) { notificationCreated(userId: $u) { id notification { rowId tenantId userId kind title body data createdAt readAt } } }",
    field: "notificationCreated",
    row: "notification",
  },
  rls: {
    query: "subscription { anyNotificationCreated { id notification { title } } }",
    field: "anyNotificationCreated",
    row: "notification",
  },
  fanout: {
    query: "subscription($t: UUID!) { documentCreated(tenantId: $t) { id document { rowId tenantId title body updatedAt } } }",
    field: "documentCreated",
    row: "document",
  },
};

// load.rs's subscriptions, for --server pgherald.
const PGHERALD_QUERIES = {
  targeted: {
    query: 'subscription($me: JSON) { changes(table: "notifications", ops: [INSERT], filter: $me) { row } }',
    field: "changes",
    row: "row",
  },
  rls: { query: "subscription { notifications(ops: [INSERT]) { row { title } } }", field: "notifications", row: "row" },
  fanout: { query: 'subscription { changes(table: "documents", ops: [INSERT]) { row } }', field: "changes", row: "row" },
};

async function pgheraldSubscriptions(port) {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith("pgherald_subscriptions "));
  return line ? Number(line.split(" ")[1]) : 0;
}

async function run(args, w, adminBase, appBase) {
  const target = args.server;
  const { adminUrl, appUrl, tenant, users } = await prepareDatabase(adminBase, appBase, w, args.pgheraldBin, target);
  const server = await startServer(appUrl, target, args, w);
  const clients = [];
  const writerClients = [];
  let stopping = false; // connections closing now are not news
  try {
    const rssIdle = rssKib(server.pid);
    const q = (target === "postgraphile" ? QUERIES : PGHERALD_QUERIES)[w.mode];

    // Observations, as in load.rs.
    const counts = new Map(); // `${sub}:${seq}` -> times received
    const received = []; // [seq, t]
    let first = null;
    let last = null;
    let hidden = 0; // frames whose row RLS hid (rls mode: one per non-recipient)
    let errors = 0;
    const ready = new Set(); // subscriptions that have answered a probe
    let lastProbeAt = 0; // when the last probe answer arrived

    for (let c = 0; c < users.length; c++) {
      const user = users[c];
      const now = Math.floor(Date.now() / 1000);
      const token = jwt.sign({ sub: user, role: "app_user", iat: now, exp: now + 3600 }, SECRET, {
        algorithm: "HS256",
        noTimestamp: true,
      });
      const client = createClient({
        url: `ws://127.0.0.1:${server.port}/graphql`,
        webSocketImpl: WebSocket,
        connectionParams: { authorization: `Bearer ${token}` },
        lazy: false,
        retryAttempts: 0,
        shouldRetry: () => false,
        on: {
          closed: (e) => {
            if (!stopping) console.error(`connection ${c} closed: ${e?.code} ${e?.reason ?? ""}`);
          },
        },
      });
      clients.push(client);
      for (let s = 0; s < args.subs; s++) {
        const subId = c * args.subs + s;
        client.subscribe(
          { query: q.query, variables: target === "postgraphile" ? { u: user, t: tenant } : { me: { user_id: { eq: user } } } },
          {
            next(msg) {
              const now = performance.now();
              const ev = msg.data?.[q.field];
              if (msg.errors) {
                errors++;
                if (errors <= 5) console.error("subscription error:", JSON.stringify(msg.errors));
              }
              if (!ev) return;
              if (target === "postgraphile" && ev.id == null) {
                ready.add(subId); // a probe
                lastProbeAt = now;
                return;
              }
              const title = ev[q.row]?.title;
              if (title == null) {
                hidden++;
                return;
              }
              const seq = /^e(\d+)$/.exec(title)?.[1];
              if (seq == null) return;
              const key = `${subId}:${seq}`;
              counts.set(key, (counts.get(key) ?? 0) + 1);
              received.push([Number(seq), now]);
              first ??= now;
              last = now;
            },
            error(e) {
              errors++;
              if (errors <= 5) console.error("subscription error:", e?.message ?? JSON.stringify(e));
            },
            complete() {},
          },
        );
      }
    }

    // Readiness: PostGraphile has no subscription count to poll (load.rs
    // polls pgherald's /metrics). A subscription is live once its topic is
    // LISTENed, so probe the topics of subscriptions that have not answered
    // yet with an event without a row ({"id": null}) until all have.
    const want = users.length * args.subs;
    const topicOf = (c) =>
      w.mode === "targeted" ? `postgraphile:notif:${users[c]}` : w.mode === "rls" ? "postgraphile:notif" : `postgraphile:docs:${tenant}`;
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    writerClients.push(admin);
    const deadline = performance.now() + (60 + want / 100) * 1000;
    while (target === "pgherald") {
      // As load.rs: until /metrics counts every subscription.
      const n = await pgheraldSubscriptions(server.port);
      if (n >= want) break;
      if (performance.now() > deadline) throw new Error(`only ${n} of ${want} subscriptions registered`);
      await sleep(50);
    }
    // Each probe costs the server one read per subscriber of the topic, so a
    // new round is sent only once answers to the last one have stopped
    // coming (1 s of quiet), and the writes start only when the server has
    // answered every probe sent (1 s of quiet again): no probe backlog is
    // left for the measured rows to queue behind.
    const quiet = (ms) => performance.now() - lastProbeAt > ms;
    while (target === "postgraphile" && ready.size < want) {
      const topics = new Set();
      for (let c = 0; c < users.length; c++) {
        for (let s = 0; s < args.subs; s++) if (!ready.has(c * args.subs + s)) topics.add(topicOf(c));
      }
      await admin.query("select pg_notify(t, '{\"id\": null}') from unnest($1::text[]) t", [[...topics]]);
      const sent = performance.now();
      while (ready.size < want && (performance.now() - sent < 1000 || !quiet(1000))) await sleep(20);
      if (performance.now() > deadline) throw new Error(`only ${ready.size} of ${want} subscriptions answered a probe`);
    }
    while (target === "postgraphile" && !quiet(1000)) await sleep(20);
    const rssConnected = rssKib(server.pid);

    // Writers: E rows at R rows/s over W connections, writer i writing seq
    // i, i+W, ... on its own ticks (a late tick is caught up at once, like
    // tokio's interval in load.rs).
    const commits = new Map();
    const interval = (args.writers / w.rate) * 1000;
    for (let i = 0; i < args.writers; i++) {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      writerClients.push(c);
    }
    const start = performance.now();
    const cpuStart = cpuSeconds(server.pid);
    await Promise.all(
      writerClients.slice(1).map(async (client, wi) => {
        let k = 0;
        for (let seq = wi; seq < w.rows; seq += args.writers, k++) {
          const due = start + k * interval;
          const wait = due - performance.now();
          if (wait > 0) await sleep(wait);
          const title = `e${seq}`;
          if (w.mode === "fanout") {
            await client.query("insert into documents (tenant_id, title) values ($1::text::uuid, $2)", [tenant, title]);
          } else {
            await client.query(
              "insert into notifications (tenant_id, user_id, title) values ($1::text::uuid, $2::text::uuid, $3)",
              [tenant, users[seq % users.length], title],
            );
          }
          commits.set(seq, performance.now());
        }
      }),
    );
    const writeSecs = (performance.now() - start) / 1000;
    const expected = w.mode === "fanout" ? w.rows * want : w.rows * args.subs;

    // Stragglers: until everything arrived or 10 s without progress.
    let lastTotal = -1;
    let lastProgress = performance.now();
    for (;;) {
      const total = received.length;
      if (total >= expected || performance.now() - lastProgress > 10_000) break;
      if (total !== lastTotal) {
        lastTotal = total;
        lastProgress = performance.now();
      }
      await sleep(20);
    }
    const rssAfter = rssKib(server.pid);
    const serverCpu = cpuSeconds(server.pid) - cpuStart;
    stopping = true;

    const distinct = counts.size;
    const delivered = received.length;
    const lat = received
      .filter(([seq]) => commits.has(seq))
      .map(([seq, at]) => Math.max(0, at - commits.get(seq)))
      .sort((x, y) => x - y);
    const pct = (p) => (lat.length ? lat[Math.floor((lat.length - 1) * p)] : 0);
    const span = first != null ? Math.max((last - first) / 1000, Math.min(writeSecs, 1e-3)) : 0;
    const round3 = (x) => Math.round(x * 1000) / 1000;
    return {
      server: target === "postgraphile" ? "postgraphile" : "pgherald (Node client)",
      mode: w.mode,
      connections: w.connections,
      subs_per_connection: args.subs,
      rows: w.rows,
      rate_rows_per_s: w.rate,
      expected,
      delivered: distinct,
      lost: Math.max(0, expected - distinct),
      duplicated: delivered - distinct,
      latency_ms: { p50: round3(pct(0.5)), p99: round3(pct(0.99)), max: round3(lat.at(-1) ?? 0) },
      deliveries_per_s: span > 0 ? delivered / span : 0,
      write_seconds: writeSecs,
      rss_kib: { idle: rssIdle, connected: rssConnected, after: rssAfter },
      rss_kib_per_connection: Math.max(0, rssConnected - rssIdle) / w.connections,
      // Not in load.rs: CPU time of the server process from the first write
      // to the end of the wait for stragglers (Postgres's own is not in it).
      server_cpu_seconds: Math.round(serverCpu * 100) / 100,
      hidden_frames: hidden,
      errors,
    };
  } finally {
    stopping = true;
    for (const c of clients) {
      try {
        await c.dispose();
      } catch {
        /* closing anyway */
      }
    }
    for (const c of writerClients) await c.end().catch(() => {});
    await server.stop();
  }
}

// ---------------------------------------------------------------- output

const f1 = (x) => (typeof x === "number" ? x.toFixed(1) : "-");
const f0 = (x) => (typeof x === "number" ? x.toFixed(0) : "-");

function printTable(title, results) {
  console.log(`\n${title}`);
  const head = ["mode", "conns", "subs", "rows", "rate", "expected", "delivered", "lost", "dup", "p50 ms", "p99 ms", "max ms", "deliv/s", "KiB/conn"];
  const widths = [9, 5, 4, 6, 6, 9, 9, 5, 5, 8, 8, 8, 11, 9];
  const line = (cells) => cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i]))).join(" ");
  console.log(line(head));
  for (const r of results) {
    console.log(
      line([
        r.mode, r.connections, r.subs_per_connection, r.rows, r.rate_rows_per_s, r.expected, r.delivered, r.lost, r.duplicated,
        f1(r.latency_ms.p50), f1(r.latency_ms.p99), f1(r.latency_ms.max), f0(r.deliveries_per_s), f1(r.rss_kib_per_connection),
      ]),
    );
  }
}

const workloadName = (w) => `${w.mode} ${w.connections}c ${w.rows}@${w.rate}/s`;
const sameWorkload = (r, w) =>
  r.mode === w.mode && r.connections === w.connections && r.rows === w.rows && r.rate_rows_per_s === w.rate;

function fmtLatency(ms) {
  if (typeof ms !== "number") return "-";
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2);
}

function printSideBySide(workloads, ours, theirs, theirName) {
  console.log("\nside by side (latency in ms unless marked; lost/dup over expected deliveries):");
  const cols = ["p50", "p99", "deliv/s", "KiB/conn", "lost/dup"];
  const wname = Math.max(8, ...workloads.map((w) => workloadName(w).length));
  const cell = 9;
  const group = (name) => name.padEnd(cols.length * (cell + 1) - 1);
  console.log(`${"".padEnd(wname)} | ${group("pgherald")} | ${theirName}`);
  const sub = cols.map((c) => c.padStart(cell)).join(" ");
  console.log(`${"workload".padEnd(wname)} | ${sub} | ${sub}`);
  const cells = (r) =>
    r
      ? [fmtLatency(r.latency_ms.p50), fmtLatency(r.latency_ms.p99), f0(r.deliveries_per_s), f1(r.rss_kib_per_connection), `${r.lost}/${r.duplicated}`]
          .map((x) => x.padStart(cell))
          .join(" ")
      : cols.map(() => "n/a".padStart(cell)).join(" ");
  for (const w of workloads) {
    const a = ours.find((r) => sameWorkload(r, w));
    const b = theirs.find((r) => sameWorkload(r, w));
    console.log(`${workloadName(w).padEnd(wname)} | ${cells(a)} | ${cells(b)}`);
  }
}

// ---------------------------------------------------------------- main

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const adminBase = process.env.HERALD_ADMIN_DATABASE_URL ?? process.env.DATABASE_URL;
  const appBase = process.env.DATABASE_URL;
  if (!adminBase || !appBase) throw new Error("run via scripts/bench-peers.sh (needs DATABASE_URL and HERALD_ADMIN_DATABASE_URL)");
  // pgherald's JSON files, as written by `make bench`.
  const ours = [];
  const oursFiles = [];
  for (const f of args.pgherald) {
    const j = JSON.parse(readFileSync(f, "utf8"));
    ours.push(...j.results);
    oursFiles.push({ file: f, args: j.args });
  }
  let workloads = args.workloads;
  if (workloads.length === 0) {
    workloads = ours.map((r) => ({ mode: r.mode, connections: r.connections, rows: r.rows, rate: r.rate_rows_per_s }));
  }
  if (workloads.length === 0) throw new Error("no workload given (e.g. targeted:1000:2000:200 fanout:100:200:50)");

  const theirs = [];
  if (!args.skipPostgraphile) {
    for (const w of workloads) {
      console.error(`${args.server}: ${workloadName(w)} ...`);
      theirs.push(await run(args, w, adminBase, appBase));
    }
    printTable(args.server === "postgraphile" ? "PostGraphile 5 (benches/peers):" : "pgherald, Node client (load.mjs --server pgherald):", theirs);
  }
  if (ours.length) printTable("pgherald (make bench):", ours.filter((r) => workloads.some((w) => sameWorkload(r, w))));
  printSideBySide(workloads, ours, theirs, args.server === "postgraphile" ? "PostGraphile 5" : "pgherald (Node client)");

  const versions = {
    node: process.versions.node,
    postgraphile: pkgVersion("postgraphile"),
    grafast: pkgVersion("grafast"),
    grafserv: pkgVersion("grafserv"),
    "@dataplan/pg": pkgVersion("@dataplan/pg"),
    "graphql-ws": pkgVersion("graphql-ws"),
    pg: pkgVersion("pg"),
    postgres: await withClient(withDb(adminBase, "postgres"), async (c) => (await c.query("show server_version")).rows[0].server_version),
  };
  const date = new Date().toISOString().slice(0, 10);
  const suffix = args.server === "postgraphile" ? "peers" : "peers-node-client";
  const out = args.out ?? join(ROOT, "benches/results", `${date}-${suffix}.json`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(
    out,
    JSON.stringify(
      {
        machine: { cpus: availableParallelism(), cpu_model: cpuModel() },
        versions,
        args: { subs: args.subs, writers: args.writers, workloads },
        pgherald: { sources: oursFiles, results: ours },
        [args.server === "postgraphile" ? "postgraphile" : "pgherald_node_client"]: { results: theirs },
      },
      null,
      2,
    ) + "\n",
  );
  console.log(`\nwritten: ${out}`);
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e?.stack ?? e);
    process.exit(1);
  },
);
