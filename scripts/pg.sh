#!/usr/bin/env bash
# Private PostgreSQL cluster for pgherald development and tests.
#
#   scripts/pg.sh start     initdb (once) and start the cluster; idempotent
#   scripts/pg.sh stop      fast shutdown if running; idempotent
#   scripts/pg.sh status    exit 0 if running, 1 otherwise
#   scripts/pg.sh env       print `export` lines for the connection URLs
#   scripts/pg.sh port      print the port the cluster is (or will be) on
#   scripts/pg.sh destroy   stop and delete .pg entirely
#
# Layout (PROJECT = repository root):
#   .pg/data                 data directory
#   .pg/run                  unix socket directory
#   .pg/log/postgres.log     server log
#   .pg/lock                 flock(1) lock serialising start/stop/destroy
#   .pg/port                 the port chosen when PGHERALD_PG_PORT is unset
#
# Environment:
#   PGHERALD_PG_PORT   TCP port on 127.0.0.1. Unset: 54329, or, when that is
#                      taken (another checkout's cluster, say), the next free
#                      port, said in one line and remembered in .pg/port.
#   PG_BINDIR          directory with initdb/pg_ctl/psql (default: pg_config --bindir)
#
# When run as root, initdb/pg_ctl are run as the `postgres` OS user
# (initdb and pg_ctl refuse to run as root).
set -euo pipefail

PROJECT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PGROOT="$PROJECT/.pg"
DATA="$PGROOT/data"
RUN="$PGROOT/run"
LOGDIR="$PGROOT/log"
LOG="$LOGDIR/postgres.log"
LOCK="$PGROOT/lock"
MARKER="$PGROOT/initialized"
PORT_FILE="$PGROOT/port"
if [ -n "${PGHERALD_PG_PORT:-}" ]; then
    PORT="$PGHERALD_PG_PORT"
    PORT_CHOSEN=1
else
    PORT="$(cat "$PORT_FILE" 2>/dev/null || true)"
    PORT="${PORT:-54329}"
    PORT_CHOSEN=0
fi
PGUSER_OS=postgres

die() { echo "pg.sh: $*" >&2; exit 1; }

case "$PORT" in
    ''|*[!0-9]*) die "PGHERALD_PG_PORT must be a number, got '$PORT'" ;;
esac

find_bindir() {
    if [ -n "${PG_BINDIR:-}" ]; then
        echo "$PG_BINDIR"; return
    fi
    if command -v pg_config >/dev/null 2>&1; then
        local d
        d="$(pg_config --bindir 2>/dev/null || true)"
        if [ -n "$d" ] && [ -x "$d/pg_ctl" ]; then
            echo "$d"; return
        fi
    fi
    # Debian layout fallback: newest /usr/lib/postgresql/*/bin
    local best
    best="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
    if [ -n "$best" ] && [ -x "$best/pg_ctl" ]; then
        echo "$best"; return
    fi
    if command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v pg_ctl)"; return
    fi
    die "cannot find PostgreSQL server binaries (set PG_BINDIR)"
}
BIN="$(find_bindir)"

if [ "$(id -u)" -eq 0 ]; then
    getent passwd "$PGUSER_OS" >/dev/null || die "running as root but OS user '$PGUSER_OS' does not exist"
    as_pg() { runuser -u "$PGUSER_OS" -- "$@"; }
else
    as_pg() { "$@"; }
fi

# Run a command with output captured; on failure show it (plus log tail) and die.
quiet() {
    local what="$1"; shift
    local out
    if ! out="$("$@" 2>&1)"; then
        echo "pg.sh: $what failed:" >&2
        printf '%s\n' "$out" >&2
        if [ -f "$LOG" ]; then
            echo "--- last lines of $LOG ---" >&2
            tail -n 20 "$LOG" >&2 || true
        fi
        exit 1
    fi
}

is_running() {
    [ -f "$DATA/PG_VERSION" ] || return 1
    as_pg "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1 || return 1
    # pg_ctl only checks that the PID in postmaster.pid is alive. After a
    # crash/reboot that PID may belong to an unrelated process: treat the
    # cluster as running only if the PID is actually a postgres process.
    local pid comm
    pid="$(head -n1 "$DATA/postmaster.pid" 2>/dev/null || true)"
    if [ -n "$pid" ] && comm="$(cat "/proc/$pid/comm" 2>/dev/null)"; then
        [ "$comm" = postgres ] || return 1
    fi
    return 0
}

