#!/usr/bin/env bash
# `make bench ARGS='...'`: the load benchmark (benches/load.rs) against a
# release build of the server, on a fresh database `pgherald_bench` in the
# same cluster. `make bench ARGS='--help'` lists the knobs.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
# shellcheck source=scripts/dbenv.sh
source "$ROOT/scripts/dbenv.sh"

cargo build --release --bin pgherald
exec cargo bench --bench load -- --server "${CARGO_TARGET_DIR:-$ROOT/target}/release/pgherald" "$@"
