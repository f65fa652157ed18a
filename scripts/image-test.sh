#!/usr/bin/env bash
# The slim server image, built and exercised: the Dockerfile's `server` stage from the binaries
# just built (--build-arg BINARIES=prebuilt) on a Debian base made from Debian's archive
# (debootstrap; no registry is reachable), started on a bundle of the committed teacher, asked
# for SERVING by the image's own healthcheck, sent gRPC Translate requests (loadgen) and an HTTP
# one, and checked to hold no libtorch. Run by `./xlmc test` after the slim server is built.
# Where buildah cannot run, it prints why and exits 0.
#
#   scripts/image-test.sh [BIN_DIR]        # default target/debug
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${1:-$ROOT/target/debug}"
ORT="$ROOT/.deps/onnxruntime/capi/libonnxruntime.so.1.30.0"
BASE=localhost/debian:bookworm-slim
IMAGE=localhost/xlmc-server:ci
say() { echo "image test: $*"; }
skip() { say "skipped ($*)"; exit 0; }

command -v buildah >/dev/null || skip "buildah is not installed: apt-get install buildah podman debootstrap"
buildah info >/dev/null 2>&1 || skip "buildah cannot run here: $(buildah info 2>&1 | tail -1)"
for f in server healthcheck loadgen exporter; do [ -x "$BIN/$f" ] || { say "$BIN/$f is missing"; exit 1; }; done
if ldd "$BIN/server" | grep -q libtorch; then say "$BIN/server links libtorch: build the slim server (cargo build -p xlmc-server --bins)"; exit 1; fi

work="$(mktemp -d)"
container=""
cleanup() {
    [ -n "$container" ] && buildah rm "$container" >/dev/null 2>&1
    [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# The base image, made once per machine (containers storage keeps it).
if ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || skip "no $BASE and no debootstrap to make it"
    command -v podman >/dev/null || skip "no $BASE and no podman to import it"
    say "making $BASE with debootstrap (once per machine)"
    debootstrap --variant=minbase bookworm "$work/root" >"$work/debootstrap.log" 2>&1 \
        || { tail -5 "$work/debootstrap.log"; exit 1; }
    tar -C "$work/root" -c . | podman import - "$BASE" >/dev/null
    rm -rf "$work/root"
fi
# The Dockerfile says `debian:bookworm-slim`: resolve it to the local base, never a registry.
buildah tag "$BASE" docker.io/library/debian:bookworm-slim

mkdir -p "$work/context/prebuilt/bin" "$work/context/prebuilt/lib"
cp "$BIN/server" "$BIN/healthcheck" "$BIN/loadgen" "$work/context/prebuilt/bin/"
cp "$ORT" "$work/context/prebuilt/lib/"
start=$(date +%s)
buildah bud --isolation chroot --pull-never --layers=false --target server --build-arg BINARIES=prebuilt \
    -f "$ROOT/Dockerfile" -t "$IMAGE" "$work/context" >"$work/build.log" 2>&1 \
    || { tail -20 "$work/build.log"; exit 1; }
say "built $IMAGE in $(( $(date +%s) - start )) s, $(buildah images --format '{{.Size}}' "$IMAGE" | head -1)"

# A bundle of the committed teacher, served from a volume the way the Deployment mounts one.
"$BIN/exporter" export --model "$ROOT/models/en-fr-teacher" --out "$work/models/teacher" >/dev/null
container=$(buildah from --pull-never "$IMAGE")
mount=$(buildah mount "$container")
if find "$mount" -name 'libtorch*' | grep -q .; then say "the image holds libtorch"; exit 1; fi
buildah umount "$container" >/dev/null
# Free ports on the host network (the image runs there).
read -r grpc_port http_port < <(python3 -c 'import socket
s=[socket.socket() for _ in range(2)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
buildah run --isolation chroot --network host -v "$work/models:/models:ro" "$container" -- \
    /opt/xlmc/bin/server --models /models --addr "127.0.0.1:$grpc_port" --metrics-addr 127.0.0.1:0 \
    --http-addr "127.0.0.1:$http_port" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 120); do
    if buildah run --isolation chroot --network host "$container" -- \
        /opt/xlmc/bin/healthcheck "http://127.0.0.1:$grpc_port" >/dev/null 2>&1; then
        break
    fi
    kill -0 "$server_pid" 2>/dev/null || { tail -20 "$work/server.log"; say "the server exited"; exit 1; }
    sleep 1
done
buildah run --isolation chroot --network host "$container" -- /opt/xlmc/bin/healthcheck "http://127.0.0.1:$grpc_port" \
    || { tail -20 "$work/server.log"; say "never SERVING"; exit 1; }
printf 'The Basic Editor\nFor ye are dead, and your life is hid with Christ in God.\n' >"$work/input.txt"
report=$("$BIN/loadgen" --addr "http://127.0.0.1:$grpc_port" --input "$work/input.txt" --requests 8 --concurrency 2 --duration 60)
echo "$report"
echo "$report" | grep -Eq '^\| .* \| 8 \| 0 \|' || { say "gRPC Translate failed"; exit 1; }
answer=$(python3 -c 'import json,sys,urllib.request
r=urllib.request.Request(sys.argv[1]+"/translate",data=json.dumps({"q":"For ye are dead, and your life is hid with Christ in God.","source":"en","target":"fr"}).encode(),headers={"Content-Type":"application/json"})
print(json.load(urllib.request.urlopen(r,timeout=60))["translatedText"])' "http://127.0.0.1:$http_port")
say "HTTP /translate: $answer"
[ -n "$answer" ] || { say "empty translation"; exit 1; }
say "ok: SERVING, 8 gRPC translations without error, no libtorch in the image"
