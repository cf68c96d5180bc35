# syntax=docker/dockerfile:1
# wasmsink as a small non-root container image.
#
#   docker build -t wasmsink .
#   docker run -p 8083:8083 -v wasmsink-data:/data \
#     -v $PWD/examples/wasmsink.toml:/etc/wasmsink/wasmsink.toml:ro \
#     -v $PWD/keys:/run/secrets/wasmsink-keys:ro \
#     -e WASMSINK_API_KEYS_FILE=/run/secrets/wasmsink-keys \
#     -e WASMSINK_CONFIG=/etc/wasmsink/wasmsink.toml wasmsink
#
# The API listens on every interface inside the container, so it needs an
# API key (WASMSINK_API_KEYS_FILE or WASMSINK_API_KEYS): without one the
# container exits at once and says so. To run an open API on purpose (a
# private network where something in front authenticates), opt out with
# -e WASMSINK_AUTH=none.
#
# Debian bookworm in both stages: the binary links the system's OpenSSL 3
# (librdkafka's TLS), so the runtime stage must match the build stage.

FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libssl-dev pkg-config zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# rust-toolchain.toml pins the toolchain and lists wasm32-wasip2 (the
# built-in guest is compiled for it by runtime/build.rs).
RUN rustup show active-toolchain && rustup target add wasm32-wasip2
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p wasmsink \
 && install -D -m 0755 target/release/wasmsink /out/wasmsink

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 wasmsink \
 && useradd --system --uid 10001 --gid wasmsink --home-dir /data --shell /usr/sbin/nologin wasmsink \
 && mkdir -p /data /etc/wasmsink \
 && chown wasmsink:wasmsink /data
COPY --from=build /out/wasmsink /usr/local/bin/wasmsink
# Listen on every interface inside the container (an API key is then
# required; see above); keep the store on a volume. Without WASMSINK_CONFIG,
# connectors are managed over the REST API only.
ENV WASMSINK_LISTEN=0.0.0.0:8083 \
    WASMSINK_DATA_DIR=/data \
    WASMSINK_LOG_FORMAT=json \
    RUST_LOG=info
VOLUME ["/data"]
EXPOSE 8083
USER 10001:10001
WORKDIR /data
HEALTHCHECK --interval=15s --timeout=6s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/wasmsink", "healthcheck"]
# SIGTERM drains in-flight attempts (up to [runtime] shutdown.timeout.sec)
# and commits finished offsets; give `docker stop -t` at least that long.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/wasmsink"]
CMD ["run"]