# Port the running postmaster listens on (line 4 of postmaster.pid).
running_port() {
    sed -n 4p "$DATA/postmaster.pid" 2>/dev/null || true
}

# Whether something accepts connections on 127.0.0.1:$1.
port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Makes sure $PORT is free before a start: a taken PGHERALD_PG_PORT is an
# error; a taken default moves to the next free port, remembered in .pg/port.
claim_port() {
    port_in_use "$PORT" || { remember_port; return; }
    if [ "$PORT_CHOSEN" -eq 1 ]; then
        die "port $PORT (PGHERALD_PG_PORT) is taken, by another checkout's cluster perhaps; choose another, e.g. PGHERALD_PG_PORT=$((PORT + 1))"
    fi
    local taken="$PORT" candidate
    for candidate in $(seq $((PORT + 1)) $((PORT + 200))); do
        if ! port_in_use "$candidate"; then
            PORT="$candidate"
            remember_port
            echo "pg: port $taken is taken (another checkout's cluster?); using $PORT (remembered in .pg/port; PGHERALD_PG_PORT chooses)" >&2
            return
        fi
    done
    die "ports $taken to $((taken + 200)) are all taken; choose one with PGHERALD_PG_PORT"
}

remember_port() {
    [ "$PORT_CHOSEN" -eq 1 ] && return
    echo "$PORT" >"$PORT_FILE"
}

take_lock() {
    mkdir -p "$PGROOT"
    exec 9>"$LOCK"
    flock 9
}

make_dirs() {
    mkdir -p "$PGROOT" "$DATA" "$RUN" "$LOGDIR"
    if [ "$(id -u)" -eq 0 ]; then
        chown "$PGUSER_OS:" "$DATA" "$RUN" "$LOGDIR"
    fi
    chmod 700 "$DATA"
}

write_conf() {
    # Settings owned by this script; rewritten on every start so a changed
    # PGHERALD_PG_PORT takes effect. Included from postgresql.conf.
    local tmp="$DATA/pgherald.conf.tmp"
    local sockdir="${RUN//\'/\'\'}"
    cat >"$tmp" <<EOF
# Written by scripts/pg.sh -- changes are overwritten on start.
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$sockdir'
max_connections = 300
shared_buffers = 128MB
log_min_messages = warning
EOF
    if [ "$(id -u)" -eq 0 ]; then
        chown "$PGUSER_OS:" "$tmp"
    fi
    chmod 600 "$tmp"
    mv -f "$tmp" "$DATA/pgherald.conf"
}

init_cluster() {
    if [ -f "$MARKER" ] && [ -f "$DATA/PG_VERSION" ]; then
        return
    fi
    # Missing marker: either never initialised or a previous initdb was
    # interrupted. The directory is private to this script, so start over.
    rm -rf "$DATA" "$MARKER"
    make_dirs
    local locale=C
    if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then
        locale=C.UTF-8
    fi
    quiet initdb as_pg "$BIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale="$locale"
    printf "\n# pgherald: local settings managed by scripts/pg.sh\ninclude_if_exists = 'pgherald.conf'\n" \
        >>"$DATA/postgresql.conf"
    touch "$MARKER"
}

psql_admin() {
    "$BIN/psql" -X -v ON_ERROR_STOP=1 -q -h 127.0.0.1 -p "$PORT" -U postgres -d postgres "$@"
}

ensure_database() {
    local exists
    exists="$(psql_admin -tAc "select 1 from pg_database where datname = 'pgherald'")" \
        || die "cannot connect to 127.0.0.1:$PORT as postgres"
    if [ "$exists" != "1" ]; then
        quiet "create database pgherald" psql_admin -c 'create database pgherald'
    fi
}

