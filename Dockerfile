# xlmc images.
#   docker build --target server -t xlmc-server .             slim gRPC server: binaries + libonnxruntime (CPU)
#   docker build --target server-cuda -t xlmc-server-cuda .   the same with ONNX Runtime's CUDA provider
#   docker build --target builder -t xlmc-builder .           toolchain image with libtorch (runs `exporter`)
#
#   docker build --target server --build-arg BINARIES=prebuilt -t xlmc-server CONTEXT
#       the slim server from binaries built elsewhere: CONTEXT/prebuilt/bin/{server,healthcheck,loadgen}
#       and CONTEXT/prebuilt/lib/libonnxruntime.so.1.30.0 (what CI builds and runs, see
#       scripts/image-test.sh; podman and buildah take the same arguments)
#
# The builder stage runs the same ./xlmc entry point as a developer machine. No image here links
# libtorch into the server: bundles (exporter export) are what it serves.

# Where the server stage takes /opt/xlmc from: `builder-binaries` (built here) or `prebuilt`.
ARG BINARIES=builder-binaries

FROM rust:1.95-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip \
 && rm -rf /var/lib/apt/lists/*
# Debian marks its Python externally managed; .deps is a private --target folder, not site-packages.
ENV PIP_BREAK_SYSTEM_PACKAGES=1
WORKDIR /src
COPY . .
RUN ./xlmc build

# The CUDA server: built with ONNX Runtime's CUDA execution provider, against onnxruntime-gpu's
# libraries (from PyPI, like the CPU ones).
FROM builder AS builder-cuda
RUN python3 -m pip install --no-deps --target /src/.deps-gpu onnxruntime-gpu==1.30.0 \
 && cargo build --release -p xlmc-server --features cuda --bins

# The server's files as /opt/xlmc/{bin,lib}, built in the builder stage…
FROM builder AS builder-binaries
RUN mkdir -p /opt/xlmc/bin /opt/xlmc/lib \
 && cp target/release/server target/release/healthcheck target/release/loadgen /opt/xlmc/bin/ \
 && cp .deps/onnxruntime/capi/libonnxruntime.so.1.30.0 /opt/xlmc/lib/

# …or taken as built elsewhere (CI: the binaries its tests just ran).
FROM scratch AS prebuilt
COPY prebuilt/ /opt/xlmc/

FROM ${BINARIES} AS binaries

FROM debian:bookworm-slim AS server
RUN useradd --system --uid 10001 xlmc
# bin/server finds ../lib/libonnxruntime.so.1.30.0 by itself (see crates/runtime).
COPY --from=binaries /opt/xlmc/ /opt/xlmc/
ENV XLMC_ADDR=0.0.0.0:50051 \
    XLMC_METRICS_ADDR=0.0.0.0:9090 \
    XLMC_LOG_FORMAT=json \
    XLMC_MODELS=/models
EXPOSE 50051 9090
USER xlmc
# gRPC health (grpc.health.v1): SERVING once every bundle is loaded, NOT_SERVING while loading
# or draining after SIGTERM.
HEALTHCHECK --interval=10s --timeout=4s --start-period=60s --retries=3 \
    CMD ["/opt/xlmc/bin/healthcheck", "http://127.0.0.1:50051"]
ENTRYPOINT ["/opt/xlmc/bin/server"]

FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 AS server-cuda
RUN useradd --system --uid 10001 xlmc
COPY --from=builder-cuda /src/target/release/server /src/target/release/healthcheck /src/target/release/loadgen /opt/xlmc/bin/
# libonnxruntime + its CUDA provider libraries, side by side as ORT expects them.
COPY --from=builder-cuda /src/.deps-gpu/onnxruntime/capi/libonnxruntime*.so* /opt/xlmc/lib/
ENV XLMC_ADDR=0.0.0.0:50051 \
    XLMC_METRICS_ADDR=0.0.0.0:9090 \
    XLMC_LOG_FORMAT=json \
    XLMC_MODELS=/models \
    XLMC_DEVICE=cuda \
    ORT_DYLIB_PATH=/opt/xlmc/lib/libonnxruntime.so.1.30.0
EXPOSE 50051 9090
USER xlmc
HEALTHCHECK --interval=10s --timeout=4s --start-period=120s --retries=3 \
    CMD ["/opt/xlmc/bin/healthcheck", "http://127.0.0.1:50051"]
ENTRYPOINT ["/opt/xlmc/bin/server"]
