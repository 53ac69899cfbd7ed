# One image for every role of dop: compose and ECS run it as
# `dop serve --role order|inventory|payment` (docs/design/one-image.md).
#
#   docker build -t dop:local .
#   docker run --rm -p 8081-8083:8081-8083 dop:local            # serve --role all
#   docker run --rm -e HEALTHCHECK_PORT=8082 dop:local serve --role inventory

# ---------------------------------------------------------------- builder ---
FROM rust:1-bookworm AS builder
WORKDIR /src

# Dependency layer: compile every crate in Cargo.lock against a dummy main, so
# that a change under src/ rebuilds only dop itself. It is invalidated only
# when Cargo.toml, Cargo.lock or the vendored crates (vendor/*/PATCHED.md)
# change.
COPY Cargo.toml Cargo.lock ./
COPY vendor ./vendor
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && cargo build --release --locked \
    && rm -rf src target/release/dop target/release/deps/dop-* target/release/.fingerprint/dop-*

# The real sources. migrations/ is embedded at compile time, config/ holds the
# defaults layer (config/dop.toml) shipped in the runtime image.
COPY src ./src
COPY migrations ./migrations
COPY config ./config
# `touch` makes sure cargo sees the real main.rs as newer than the dummy's
# artefacts whatever mtime the build context carried.
RUN touch src/main.rs \
    && cargo build --release --locked \
    && cp target/release/dop /usr/local/bin/dop \
    && /usr/local/bin/dop --help > /dev/null

# ---------------------------------------------------------------- runtime ---
FROM debian:bookworm-slim AS runtime

# ca-certificates: TLS to RDS and Amazon MQ. curl: the HEALTHCHECK below.
# Versions are not pinned: bookworm-slim's point releases replace them and
# pinned versions would stop resolving; the base image tag fixes the suite.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 dop \
    && useradd --system --uid 10001 --gid dop --home-dir /app --no-create-home \
    --shell /usr/sbin/nologin dop

WORKDIR /app
COPY --from=builder /usr/local/bin/dop /usr/local/bin/dop
COPY --from=builder /src/config ./config
# CA bundles dop trusts besides the public roots: Amazon RDS's, committed
# and checked by deploy/scripts/rds_ca_bundle.py (deploy/certs/README.md).
COPY deploy/certs/ ./certs/

# JSON logs by default (one object per line on stdout); the port the
# HEALTHCHECK probes is the role's own: compose and ECS set it per service.
ENV DOP_LOG_FORMAT=json \
    HEALTHCHECK_PORT=8081

# The dop user created above, by number so that a runtime can verify it is
# not root without reading /etc/passwd (Kubernetes runAsNonRoot).
USER 10001:10001
EXPOSE 8081 8082 8083

HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["sh", "-c", "curl -fsS \"http://127.0.0.1:${HEALTHCHECK_PORT}/health\" > /dev/null || exit 1"]

ENTRYPOINT ["dop"]
CMD ["serve", "--role", "all"]