pg_start_server() {
    # The postmaster must not inherit any descriptor beyond stdio: in
    # particular not the flock fd 9 (it would hold .pg/lock for its whole
    # lifetime), nor pipes of whoever ran us (a caller reading our output to
    # EOF would hang). pg_ctl itself redirects stdio to /dev/null and the log.
    (
        local fd
        for fd in /proc/$BASHPID/fd/*; do
            fd="${fd##*/}"
            if [ "$fd" -gt 2 ] 2>/dev/null; then
                eval "exec $fd>&-" 2>/dev/null || true
            fi
        done
        exec 0</dev/null
        as_pg "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start
    )
}

cmd_start() {
    take_lock
    make_dirs
    init_cluster
    if is_running; then
        local rp
        rp="$(running_port)"
        if [ -n "$rp" ] && [ "$rp" != "$PORT" ]; then
            [ "$PORT_CHOSEN" -eq 1 ] \
                && die "cluster already running on port $rp, not $PORT (run: scripts/pg.sh stop)"
            PORT="$rp"
            remember_port
        fi
        ensure_database
        echo "pg: already running on 127.0.0.1:$PORT (data $DATA)" >&2
        return
    fi
    claim_port
    write_conf
    local out tries=0
    # A port found free can be taken before the server binds it; unless
    # PGHERALD_PG_PORT named it, move on to the next free one.
    while ! out="$(pg_start_server 2>&1)" && [ "$PORT_CHOSEN" -eq 0 ] && [ "$tries" -lt 3 ] &&
        tail -n 5 "$LOG" 2>/dev/null | grep -q "Address already in use"; do
        tries=$((tries + 1))
        PORT=$((PORT + 1))
        claim_port
        write_conf
        echo "pg: that port was taken meanwhile; trying $PORT" >&2
    done
    if [ -n "$out" ] && ! is_running; then
        # A stale postmaster.pid whose PID got reused by an unrelated process
        # can block startup; pg_ctl says "not running", so drop it and retry.
        if [ -f "$DATA/postmaster.pid" ] && ! is_running; then
            rm -f "$DATA/postmaster.pid"
            out="$(pg_start_server 2>&1)" || {
                echo "pg.sh: pg_ctl start failed:" >&2
                printf '%s\n' "$out" >&2
                echo "--- last lines of $LOG ---" >&2
                tail -n 20 "$LOG" >&2 || true
                exit 1
            }
        else
            echo "pg.sh: pg_ctl start failed:" >&2
            printf '%s\n' "$out" >&2
            echo "--- last lines of $LOG ---" >&2
            tail -n 20 "$LOG" >&2 || true
            exit 1
        fi
    fi
    ensure_database
    echo "pg: started on 127.0.0.1:$PORT (data $DATA, log $LOG)" >&2
}

cmd_stop() {
    [ -d "$PGROOT" ] || { echo "pg: not running" >&2; return; }
    take_lock
    if is_running; then
        quiet "pg_ctl stop" as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop
        echo "pg: stopped" >&2
    else
        echo "pg: not running" >&2
    fi
}

cmd_status() {
    if is_running; then
        echo "pg: running on 127.0.0.1:$(running_port) (data $DATA)" >&2
        return 0
    fi
    echo "pg: not running" >&2
    return 1
}

cmd_port() {
    if is_running && [ -n "$(running_port)" ]; then
        running_port
    else
        echo "$PORT"
    fi
}

cmd_env() {
    local PORT
    PORT="$(cmd_port)"
    echo "export PGHERALD_ADMIN_URL='postgres://postgres@127.0.0.1:$PORT/pgherald'"
    echo "export PGHERALD_APP_URL='postgres://herald_authenticator@127.0.0.1:$PORT/pgherald'"
}

cmd_destroy() {
    if [ -d "$PGROOT" ]; then
        take_lock
        if is_running; then
            quiet "pg_ctl stop" as_pg "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop
        fi
        rm -rf "$PGROOT"
    fi
    echo "pg: destroyed $PGROOT" >&2
}

usage() {
    echo "usage: $0 {start|stop|status|env|port|destroy}" >&2
    exit 2
}

[ $# -eq 1 ] || usage
case "$1" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    port) cmd_port ;;
    destroy) cmd_destroy ;;
    *) usage ;;
esac
