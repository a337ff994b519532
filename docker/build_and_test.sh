#!/usr/bin/env bash
# Builds the GPU image (docker/Dockerfile) for one CUDA architecture and runs the CPU part of
# the test suite inside it, on a machine that reaches no image registry:
#   1. a Docker engine: the running one, or (as root, with docker.io installed) a dockerd of our
#      own with its own data root, no iptables rules and no bridge, stopped when we exit;
#   2. the base image debian:12, made with debootstrap from the mirror this machine's apt
#      sources name (read here, at run time), when the engine does not have it;
#   3. docker build --network host, timed;
#   4. pytest in the container, CPU only (no GPU here; ctest's layer tests start only with one),
#      with the host's network for the patch tests' source fetch.
#
# Usage: docker/build_and_test.sh [ARCH]     ARCH: a CUDA architecture, default 90 (H100/H200)
# Environment: MLIC_DOCKER_DATA (default /work/docker-data), MLIC_IMAGE (default
#   mlic-kd-wsd:gpu-smARCH), PYTEST_ARGS (default: the whole suite, quiet).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ARCH=${1:-90}
IMAGE=${MLIC_IMAGE:-mlic-kd-wsd:gpu-sm$ARCH}
DATA=${MLIC_DOCKER_DATA:-/work/docker-data}
say() { printf '==> %s\n' "$*"; }

# ---- 1. the engine
DOCKERD_PID=
stop_dockerd() {
  if [ -n "$DOCKERD_PID" ]; then
    say "stopping our dockerd ($DOCKERD_PID)"
    kill "$DOCKERD_PID" 2>/dev/null || true
    wait "$DOCKERD_PID" 2>/dev/null || true
  fi
}
trap stop_dockerd EXIT
trap 'exit 130' INT TERM
if ! docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null || { echo "no Docker engine running and no dockerd (apt-get install docker.io)" >&2; exit 1; }
  mkdir -p "$DATA"
  export DOCKER_HOST=unix://$DATA/docker.sock
  say "starting dockerd (data root $DATA, no iptables, no bridge; log $DATA/dockerd.log)"
  dockerd --data-root "$DATA" --exec-root "$DATA/exec" --pidfile "$DATA/dockerd.pid" \
    --host "$DOCKER_HOST" --iptables=false --ip6tables=false --bridge=none \
    >"$DATA/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -n 20 "$DATA/dockerd.log" >&2; exit 1; }
fi

# ---- 2. debian:12
if ! docker image inspect debian:12 >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || { echo "no debian:12 image and no debootstrap (apt-get install debootstrap)" >&2; exit 1; }
  mirror=$({ grep -hoE '^(URIs:|deb) +[^ ]+' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true; } |
           awk '{print $2}' | grep -v security | head -n1)
  [ -n "$mirror" ] || { echo "no Debian mirror in /etc/apt/sources.list*" >&2; exit 1; }
  rootfs=$DATA/debian-12-rootfs
  rm -rf "$rootfs"
  say "making debian:12 with debootstrap (minbase, bookworm)"
  t0=$SECONDS
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$DATA/debootstrap.log" 2>&1 ||
    { tail -n 20 "$DATA/debootstrap.log" >&2; exit 1; }
  tar -C "$rootfs" -c . | docker import - debian:12 >/dev/null
  rm -rf "$rootfs"
  say "debian:12 made in $((SECONDS - t0)) s"
fi

# ---- 3. the image, trusting the certificate authorities this machine added to its own store
# (an HTTPS proxy's, for instance), as pip here does.
find "$ROOT/docker/extra-ca" -name '*.crt' -delete
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$ROOT/docker/extra-ca/"
fi
say "building $IMAGE (MLIC_CUDA_ARCH=$ARCH)"
t0=$SECONDS
docker build --network host --build-arg "MLIC_CUDA_ARCH=$ARCH" -f "$ROOT/docker/Dockerfile" \
  -t "$IMAGE" "$ROOT"
build_s=$((SECONDS - t0))
size=$(docker image inspect -f '{{.Size}}' "$IMAGE")
say "built $IMAGE in ${build_s} s; image size $((size / 1000000)) MB"

# ---- 4. the CPU tests, with no GPU and no driver: pycaffe of the CUDA build in CPU mode.
# Host network: the patch tests fetch Debian's Caffe source through apt, as CI's do; nothing
# else in the suite uses the network.
say "running the CPU tests in the container"
t0=$SECONDS
docker run --rm --network host --entrypoint bash "$IMAGE" -c \
  ".venv/bin/python -c 'import caffe; caffe.set_mode_cpu(); print(\"caffe (CUDA build) in CPU mode\")' \
   && .venv/bin/python -m pytest tests ${PYTEST_ARGS:--q}"
say "CPU tests passed in $((SECONDS - t0)) s (image built in ${build_s} s, $((size / 1000000)) MB)"
