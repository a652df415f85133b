# Container image of the location-sharing server.
#
#   docker build -t ghcr.io/example/location-sharing:0.1.0 .
#   docker run --rm -p 4000:4000 ghcr.io/example/location-sharing:0.1.0          # SQLite + memory
#   docker run --rm -e DATABASE_URL=postgres://… -e JWT_SECRET=… ghcr.io/example/location-sharing:0.1.0 migrate
#
# Works with the classic builder and BuildKit alike (no cache mounts). The builder and runtime
# stages are both Debian bookworm, so glibc and OpenSSL (libssl3) match.

############################ build ############################
FROM rust:1.95-slim-bookworm AS builder

# pkg-config and libssl-dev: the `postgres-tls` feature builds the bundled libpq against the
# system OpenSSL. make and perl: for the bundled C builds (libpq, SQLite) should a build script
# need them. gcc and libc6-dev already come with the rust image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config libssl-dev make perl \
    && rm -rf /var/lib/apt/lists/*
# (DL3008 ignored: Debian bookworm's security updates replace exact versions, so a pinned
# version would stop resolving; the suite itself is pinned by the base image tag.)

WORKDIR /build

# 1. Dependencies only, cached in their own layer until a manifest or Cargo.lock changes: build
#    them against stub targets. The workspace names crates/loadgen, so its manifest comes too, and
#    cargo refuses a manifest whose [[bench]] file is missing, so each [[bench]] gets a stub
#    (benches/protocol.rs, crates/loadgen/benches/send_floor.rs); a new bench needs a line here.
#    Only the server binary is built (`--bin`): loadgen and the benches are not part of the image.
COPY Cargo.toml Cargo.lock ./
COPY crates/loadgen/Cargo.toml ./crates/loadgen/
RUN mkdir -p src benches crates/loadgen/src crates/loadgen/benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/protocol.rs \
    && echo 'fn main() {}' > crates/loadgen/src/main.rs \
    && echo 'fn main() {}' > crates/loadgen/benches/send_floor.rs \
    && cargo build --release --locked --features postgres-tls --bin location-sharing \
    && rm -rf src

# 2. The crate itself, with what it embeds at compile time: the migrations (embed_migrations!)
#    and the web client's pages and assets (include_str!/include_bytes! of web/).
#    COPY keeps the files' own modification times, which can be older than the stub build
#    above; touch the crate roots so cargo rebuilds the crate instead of keeping the stub binary.
COPY src ./src
COPY migrations ./migrations
COPY web ./web
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --features postgres-tls --bin location-sharing \
    && install -m 0755 target/release/location-sharing /usr/local/bin/location-sharing \
    && /usr/local/bin/location-sharing --version

############################ run ############################
FROM debian:bookworm-slim

# ca-certificates: verified TLS to PostgreSQL (sslmode=verify-full&sslrootcert=system).
# libssl3: the OpenSSL that libpq was built against. curl: the HEALTHCHECK below.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libssl3 curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin app \
    && mkdir -p /app/data \
    && chown -R 10001:10001 /app
# (DL3008 ignored for the same reason as in the build stage.)

COPY --from=builder /usr/local/bin/location-sharing /usr/local/bin/location-sharing

# The working directory is where a plain `docker run` (SQLite default) writes ./data; in
# Kubernetes DATABASE_URL is PostgreSQL, nothing is written and the root filesystem is read-only.
WORKDIR /app
USER 10001:10001

ENV HOST=0.0.0.0 \
    PORT=4000 \
    LOG_FORMAT=json

EXPOSE 4000

# Docker's own check (Kubernetes ignores it and uses the probes in k8s/deployment.yaml).
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/bin/sh", "-c", "curl -fsS --max-time 2 \"http://127.0.0.1:${PORT:-4000}/health/live\" > /dev/null || exit 1"]

# The server drains on SIGTERM (readiness 503, sockets closed with 1012) and exits within
# SHUTDOWN_GRACE_SECONDS (25 s): `docker stop -t 30` gives it the time.
STOPSIGNAL SIGTERM

ENTRYPOINT ["/usr/local/bin/location-sharing"]
CMD ["serve"]
