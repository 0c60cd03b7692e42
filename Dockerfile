# syntax=docker/dockerfile:1.7
#
# docsort container image: both binaries, docsort-worker and docsort-producer, in
# /usr/local/bin. No ENTRYPOINT: the ECS task definitions choose the binary with their
# command (the worker service runs `docsort-worker run`, the nightly backfill runs
# `docsort-producer backfill ...`); the default command runs the worker pool.
#
#   docker build -t docsort .                                 # x86_64 (CpuArchitecture=X86_64)
#   docker buildx build --platform linux/arm64 -t docsort .   # Graviton (CpuArchitecture=ARM64)
#
# Needs BuildKit (the default builder of current Docker) for the cache mounts below,
# which keep the cargo registry and target directory between builds.

# Same toolchain as the developers' (rust-version in Cargo.toml is the floor: 1.85).
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src
# Only what the workspace needs to resolve and build (all four members must exist).
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY schema ./schema
COPY producer ./producer
COPY worker ./worker
COPY tests ./tests
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p docsort-worker -p docsort-producer \
 && install -D -m 0755 -t /out target/release/docsort-worker target/release/docsort-producer

FROM debian:bookworm-slim AS runtime
# checkov:skip=CKV_DOCKER_2: queue consumers serve no port to probe; ECS restarts a task whose process exits
# ca-certificates: the AWS SDK verifies TLS against the system roots. poppler-data:
# the Adobe CID-to-Unicode tables for CJK fonts without ToUnicode. poppler-utils
# (pdftoppm) renders the first page of a scanned PDF; tesseract-ocr(-eng) reads it for
# the local classifier; both run in the extraction child, on stdin and stdout. Not version-pinned:
# the bookworm security updates are wanted, and old pins vanish from the archive.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates poppler-data poppler-utils \
        tesseract-ocr tesseract-ocr-eng \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 docsort \
 && useradd --system --uid 10001 --gid docsort --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin docsort
COPY --from=builder /out/ /usr/local/bin/
# Numeric, so a runAsNonRoot check can verify it; the binaries write nothing to disk,
# which is why the task definitions mount the root filesystem read-only.
USER 10001:10001
CMD ["docsort-worker", "run"]
