# recall-frames in a container: built with cargo-chef so that dependencies sit in their own
# cached layer, and run as a non-root user on slim Debian with only the binary and the CA
# certificates it needs for HTTPS calls to Recall's API, and ffmpeg for exports.
#
#   docker build -t recall-frames .
#   docker run -p 8080:8080 -v recall-frames:/data -e PUBLIC_URL=... recall-frames

# Builder and runtime are the same Debian release, so the binary finds the glibc it was
# linked against.
FROM rust:1.95-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /build

# The recipe: every manifest and the lock file, with none of our code.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# Dependencies first, in a layer rebuilt only when the recipe changes; then our code.
FROM chef AS builder
COPY --from=planner /build/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin recall-frames

FROM debian:bookworm-slim AS runtime
# Unpinned on purpose: the CA bundle and ffmpeg should be the release's latest (security
# fixes). ffmpeg encodes exports (docs/export.md); the DejaVu fonts write names and times on
# them.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates ffmpeg fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
# A fixed numeric user: Fly.io mounts a volume owned by the image's user, and Docker copies
# /data's owner into a new named volume.
RUN groupadd --system --gid 10001 recall \
    && useradd --system --uid 10001 --gid recall --home-dir /data --no-create-home recall \
    && mkdir /data \
    && chown recall:recall /data
COPY --from=builder /build/target/release/recall-frames /usr/local/bin/recall-frames
ENV DATA_DIR=/data
USER 10001:10001
EXPOSE 8080
# The server drains on SIGTERM: closes every bot's websocket, saves what is queued, exits 0.
STOPSIGNAL SIGTERM
CMD ["recall-frames"]
