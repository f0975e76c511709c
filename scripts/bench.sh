#!/usr/bin/env bash
# `make bench ARGS=...`: ensure a database, build release, run the bench
# binary with the given arguments. Placeholder; adjust as the bench grows.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
# shellcheck source=scripts/dbenv.sh
source "$ROOT/scripts/dbenv.sh"

cargo build --release

BENCH="${CARGO_TARGET_DIR:-$ROOT/target}/release/pgherald-bench"
if [ -x "$BENCH" ]; then
    exec "$BENCH" "$@"
fi
echo "bench not built" >&2
exit 1
