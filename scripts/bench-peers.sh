#!/usr/bin/env bash
# `make bench-peers [ARGS='WORKLOAD...']`: the same workloads against pgherald
# (scripts/bench.sh, i.e. benches/load.rs) and then against PostGraphile 5
# (benches/peers), on the same machine and cluster, printed side by side.
#
#   WORKLOAD = MODE:CONNECTIONS:ROWS:RATE, MODE = targeted | fanout | rls
#   default:   targeted:1000:2000:200 fanout:100:200:50
#
# Environment:
#   PEERS_WORKLOADS   workloads when ARGS is empty
#   PEERS_ONLY        pgherald | postgraphile: run one side only
#   PEERS_WRITERS     writer connections (default 4, as `make bench`)
#
# The Node project in benches/peers is installed with `npm ci` on first use
# (and when its package-lock.json changes): it needs the npm registry once.
# Its lock includes a Node.js 22 build from npm (PostGraphile 5 needs
# Node >= 22; the machine's may be older), used when it installed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
# shellcheck source=scripts/dbenv.sh
source "$ROOT/scripts/dbenv.sh"

if [ $# -gt 0 ]; then
    WORKLOADS=("$@")
else
    read -r -a WORKLOADS <<<"${PEERS_WORKLOADS:-targeted:1000:2000:200 fanout:100:200:50}"
fi
WRITERS="${PEERS_WRITERS:-4}"
ONLY="${PEERS_ONLY:-}"
case "$ONLY" in
    ''|pgherald|postgraphile) ;;
    *) echo "bench-peers: PEERS_ONLY must be pgherald or postgraphile, got '$ONLY'" >&2; exit 2 ;;
esac
for w in "${WORKLOADS[@]}"; do
    if ! [[ "$w" =~ ^(targeted|fanout|rls):[0-9]+:[0-9]+:[0-9]+$ ]]; then
        echo "bench-peers: bad workload '$w' (MODE:CONNECTIONS:ROWS:RATE, e.g. targeted:1000:2000:200)" >&2
        exit 2
    fi
done

# Both sides hold one descriptor per WebSocket; Node does not raise its own
# limit (pgherald and load.rs do).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# The Node project (also needed for the table when PEERS_ONLY=pgherald).
PEERS="$ROOT/benches/peers"
if [ ! -d "$PEERS/node_modules" ] \
    || [ "$PEERS/package-lock.json" -nt "$PEERS/node_modules" ] \
    || [ "$PEERS/package.json" -nt "$PEERS/node_modules" ]; then
    # npm on an older Node warns about PostGraphile's engine (the Node 22
    # from the lock is what runs it): keep those warnings out of the way.
    (cd "$PEERS" && npm ci --no-audit --no-fund --loglevel=error)
    touch "$PEERS/node_modules"
fi
NODE="$PEERS/node_modules/.bin/node"
[ -x "$NODE" ] || NODE="$(command -v node)"
major="$("$NODE" -p 'process.versions.node.split(".")[0]')"
if [ "$major" -lt 22 ] && [ "$ONLY" != pgherald ]; then
    echo "bench-peers: $NODE is Node $major; PostGraphile 5 needs Node >= 22" >&2
    exit 1
fi

# pgherald first: one `make bench` run per workload, JSON files collected.
JSONS=()
if [ "$ONLY" != postgraphile ]; then
    for w in "${WORKLOADS[@]}"; do
        IFS=: read -r mode conns rows rate <<<"$w"
        echo "== pgherald: $w" >&2
        log="$(mktemp)"
        "$ROOT/scripts/bench.sh" --mode "$mode" -c "$conns" -e "$rows" -r "$rate" --writers "$WRITERS" | tee "$log"
        json="$(sed -n 's/^written: //p' "$log" | tail -n1)"
        rm -f "$log"
        [ -n "$json" ] || { echo "bench-peers: no JSON from scripts/bench.sh for $w" >&2; exit 1; }
        case "$json" in /*) ;; *) json="$ROOT/$json" ;; esac
        JSONS+=(--pgherald "$json")
    done
else
    cargo build --release --bin pgherald # for `pgherald migrate --demo`
fi

# Then PostGraphile, and the side-by-side table (and benches/results/<date>-peers.json).
SKIP=()
if [ "$ONLY" = pgherald ]; then
    SKIP=(--skip-postgraphile)
else
    echo "== postgraphile: ${WORKLOADS[*]}" >&2
fi
exec "$NODE" "$PEERS/load.mjs" --writers "$WRITERS" "${SKIP[@]+"${SKIP[@]}"}" "${JSONS[@]+"${JSONS[@]}"}" "${WORKLOADS[@]}"
