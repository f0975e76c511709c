#!/usr/bin/env bash
# The cluster of compose.yaml, tested end to end: Postgres, the one-shot
# `pgherald migrate --demo`, pgherald instances and nginx (deploy/nginx.conf)
# in front of them; subscribers connect through nginx with the real
# graphql-ws client (tests/clients/subscribe.mjs) and each must receive
# exactly the notifications row-level security lets it see.
#
#   scripts/cluster-test.sh            # docker compose where a Docker engine answers,
#                                      # else the same topology from local binaries
#   scripts/cluster-test.sh --local    # local binaries even where Docker works
#
# With Docker: `docker compose up --build` in a project of its own
# (pgherald-cluster-test), on HERALD_PORT (default 18080), then
# `docker compose down -v`. Without: the integration test
# deploy::cluster (tests/api/deploy/cluster.rs), which starts three
# `pgherald serve` processes and nginx configured by deploy/nginx.conf on a
# fresh database of the private cluster (scripts/dbenv.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"

mode=auto
case "${1:-}" in
    --local) mode=local ;;
    --docker) mode=docker ;;
    "") ;;
    *) echo "usage: $0 [--local|--docker]" >&2; exit 2 ;;
esac
if [ "$mode" = auto ]; then
    if docker info >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
        mode=docker
    else
        mode=local
    fi
fi

install_clients() {
    if [ ! -d tests/clients/node_modules ]; then
        npm ci --prefix tests/clients --no-audit --no-fund
    fi
}

if [ "$mode" = local ]; then
    echo "cluster-test: no Docker engine here (docker info failed), or --local: running the same topology from local binaries" >&2
    scripts/prereq-nginx.sh
    install_clients
    # shellcheck source=scripts/dbenv.sh
    source scripts/dbenv.sh
    export PGHERALD_TEST_ADMIN_URL="${PGHERALD_TEST_ADMIN_URL:-$HERALD_ADMIN_DATABASE_URL}"
    filter='test(/deploy::cluster::/)'
    if cargo nextest --version >/dev/null 2>&1; then
        exec cargo nextest run --no-capture -E "$filter"
    else
        exec cargo test --test api deploy::cluster:: -- --nocapture
    fi
fi

# --- docker compose -------------------------------------------------------
install_clients
export HERALD_PORT="${HERALD_PORT:-18080}"
export HERALD_JWT_SECRET="${HERALD_JWT_SECRET:-cluster-test-secret-$RANDOM$RANDOM}"
export COMPOSE_PROJECT_NAME=pgherald-cluster-test
compose() { docker compose -f "$ROOT/compose.yaml" "$@"; }
WORK="$(mktemp -d -t pgherald-cluster-test.XXXXXX)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    compose down -v --remove-orphans >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

echo "cluster-test: docker compose up --build (project $COMPOSE_PROJECT_NAME, port $HERALD_PORT)" >&2
# (up waits for each depends_on condition: postgres healthy, migrate done,
# both instances healthy before nginx starts.)
compose up --build --detach
ready=0
for i in $(seq 1 600); do
    if curl -fsS "http://127.0.0.1:$HERALD_PORT/readyz" >/dev/null 2>&1; then ready=1; break; fi
    sleep 0.1
done
[ "$ready" -eq 1 ] || { echo "cluster-test: FAIL: nginx did not answer /readyz within 60 s" >&2; compose logs --tail 50 >&2; exit 1; }
psql_admin() { compose exec -T postgres psql -v ON_ERROR_STOP=1 -qAt -U postgres -d pgherald "$@"; }
token_for() { compose exec -T pgherald-1 pgherald token --sub "$1" --ttl 1h; }

# Until a given line count shows up in a file, at most 20 s.
wait_lines() {
    local file="$1" pattern="$2" want="$3" i
    for i in $(seq 1 200); do
        [ "$(grep -c -- "$pattern" "$file" 2>/dev/null || true)" -ge "$want" ] && return 0
        sleep 0.1
    done
    echo "cluster-test: $file: fewer than $want lines matching $pattern:" >&2
    cat "$file" >&2
    return 1
}

tenant="$(psql_admin -c "insert into tenants (name) values ('Acme') returning id")"
users=(alice bob carol dave)
declare -A ids
for u in "${users[@]}"; do
    ids[$u]="$(psql_admin -c "with n as (insert into users (email) values ('$u@acme.test') returning id)
        insert into memberships (tenant_id, user_id) select '$tenant', id from n returning user_id")"
done

# Two connections per user: round-robin puts them on both instances.
query='subscription { notifications(ops: [INSERT]) { row { id title user_id } } }'
for u in "${users[@]}"; do
    token="$(token_for "${ids[$u]}")"
    for n in 1 2; do
        (cd tests/clients && URL="ws://127.0.0.1:$HERALD_PORT/graphql" TOKEN="$token" QUERY="$query" \
            exec node subscribe.mjs >"$WORK/$u.$n.out") &
        pids+=("$!")
    done
done
for u in "${users[@]}"; do
    for n in 1 2; do wait_lines "$WORK/$u.$n.out" '"event":"connected"' 1; done
done
# Registered on the instances: the sum of their pgherald_subscriptions.
for i in $(seq 1 200); do
    total=0
    for svc in pgherald-1 pgherald-2; do
        c="$(compose exec -T "$svc" curl -fsS http://127.0.0.1:8080/metrics | awk '$1 == "pgherald_subscriptions" {print $2}')"
        total=$((total + ${c:-0}))
    done
    [ "$total" -ge 8 ] && break
    sleep 0.1
done
for svc in pgherald-1 pgherald-2; do
    conns="$(compose exec -T "$svc" curl -fsS http://127.0.0.1:8080/metrics | awk '$1 == "pgherald_websocket_connections" {print $2}')"
    echo "cluster-test: $svc holds $conns websocket connection(s)" >&2
    [ "${conns:-0}" -ge 1 ] || { echo "cluster-test: FAIL: $svc got no connection through nginx" >&2; exit 1; }
done

# Alice and Bob get 5 notifications each, Carol and Dave none; then a last
# one for everyone, which every subscriber receives last.
for i in 1 2 3 4 5; do
    for u in alice bob; do
        psql_admin -c "insert into notifications (tenant_id, user_id, title) values ('$tenant', '${ids[$u]}', '$u $i')"
    done
done
psql_admin -c "insert into notifications (tenant_id, user_id, title)
    select '$tenant', user_id, 'last' from memberships where tenant_id = '$tenant'"

fail=0
for u in "${users[@]}"; do
    for n in 1 2; do
        out="$WORK/$u.$n.out"
        wait_lines "$out" '"title":"last"' 1 || { fail=1; continue; }
        got="$(grep '"event":"next"' "$out" | grep -o '"title":"[^"]*"' | cut -d'"' -f4 | grep -vx last | tr '\n' ' ')"
        case "$u" in alice|bob) want="$u 1 $u 2 $u 3 $u 4 $u 5 " ;; *) want="" ;; esac
        others="$(grep '"event":"next"' "$out" | grep -v "\"user_id\":\"${ids[$u]}\"" || true)"
        if [ "$got" != "$want" ] || [ -n "$others" ]; then
            echo "cluster-test: FAIL: $u#$n got [$got], wanted [$want]${others:+; rows of others: $others}" >&2
            fail=1
        fi
    done
done
if [ "$fail" -ne 0 ]; then
    compose logs --tail 50 >&2 || true
    exit 1
fi
echo "cluster-test: 8 subscribers through nginx over 2 instances: each got exactly its own notifications" >&2
echo "1 passed, 0 failed"
