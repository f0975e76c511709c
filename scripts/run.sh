#!/usr/bin/env bash
# `make run`: load the demo seed (examples/saas/seed.sql), print a banner
# with URLs and per-user tokens, then exec the server. Expects the release
# binary to be built and `pgherald migrate --demo` applied (the Makefile's
# `run` target does both first).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
# shellcheck source=scripts/dbenv.sh
source "$ROOT/scripts/dbenv.sh"

BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/pgherald"
[ -x "$BIN" ] || { echo "run.sh: $BIN not found (run: make build)" >&2; exit 1; }

export HERALD_JWT_SECRET="${HERALD_JWT_SECRET:-dev-secret-change-me}"
export HERALD_LISTEN="${HERALD_LISTEN:-127.0.0.1:8080}"

# client_min_messages: keep "already exists, skipping" notices out of the banner.
PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning" \
    psql -X -v ON_ERROR_STOP=1 -q -f examples/saas/seed.sql "$HERALD_ADMIN_DATABASE_URL"

users="$(psql -X -v ON_ERROR_STOP=1 -tA -F ' ' \
    -c "select id, email from public.users order by email" "$HERALD_ADMIN_DATABASE_URL")"

echo
echo "pgherald dev server"
echo "  demo page   http://$HERALD_LISTEN/"
echo "  GraphiQL    http://$HERALD_LISTEN/graphiql"
echo "  websocket   ws://$HERALD_LISTEN/graphql"
echo "  psql        psql '$HERALD_ADMIN_DATABASE_URL'"
echo
echo "  demo user tokens (valid 24h):"
declare -A tokens=()
while read -r id email; do
    [ -n "$id" ] || continue
    token="$("$BIN" token --sub "$id" --ttl 24h)"
    tokens[$email]="$token"
    printf '    %-20s %s\n' "$email" "$token"
done <<<"$users"
echo
# The demo page takes two tokens in its fragment (#a=...&b=..., never sent
# to the server) and opens one pane per user (static/index.html).
pair() {
    [ -n "${tokens[$1]:-}" ] && [ -n "${tokens[$2]:-}" ] || return 0
    echo "  demo page as $1 | $2:"
    echo "    http://$HERALD_LISTEN/#a=${tokens[$1]}&b=${tokens[$2]}"
}
pair alice@acme.test bob@acme.test
pair carol@globex.test dave@both.test
echo
echo "  Try it: open a demo page link; create, edit and delete documents, send notifications;"
echo "  or write with plain SQL and watch the panes:"
echo "    echo \"insert into notifications (tenant_id, user_id, title) select tenant_id, user_id, 'hello' from memberships m join users u on u.id = m.user_id where u.email = 'alice@acme.test' limit 1\" | make psql"
echo

exec "$BIN" serve
