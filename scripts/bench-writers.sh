#!/usr/bin/env bash
# `make bench-writers`: what capture costs the application's writers.
#
# pgbench (from `pg_config --bindir`), CLIENTS clients, synchronous_commit on
# (fsync must be on), single-row inserts into tables of the demo
# `notifications` shape (its columns, primary key and index; no foreign keys,
# whose checks would dilute the cost measured), in a fresh database
# `pgherald_writers` of the private cluster or of DATABASE_URL's server:
#
#   untracked   the table is not tracked
#   default     herald.track(t): the trigger writes the outbox and NOTIFYs
#   relay       herald.track(t, relay => true): the trigger only writes the
#               outbox; the pgherald instance is the relay and wakes listeners
#
# A release pgherald instance runs throughout (its listener reads every
# batch); during the relay run it must be the relay, and afterwards every
# row written must be in the outbox and read by the instance's listener
# (`pgherald_events_total`), or the script fails. The cases run ROUNDS times,
# interleaved, each table emptied and the cluster checkpointed before each
# run. Prints TPS and the share of untracked; writes JSON to
# benches/results/<date>-writers.json.
#
# Knobs (environment): CLIENTS (16), THREADS (2), DURATION (seconds per run,
# 15), ROUNDS (2), PROTOCOL (pgbench -M: simple, pgbench's default, or
# prepared), POLL (HERALD_RELAY_POLL_INTERVAL, 2ms), OUT (the JSON file).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
# shellcheck source=scripts/dbenv.sh
source "$ROOT/scripts/dbenv.sh"

CLIENTS="${CLIENTS:-16}"
THREADS="${THREADS:-2}"
DURATION="${DURATION:-15}"
ROUNDS="${ROUNDS:-2}"
PROTOCOL="${PROTOCOL:-simple}"
POLL="${POLL:-2ms}"
OUT="${OUT:-$ROOT/benches/results/$(date +%F)-writers.json}"
DB=pgherald_writers
BIN="$(pg_config --bindir)"
PGHERALD="${CARGO_TARGET_DIR:-$ROOT/target}/release/pgherald"

die() { echo "bench-writers: $*" >&2; exit 1; }

# The connection string $1 with database $2 (URL or key=value form).
with_db() {
    case "$1" in
        postgres://*|postgresql://*)
            echo "$1" | sed -E "s#^(postgres(ql)?://[^/?]*)(/[^?]*)?#\\1/$2#" ;;
        *) echo "$1 dbname=$2" ;;
    esac
}
ADMIN_URL="$(with_db "$HERALD_ADMIN_DATABASE_URL" "$DB")"
APP_URL="$(with_db "$DATABASE_URL" "$DB")"
sql() { PGOPTIONS="-c client_min_messages=warning" "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -tA "$ADMIN_URL" "$@"; }

cargo build --release --bin pgherald

"$BIN/psql" -X -q -v ON_ERROR_STOP=1 "$HERALD_ADMIN_DATABASE_URL" \
    -c "drop database if exists $DB with (force)" -c "create database $DB"
HERALD_ADMIN_DATABASE_URL="$ADMIN_URL" DATABASE_URL="$APP_URL" "$PGHERALD" migrate
[ "$(sql -c 'show fsync')" = on ] || die "fsync is off on this server: commit timings would mean nothing"

sql <<'SQL'
create table public.w_untracked (
  id         uuid primary key default gen_random_uuid(),
  tenant_id  uuid not null,
  user_id    uuid not null,
  kind       text not null default 'info',
  title      text not null,
  body       text,
  data       jsonb not null default '{}',
  created_at timestamptz not null default now(),
  read_at    timestamptz
);
create index on public.w_untracked (user_id, created_at desc);
create table public.w_default (like public.w_untracked including all);
create table public.w_relay (like public.w_untracked including all);
SQL

WORK="$(mktemp -d)"
SERVER_PID=
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# The instance, on a free port it reports in its log.
DATABASE_URL="$APP_URL" HERALD_LISTEN=127.0.0.1:0 HERALD_JWT_SECRET=bench-writers-secret \
    HERALD_RELAY_POLL_INTERVAL="$POLL" RUST_LOG=pgherald=info,warn NO_COLOR=1 \
    "$PGHERALD" serve >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
BASE=
for _ in $(seq 100); do
    BASE="$(sed 's/\x1b\[[0-9;]*m//g' "$WORK/server.log" | grep -o 'addr=[0-9.:]*' | head -n1 | cut -d= -f2 || true)"
    [ -n "$BASE" ] && curl -fs "http://$BASE/readyz" >/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; die "the server exited"; }
    sleep 0.1
