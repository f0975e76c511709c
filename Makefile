# pgherald developer tasks (GNU make).
#
# Database convention (implemented once, in scripts/dbenv.sh):
#   - DATABASE_URL unset: the private cluster in .pg/ is started
#     (scripts/pg.sh, port $PGHERALD_PG_PORT, default 54329) and
#       DATABASE_URL              = postgres://herald_authenticator@127.0.0.1:PORT/pgherald
#       HERALD_ADMIN_DATABASE_URL = postgres://postgres@127.0.0.1:PORT/pgherald
#   - DATABASE_URL set: nothing is started; HERALD_ADMIN_DATABASE_URL
#     defaults to DATABASE_URL.
#
# Examples:
#   make run                       # build, migrate with the demo schema, seed, serve on 127.0.0.1:8080
#   make migrate                   # pgherald's own schema only (herald.*)
#   make migrate ARGS=--demo       # plus the demo SaaS schema (examples/saas)
#   make test ARGS='ws::'          # extra args go to cargo nextest / cargo test
#   make bench-writers             # writers' TPS: untracked, tracked, tracked in relay mode
#   echo 'select 1' | make psql
#   make test DATABASE_URL=postgres://postgres@db:5432/pgherald

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DELETE_ON_ERROR:
MAKEFLAGS += --no-print-directory

CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
PGHERALD := $(TARGET_DIR)/release/pgherald
DBENV := scripts/dbenv.sh
ARGS ?=

.PHONY: all build migrate run psql test bench bench-targets bench-peers bench-writers fuzz pg-start pg-stop pg-destroy fmt lint

all: build

build:
	$(CARGO) build --release

migrate: build
	$(DBENV) $(PGHERALD) migrate $(ARGS)

run: build
	$(DBENV) $(PGHERALD) migrate --demo
	scripts/run.sh

# Reads SQL from stdin when not a terminal: echo 'select 1' | make psql
psql:
	@$(DBENV) bash -c 'exec psql -v ON_ERROR_STOP=1 "$$HERALD_ADMIN_DATABASE_URL"'

test:
	scripts/test.sh $(ARGS)

bench:
	scripts/bench.sh $(ARGS)

# Every performance target's workload, then a table of met / NOT MET (a few
# minutes): ARGS='--only 1,7' runs some of them.
bench-targets:
	scripts/bench.sh --mode targets $(ARGS)

# pgherald beside PostGraphile 5 (benches/peers, installed by npm on first
# use): ARGS='targeted:1000:2000:200 fanout:100:200:50' (the default).
bench-peers:
	scripts/bench-peers.sh $(ARGS)

# Knobs as environment variables: CLIENTS, DURATION, ROUNDS, PROTOCOL, POLL
# (see the script).
bench-writers:
	scripts/bench-writers.sh

# Longer fuzzing than `make test` runs (tests/fuzz.rs): FUZZ_CASES per target.
FUZZ_CASES ?= 200000
fuzz:
	PGHERALD_FUZZ_CASES=$(FUZZ_CASES) $(CARGO) test --release --test fuzz

pg-start:
	@scripts/pg.sh start

pg-stop:
	@scripts/pg.sh stop

pg-destroy:
	@scripts/pg.sh destroy

fmt:
	$(CARGO) fmt

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
