#!/usr/bin/env bash
# `make test`: ensure a database (see scripts/dbenv.sh), install the node
# test clients if needed, then run the Rust test suite. Extra arguments are
# passed to `cargo nextest run` / `cargo test`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
# shellcheck source=scripts/dbenv.sh
source "$ROOT/scripts/dbenv.sh"
# Tests create a fresh database per test through this admin connection.
export PGHERALD_TEST_ADMIN_URL="${PGHERALD_TEST_ADMIN_URL:-$HERALD_ADMIN_DATABASE_URL}"

CLIENTS="$ROOT/tests/clients"
if [ -f "$CLIENTS/package.json" ]; then
    need_install=0
    if [ ! -d "$CLIENTS/node_modules" ]; then
        need_install=1
    elif [ -f "$CLIENTS/package-lock.json" ] && [ "$CLIENTS/package-lock.json" -nt "$CLIENTS/node_modules" ]; then
        need_install=1
    elif [ "$CLIENTS/package.json" -nt "$CLIENTS/node_modules" ]; then
        need_install=1
    fi
    if [ "$need_install" -eq 1 ]; then
        if [ -f "$CLIENTS/package-lock.json" ]; then
            npm ci --prefix "$CLIENTS" --no-audit --no-fund
        else
            npm install --prefix "$CLIENTS" --no-audit --no-fund
        fi
        # npm does not always bump the directory mtime (and creates no
        # node_modules at all for a package without dependencies); record
        # the install so the next run skips it.
        mkdir -p "$CLIENTS/node_modules"
        touch "$CLIENTS/node_modules"
    fi
fi

if cargo nextest --version >/dev/null 2>&1; then
    exec cargo nextest run --no-fail-fast "$@"
else
    exec cargo test --no-fail-fast "$@"
fi