done
curl -fs "http://$BASE/readyz" >/dev/null || { cat "$WORK/server.log" >&2; die "the server did not become ready"; }
metric() { curl -fs "http://$BASE/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }

# Starts a run of case $1 on table $2: empty table, its mode, a checkpoint.
prepare_run() {
    local case="$1" table="$2"
    sql -c "select herald.untrack('$table')" >/dev/null
    sql -c "truncate $table" >/dev/null
    case "$case" in
        default) sql -c "select herald.track('$table')" >/dev/null ;;
        relay) sql -c "select herald.track('$table', relay => true)" >/dev/null ;;
    esac
    sql -c checkpoint >/dev/null 2>&1 || true
}

# Runs pgbench on table $1; prints its TPS.
pgbench_run() {
    cat >"$WORK/insert.sql" <<EOF
\\set u random(1, 1000)
insert into public.$1 (tenant_id, user_id, kind, title, body)
values (md5((:u % 10)::text)::uuid, md5(:u::text)::uuid, 'info', 'Title ' || :u,
        'Something happened that user ' || :u || ' should know about');
EOF
    PGOPTIONS="-c synchronous_commit=on" "$BIN/pgbench" -n -c "$CLIENTS" -j "$THREADS" \
        -T "$DURATION" -M "$PROTOCOL" -f "$WORK/insert.sql" "$ADMIN_URL" 2>&1 \
        | tee "$WORK/pgbench.log" | awk '/^tps = / { print $3 }'
}

# Waits until the instance's listener has read `$1` events in all.
wait_for_read() {
    local want="$1" got
    for _ in $(seq 600); do
        got="$(metric pgherald_events_total)"
        [ "$got" -ge "$want" ] && return 0
        sleep 0.1
    done
    die "the listener read $got events, expected $want"
}

declare -A RUNS
RELAY_CHECKS="[]"
echo "bench-writers: $CLIENTS clients, ${DURATION}s per run, $ROUNDS rounds, -M $PROTOCOL, relay poll $POLL" >&2
for round in $(seq "$ROUNDS"); do
    for case in untracked default relay; do
        table="w_$case"
        prepare_run "$case" "$table"
        if [ "$case" = relay ]; then
            for _ in $(seq 100); do
                [ "$(metric pgherald_relay_active)" = 1 ] && [ "$(metric pgherald_relay_tables)" = 1 ] && break
                sleep 0.05
            done
            [ "$(metric pgherald_relay_active)" = 1 ] || die "the instance is not the relay"
        fi
        last_id="$(sql -c 'select coalesce(max(id), 0) from herald.events')"
        read_before="$(metric pgherald_events_total)"
        notifies_before="$(metric pgherald_relay_notifies_total)"
        polls_before="$(metric pgherald_relay_polls_total)"
        tps="$(pgbench_run "$table")"
        [ -n "$tps" ] || { cat "$WORK/pgbench.log" >&2; die "pgbench failed"; }
        RUNS[$case]="${RUNS[$case]:-} $tps"
        printf 'round %s  %-9s %8.0f tps\n' "$round" "$case" "$tps" >&2
        if [ "$case" != untracked ]; then
            rows="$(sql -c "select count(*) from public.$table")"
            outbox="$(sql -c "select count(*) from herald.events where id > $last_id and relid = 'public.$table'::regclass and op = 'INSERT'")"
            [ "$rows" = "$outbox" ] || die "$case: $rows rows written, $outbox in the outbox"
            wait_for_read $((read_before + outbox))
            read=$(( $(metric pgherald_events_total) - read_before ))
            if [ "$case" = relay ]; then
                notifies=$(( $(metric pgherald_relay_notifies_total) - notifies_before ))
                polls=$(( $(metric pgherald_relay_polls_total) - polls_before ))
                [ "$(metric pgherald_relay_active)" = 1 ] || die "the instance stopped being the relay"
                echo "           relay: $rows rows, all in the outbox and read; $notifies wake-ups in $polls polls" >&2
                RELAY_CHECKS="$(jq -c --argjson r "$rows" --argjson o "$outbox" --argjson d "$read" \
                    --argjson n "$notifies" --argjson p "$polls" \
                    '. + [{rows: $r, outbox: $o, read: $d, relay_notifies: $n, relay_polls: $p}]' <<<"$RELAY_CHECKS")"
            fi
        fi
        [ "$case" = untracked ] || sql -c "select herald.untrack('$table')" >/dev/null
    done
