# xlmc images.
#   docker build --target server -t xlmc-server .     slim gRPC server: the binary + libonnxruntime
#   docker build --target builder -t xlmc-builder .   toolchain image with libtorch (runs `exporter`)
#
# The builder stage runs the same ./xlmc entry point as a developer machine.

FROM rust:1.95-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-pip \
 && rm -rf /var/lib/apt/lists/*
# Debian marks its Python externally managed; .deps is a private --target folder, not site-packages.
ENV PIP_BREAK_SYSTEM_PACKAGES=1
WORKDIR /src
COPY . .
RUN ./xlmc build

FROM debian:bookworm-slim AS server
RUN useradd --system --uid 10001 xlmc
# bin/server finds ../lib/libonnxruntime.so.1.30.0 by itself (see crates/runtime).
COPY --from=builder /src/target/release/server /opt/xlmc/bin/server
COPY --from=builder /src/.deps/onnxruntime/capi/libonnxruntime.so.1.30.0 /opt/xlmc/lib/
ENV XLMC_ADDR=0.0.0.0:50051 \
    XLMC_METRICS_ADDR=0.0.0.0:9090 \
    XLMC_LOG_FORMAT=json
EXPOSE 50051 9090
USER xlmc
ENTRYPOINT ["/opt/xlmc/bin/server"]
