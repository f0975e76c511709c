#!/usr/bin/env bash
# Database environment shared by every Makefile target and helper script.
#
#   source scripts/dbenv.sh          # exports the variables into this shell
#   scripts/dbenv.sh CMD [ARGS...]   # exports them, then execs CMD
#
# If DATABASE_URL is unset, the private cluster (scripts/pg.sh) is started
# and:
#   DATABASE_URL              = postgres://herald_authenticator@127.0.0.1:$PORT/pgherald
#   HERALD_ADMIN_DATABASE_URL = postgres://postgres@127.0.0.1:$PORT/pgherald
# (PORT = `scripts/pg.sh port`: PGHERALD_PG_PORT, else 54329 or the free port
# pg.sh moved to when that was taken). If DATABASE_URL is set, nothing is
# started and HERALD_ADMIN_DATABASE_URL defaults to DATABASE_URL.
#
# Always exported as well:
#   PGHERALD_TEST_ADMIN_URL   defaults to HERALD_ADMIN_DATABASE_URL (tests
#                             use it to create a fresh database per test)

_pgherald_dbenv() {
    local root port
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)" || return 1
    if [ -z "${DATABASE_URL:-}" ]; then
        "$root/scripts/pg.sh" start || return 1
        port="$("$root/scripts/pg.sh" port)" || return 1
        export DATABASE_URL="postgres://herald_authenticator@127.0.0.1:$port/pgherald"
        export HERALD_ADMIN_DATABASE_URL="postgres://postgres@127.0.0.1:$port/pgherald"
    else
        export DATABASE_URL
        export HERALD_ADMIN_DATABASE_URL="${HERALD_ADMIN_DATABASE_URL:-$DATABASE_URL}"
    fi
    export PGHERALD_TEST_ADMIN_URL="${PGHERALD_TEST_ADMIN_URL:-$HERALD_ADMIN_DATABASE_URL}"
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    # Sourced: do not change the caller's shell options, just export.
    _pgherald_dbenv
else
    set -euo pipefail
    if [ $# -eq 0 ]; then
        echo "usage: $0 CMD [ARGS...]   (or: source $0)" >&2
        exit 2
    fi
    _pgherald_dbenv
    exec "$@"
fi
