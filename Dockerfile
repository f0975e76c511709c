# syntax=docker/dockerfile:1
# pgherald's container image: a Rust builder stage, then a small Debian
# runtime that runs the binary as an unprivileged user.
#
#   docker build -t pgherald:dev .
#   docker run --rm -e DATABASE_URL=... -e HERALD_JWT_SECRET=... -p 8080:8080 pgherald:dev
#
# docs/deployment.md explains the settings, compose.yaml and deploy/k8s/.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS builder
WORKDIR /build

# Dependencies first, in a layer of their own: it is rebuilt only when
# Cargo.toml or Cargo.lock change, not on every source edit. The manifest
# names a library, the binary, the `api` test and the `load` bench, so each
# gets a placeholder for this step.
COPY Cargo.toml Cargo.lock build.rs ./
RUN mkdir -p src tests/api benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > tests/api/main.rs \
    && echo 'fn main() {}' > benches/load.rs \
    && cargo build --release --locked --bin pgherald

# The sources, and what they embed at compile time: migrations (and the
# demo's, examples/saas), the SQL of sql/, the pages of static/.
COPY src src
COPY migrations migrations
COPY sql sql
COPY static static
COPY examples/saas examples/saas
# COPY keeps the files' own times, which can be older than the placeholder
# build: touch them so that cargo rebuilds the crate.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin pgherald
    && strip target/release/pgherald

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates: the system roots, for `sslrootcert=system` and https JWKS
# URLs. curl: the HEALTHCHECK below (pgherald has no client subcommand).
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 pgherald \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin pgherald
COPY --from=builder /build/target/release/pgherald /usr/local/bin/pgherald

# Numeric, so that Kubernetes' runAsNonRoot can verify it without /etc/passwd.
USER 10001:10001
# Inside a container, listen on every interface (the default is 127.0.0.1).
ENV HERALD_LISTEN=0.0.0.0:8080
EXPOSE 8080
# Liveness only: /readyz (database and listener) is for load balancers, and a
# container should not be restarted because its database is away.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS -o /dev/null "http://127.0.0.1:${HERALD_LISTEN##*:}/healthz" || exit 1
# SIGTERM (the default stop signal) makes `serve` stop accepting, close every
# WebSocket with 1001 and finish open HTTP requests before it exits.
ENTRYPOINT ["pgherald"]
CMD ["serve"]
