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

# Programs some tests drive (nginx, Chromium): scripts/prereq-*.sh install
# them when missing and they can, or say why not (those tests then print the
# reason and skip). They run here, one after another, because two package
# installs at once would fight over the package manager's lock.
for prereq in "$ROOT"/scripts/prereq-*.sh; do
    [ -e "$prereq" ] || continue
    "$prereq" || echo "test.sh: $(basename "$prereq") failed; the tests that need it will say so" >&2
done

# npm packages the tests run: the third-party clients, and every package of
# the repository that has tests. Installed from their lock files when
# missing or out of date.
install_node_packages() {
    local dir="$1" need_install=0
    [ -f "$dir/package.json" ] || return 0
    if [ ! -d "$dir/node_modules" ]; then
        need_install=1
    elif [ -f "$dir/package-lock.json" ] && [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
        need_install=1
    elif [ "$dir/package.json" -nt "$dir/node_modules" ]; then
        need_install=1
    fi
    if [ "$need_install" -eq 1 ]; then
        if [ -f "$dir/package-lock.json" ]; then
            npm ci --prefix "$dir" --no-audit --no-fund
        else
            npm install --prefix "$dir" --no-audit --no-fund
        fi
        # npm does not always bump the directory mtime (and creates no
        # node_modules at all for a package without dependencies); record
        # the install so the next run skips it.
        mkdir -p "$dir/node_modules"
        touch "$dir/node_modules"
    fi
}
for dir in "$ROOT"/tests/*/ "$ROOT"/clients/*/; do
    install_node_packages "${dir%/}"
done

if cargo nextest --version >/dev/null 2>&1; then
    exec cargo nextest run --no-fail-fast "$@"
else
    exec cargo test --no-fail-fast "$@"
fi