done

mean() { tr ' ' '\n' | awk 'NF { s += $1; n++ } END { printf "%.1f", s / n }'; }
U="$(mean <<<"${RUNS[untracked]}")"
D="$(mean <<<"${RUNS[default]}")"
R="$(mean <<<"${RUNS[relay]}")"
share() { awk -v x="$1" -v u="$U" 'BEGIN { printf "%.1f", 100 * x / u }'; }
printf '\n| case | TPS (mean of %s runs) | share of untracked |\n|---|---|---|\n' "$ROUNDS"
printf '| untracked | %.0f | 100%% |\n| tracked, default mode | %.0f | %s%% |\n| tracked, relay mode | %.0f | %s%% |\n' \
    "$U" "$D" "$(share "$D")" "$R" "$(share "$R")"

runs_json() { tr ' ' '\n' | awk 'NF' | jq -s -c 'map(tonumber)'; }
mkdir -p "$(dirname "$OUT")"
jq -n \
    --arg date "$(date -u +%FT%TZ)" \
    --arg command "make bench-writers (CLIENTS=$CLIENTS THREADS=$THREADS DURATION=$DURATION ROUNDS=$ROUNDS PROTOCOL=$PROTOCOL POLL=$POLL)" \
    --arg cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')" \
    --argjson cpus "$(nproc)" \
    --arg pg "$(sql -c 'show server_version')" \
    --arg fsync "$(sql -c 'show fsync')" \
    --arg wal_sync "$(sql -c 'show wal_sync_method')" \
    --argjson untracked "$(runs_json <<<"${RUNS[untracked]}")" \
    --argjson default "$(runs_json <<<"${RUNS[default]}")" \
    --argjson relay "$(runs_json <<<"${RUNS[relay]}")" \
    --argjson u "$U" --argjson d "$D" --argjson r "$R" \
    --argjson checks "$RELAY_CHECKS" \
    --argjson clients "$CLIENTS" --argjson duration "$DURATION" \
    '{date: $date, command: $command,
      machine: {cpu_model: $cpu, cpus: $cpus},
      postgres: {version: $pg, fsync: $fsync, synchronous_commit: "on", wal_sync_method: $wal_sync},
      workload: {clients: $clients, duration_s: $duration,
                 statement: "single-row insert into a table of the demo notifications shape (no foreign keys)"},
      results: {
        untracked: {tps: $u, runs: $untracked},
        default: {tps: $d, share_of_untracked: ($d / $u), runs: $default},
        relay: {tps: $r, share_of_untracked: ($r / $u), runs: $relay, checks: $checks}}}' >"$OUT"
echo "bench-writers: wrote $OUT" >&2
