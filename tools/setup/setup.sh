#!/usr/bin/env bash
# Installs everything this project needs, idempotently, in seven steps:
#   system        Debian packages for building Caffe and the plugin
#   venv          .venv from Debian's python3 (the interpreter libcaffe and the caffe binary link),
#                 requirements.txt, and our packages mlic and caffe_layers (editable: pyproject.toml)
#   cuda          MLIC_GPU=1 only: the CUDA 13 toolkit, cuDNN and NCCL from NVIDIA's wheels,
#                 into the cache (with MLIC_CUDA_ROOT: cuDNN and NCCL only)
#   caffe         BVLC Caffe from Debian's source package, built into a cache outside the repo
#   cuda-headers  when nvcc is on PATH but its toolkit lacks cuBLAS and cuRAND (CI): their
#                 headers, from NVIDIA's wheels, for the plugin's CUDA compile check
#   plugin        our layer library (build/plugin), against that Caffe or the user's
#   openblas      build/openblas.env: the OpenBLAS kernels to use where OpenBLAS does not know
#                 the CPU (tools/mlic/openblas.py)
#
# Usage: tools/setup/setup.sh [--check] [system|venv|cuda|caffe|cuda-headers|plugin|openblas|all]...
#   --check  change nothing; exit 0 when every step is already done, 1 otherwise.
# Environment:
#   MLIC_GPU=1       build Caffe with CUDA, cuDNN and NCCL, and the plugin with its kernels;
#                    set it for every setup run on that machine
#   MLIC_CUDA_ARCH   with MLIC_GPU=1: the GPU architectures to build for, e.g. "90" or "80 90"
#                    (default: Volta to Hopper, less those the toolkit lacks)
#   MLIC_CUDNN=0     with MLIC_GPU=1: Caffe without cuDNN (its own CUDA convolutions)
#   MLIC_CUDA_ROOT   with MLIC_GPU=1: a CUDA 12 or 13 toolkit to use instead of the wheels'
#   CAFFE_ROOT       use an existing BVLC Caffe (CMake install prefix or build directory,
#                    CPU or CUDA) instead of building ours
#   MLIC_CACHE_DIR   where Caffe builds are kept (default ~/.cache/mlic-kd-wsd)
#   MLIC_JOBS        parallel build jobs (default: number of cores)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SETUP_DIR=$ROOT/tools/setup
PY=${MLIC_PYTHON:-/usr/bin/python3}
VENV=$ROOT/.venv
BUILD=$ROOT/build
LOGS=$BUILD/logs
CACHE=${MLIC_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mlic-kd-wsd}
JOBS=${MLIC_JOBS:-$(nproc)}
CHECK=0
PENDING=()

# The CUDA toolkit of MLIC_GPU=1 builds, from NVIDIA's wheels: nvcc (a complete toolchain only
# from 13.x on), the runtime, cuBLAS, cuRAND, and the cuDNN and NCCL that Caffe uses. They go
# into one directory laid out as a toolkit (tools/setup/cuda_wheels.py).
CUDA_TOOLKIT_WHEELS=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88
                     nvidia-cuda-cccl==13.0.85 nvidia-cuda-runtime==13.0.96
                     nvidia-cublas==13.1.2.11 nvidia-curand==10.4.0.35)
# cuDNN and NCCL for the CUDA major version: with the toolkit above, or with the user's own
# toolkit (MLIC_CUDA_ROOT, e.g. CUDA 12 from NVIDIA's image for drivers older than R580).
CUDA_LIBRARY_WHEELS_13=(nvidia-cudnn-cu13==9.28.1.4 nvidia-nccl-cu13==2.28.9)
CUDA_LIBRARY_WHEELS_12=(nvidia-cudnn-cu12==9.28.0.42 nvidia-nccl-cu12==2.28.9)
wheel_dir_hash() { echo "$*" | sha256sum | cut -c1-12; }

# cuBLAS and cuRAND headers for CUDA 13's nvcc (the wheels keep them in nvidia/cu13/include).
CUDA_HEADER_WHEELS=(nvidia-cublas==13.10.0.20 nvidia-curand==10.4.5.25)
CUDA_HEADERS=$CACHE/cuda-headers-$(echo "${CUDA_HEADER_WHEELS[*]}" | sed 's/nvidia-//g; s/==/-/g; s/ /_/g')

SYSTEM_PACKAGES=(
  build-essential cmake ca-certificates dpkg-dev patch xz-utils
  libboost-system-dev libboost-thread-dev libboost-filesystem-dev libboost-python-dev
  libprotobuf-dev protobuf-compiler libgoogle-glog-dev libgflags-dev libhdf5-dev
  libopenblas-dev libgtest-dev python3-dev python3-venv
)

say() { printf '==> %s\n' "$*"; }
fail() { printf 'setup: ERROR: %s\n' "$*" >&2; exit 1; }
# In --check mode a step that would do work is recorded instead of done.
pending() { PENDING+=("$1"); say "$1: needs work"; }

# Runs a command with its output in a log; on failure names the step and shows the log's end.
logged() {
  local name=$1; shift
  mkdir -p "$LOGS"
  local log=$LOGS/$name.log
  if ! "$@" >"$log" 2>&1; then
    printf 'setup: step "%s" failed; full log: %s\n--- last lines ---\n' "$name" "$log" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null; then sudo "$@"
  else fail "need root to run: $*"; fi
}

step_system() {
  local missing=() p
  for p in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} = 0 ]; then say "system: all ${#SYSTEM_PACKAGES[@]} Debian packages present"; return; fi
  [ $CHECK = 1 ] && { pending "system (missing: ${missing[*]})"; return; }
  say "system: installing ${missing[*]}"
  logged apt-update as_root apt-get update
  logged apt-install as_root env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "${missing[@]}"
}

venv_stamp() { { cat "$ROOT/requirements.txt"; "$PY" --version; } | sha256sum | cut -c1-16; }
package_stamp() { sha256sum <"$ROOT/pyproject.toml" | cut -c1-16; }

# The file the venv's Python imports for package $1, or nothing. -I: neither the current
# directory nor PYTHONPATH may stand in for the installed package.
package_origin() {
  "$VENV/bin/python" -I -c 'import importlib.util, sys
spec = importlib.util.find_spec(sys.argv[1])
print(spec.origin if spec else "")' "$1" 2>/dev/null || true
}

# Our packages (pyproject.toml) installed in editable mode from this checkout.
packages_installed() {
  [ -f "$VENV/.package-stamp" ] && [ "$(cat "$VENV/.package-stamp")" = "$(package_stamp)" ] &&
    [ "$(package_origin mlic)" = "$ROOT/tools/mlic/__init__.py" ] &&
    [ "$(package_origin caffe_layers)" = "$ROOT/caffe_layers/__init__.py" ]
}

step_venv() {
  [ -x "$PY" ] || fail "$PY not found (install python3, or set MLIC_PYTHON)"
  local want; want=$(venv_stamp)
  if [ -f "$VENV/.stamp" ] && [ "$(cat "$VENV/.stamp")" = "$want" ]; then
    say "venv: $VENV has requirements.txt"
  elif [ $CHECK = 1 ]; then pending "venv (requirements.txt)"
  else
    say "venv: creating $VENV from $PY and installing requirements.txt"
    [ -x "$VENV/bin/python" ] || logged venv-create "$PY" -m venv "$VENV"
    logged venv-pip "$VENV/bin/python" -m pip install --disable-pip-version-check \
      -r "$ROOT/requirements.txt"
    echo "$want" >"$VENV/.stamp"
  fi
  # The Docker image's first layer has only requirements.txt and tools/setup: the packages
  # follow when the whole checkout is there.
  if [ ! -f "$ROOT/pyproject.toml" ]; then
    if [ $CHECK = 1 ]; then pending "venv (no pyproject.toml in $ROOT)"
    else say "venv: no pyproject.toml in $ROOT yet; the packages are installed by a later run"; fi
    return
  fi
  if [ -x "$VENV/bin/python" ] && packages_installed; then
    say "venv: packages mlic and caffe_layers installed from $ROOT"; return
  fi
  [ $CHECK = 1 ] && { pending "venv (packages mlic and caffe_layers not installed from $ROOT)"; return; }
  say "venv: installing the packages mlic and caffe_layers (editable: pyproject.toml)"
  # setuptools comes pinned from requirements.txt: no download to build the editable wheel.
  logged venv-package "$VENV/bin/python" -m pip install --disable-pip-version-check \
    --no-build-isolation --no-deps -e "$ROOT"
  package_stamp >"$VENV/.package-stamp"
  packages_installed ||
    fail "the venv's Python does not import mlic and caffe_layers from $ROOT after pip install -e"
}

step_caffe() {
  if [ -n "${CAFFE_ROOT:-}" ]; then
    say "caffe: using the user's Caffe at $CAFFE_ROOT"
    write_caffe_env "$CAFFE_ROOT"
    return
  fi
  local key prefix
  if [ "${MLIC_GPU:-0}" = 1 ]; then
    cuda_locations
    [ -f "$CUDA_LIBS/.complete" ] || { [ $CHECK = 1 ] && { pending "caffe (the cuda step comes first)"; return; }; fail "run the cuda step first"; }
    export MLIC_CUDA_ROOT=$CUDA_ROOT MLIC_CUDA_LIBS=$CUDA_LIBS
  fi
  key=$("$SETUP_DIR/build_caffe.sh" --key)
  prefix=$CACHE/caffe-$key
  if [ -f "$prefix/.complete" ]; then
    say "caffe: cached build $prefix"
  else
    [ $CHECK = 1 ] && { pending "caffe (no complete build at $prefix)"; return; }
    say "caffe: building BVLC Caffe into $prefix (CPU: about 3 minutes on 2 cores)"
    PYTHON_EXECUTABLE=$VENV/bin/python MLIC_JOBS=$JOBS LOGS=$LOGS \
      "$SETUP_DIR/build_caffe.sh" "$prefix"
  fi
  write_caffe_env "$prefix"
}

# build/caffe.env is the one place the rest of the project learns where Caffe is. In --check
# mode the Caffe is validated and a differing caffe.env is reported instead of written.
write_caffe_env() {
  local root=$1 cmake_dir bin pydir
  for cmake_dir in "$root/share/Caffe" "$root"; do
    [ -f "$cmake_dir/CaffeConfig.cmake" ] && break
  done
  [ -f "$cmake_dir/CaffeConfig.cmake" ] ||
    fail "no CaffeConfig.cmake in $root/share/Caffe or $root (CAFFE_ROOT must be a CMake-built BVLC Caffe)"
  for bin in "$root/bin/caffe" "$root/tools/caffe"; do [ -x "$bin" ] && break; done
  [ -x "$bin" ] || fail "no caffe binary in $root/bin or $root/tools"
  for pydir in "$root/python" "$root/lib/python3/dist-packages" "$root/lib/python"; do [ -f "$pydir/caffe/__init__.py" ] && break; done
  [ -f "$pydir/caffe/__init__.py" ] || fail "no pycaffe (python/caffe/__init__.py) under $root"
  local env="CAFFE_PREFIX=$root
CAFFE_CMAKE_DIR=$cmake_dir
CAFFE_BIN=$bin
CAFFE_PYTHON=$pydir"
  if [ -f "$BUILD/caffe.env" ] && [ "$(cat "$BUILD/caffe.env")" = "$env" ]; then :
  elif [ $CHECK = 1 ]; then pending "caffe (build/caffe.env does not name $root)"; return
  else mkdir -p "$BUILD"; echo "$env" >"$BUILD/caffe.env"; fi
  [ $CHECK = 1 ] && return
  # pycaffe importable from the venv (our packages are installed by the venv step).
  local site; site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  # Its last line sets OPENBLAS_CORETYPE from build/openblas.env (the openblas step) in every
  # process of the venv, before numpy or caffe loads OpenBLAS. Python reads a site folder's .pth
  # files in name order: __editable__.mlic_kd_wsd-*.pth, which makes mlic importable, comes first.
  printf '%s\nimport mlic.openblas; mlic.openblas.apply(%s)\n' "$pydir" \
    "'$BUILD'" >"$site/mlic_kd_wsd.pth"
}

# The include directory of the CUDA toolkit whose nvcc is on PATH (nvcc may be a link or a
# wrapper script), or nothing.
cuda_toolkit_include() {
  local nvcc root
  nvcc=$(command -v nvcc) || return 0
  for root in "$(dirname "$nvcc")/.." "$(dirname "$(readlink -f "$nvcc")")/.." /usr/local/cuda; do
    [ -f "$root/include/cuda_runtime.h" ] && { (cd "$root/include" && pwd); return 0; }
  done
}

# Where the CUDA toolkit of a MLIC_GPU=1 build is: MLIC_CUDA_ROOT, or the one made from the
# wheels. Sets CUDA_ROOT, CUDA_LIBRARY_WHEELS (cuDNN and NCCL for its CUDA major version) and
# CUDA_LIBS (where those are unpacked: the wheel toolkit itself, or a directory of their own).
cuda_locations() {
  local major
  if [ -n "${MLIC_CUDA_ROOT:-}" ]; then
    CUDA_ROOT=$MLIC_CUDA_ROOT
    [ -x "$CUDA_ROOT/bin/nvcc" ] || fail "MLIC_CUDA_ROOT=$CUDA_ROOT has no bin/nvcc"
    major=$("$CUDA_ROOT/bin/nvcc" --version | sed -n 's/.*release \([0-9]*\)\..*/\1/p')
    case $major in
      12) CUDA_LIBRARY_WHEELS=("${CUDA_LIBRARY_WHEELS_12[@]}") ;;
      13) CUDA_LIBRARY_WHEELS=("${CUDA_LIBRARY_WHEELS_13[@]}") ;;
      *) fail "MLIC_CUDA_ROOT=$CUDA_ROOT is CUDA '$major'; cuDNN and NCCL wheels are set for 12 and 13" ;;
    esac
    CUDA_LIBS=$CACHE/cuda-libs-$(wheel_dir_hash "${CUDA_LIBRARY_WHEELS[*]}")
  else
    CUDA_LIBRARY_WHEELS=("${CUDA_LIBRARY_WHEELS_13[@]}")
    CUDA_ROOT=$CACHE/cuda-13.0-$(wheel_dir_hash "${CUDA_TOOLKIT_WHEELS[*]} ${CUDA_LIBRARY_WHEELS[*]}")
    CUDA_LIBS=$CUDA_ROOT
  fi
}

# Downloads wheels and unpacks them into DEST (DEST/.complete marks success).
unpack_wheels() {
  local dest=$1; shift
  local work=$dest.work
  rm -rf "$work" "$dest"
  logged cuda-download "$VENV/bin/python" -m pip download --disable-pip-version-check \
    --no-deps --only-binary=:all: --dest "$work" "$@"
  logged cuda-unpack "$VENV/bin/python" "$SETUP_DIR/cuda_wheels.py" "$work" "$dest"
  rm -rf "$work"
  date -u +%FT%TZ >"$dest/.complete"
}

# MLIC_GPU=1 only: the CUDA toolkit (unless MLIC_CUDA_ROOT names one) with cuDNN and NCCL.
step_cuda() {
  if [ "${MLIC_GPU:-0}" != 1 ]; then say "cuda: not needed (CPU build; MLIC_GPU=1 for CUDA)"; return; fi
  cuda_locations
  if [ -f "$CUDA_LIBS/.complete" ]; then say "cuda: cached in $CUDA_LIBS"; return; fi
  [ $CHECK = 1 ] && { pending "cuda (none in $CUDA_LIBS)"; return; }
  [ -x "$VENV/bin/python" ] || fail "run the venv step first"
  if [ -n "${MLIC_CUDA_ROOT:-}" ]; then
    say "cuda: toolkit $CUDA_ROOT; fetching ${CUDA_LIBRARY_WHEELS[*]} into $CUDA_LIBS"
    unpack_wheels "$CUDA_LIBS" "${CUDA_LIBRARY_WHEELS[@]}"
  else
    say "cuda: fetching the CUDA 13 toolkit, cuDNN and NCCL from NVIDIA's wheels (about 1.5 GB, 2.1 GB unpacked) into $CUDA_ROOT"
    unpack_wheels "$CUDA_ROOT" "${CUDA_TOOLKIT_WHEELS[@]}" "${CUDA_LIBRARY_WHEELS[@]}"
  fi
}

step_cuda_headers() {
  if [ "${MLIC_GPU:-0}" = 1 ]; then say "cuda-headers: not needed (the cuda step's toolkit has them)"; return; fi
  local inc; inc=$(cuda_toolkit_include)
  if [ -z "$inc" ]; then
    say "cuda-headers: no nvcc on PATH; the plugin's CUDA compile check will be off"; return
  fi
  if [ -f "$inc/cublas_v2.h" ] && [ -f "$inc/curand.h" ]; then
    say "cuda-headers: cuBLAS and cuRAND headers are in the CUDA toolkit ($inc)"; return
  fi
  if [ -f "$CUDA_HEADERS/.complete" ]; then say "cuda-headers: cached in $CUDA_HEADERS"; return; fi
  [ $CHECK = 1 ] && { pending "cuda-headers (none in $CUDA_HEADERS)"; return; }
  [ -x "$VENV/bin/python" ] || fail "run the venv step first"
  say "cuda-headers: fetching ${CUDA_HEADER_WHEELS[*]} (about 520 MB, headers kept) into $CUDA_HEADERS"
  local work=$CUDA_HEADERS.work
  rm -rf "$work" "$CUDA_HEADERS"
  logged cuda-headers-download "$VENV/bin/python" -m pip download --disable-pip-version-check \
    --no-deps --only-binary=:all: --dest "$work" "${CUDA_HEADER_WHEELS[@]}"
  logged cuda-headers-unpack "$VENV/bin/python" - "$work" "$CUDA_HEADERS" <<'PY'
import glob, os, sys, zipfile
work, dest = sys.argv[1:]
prefix = 'nvidia/cu13/include/'
for wheel in sorted(glob.glob(os.path.join(work, '*.whl'))):
    with zipfile.ZipFile(wheel) as zf:
        members = [m for m in zf.infolist() if m.filename.startswith(prefix) and not m.is_dir()]
        if not members:
            sys.exit('%s has no %s' % (wheel, prefix))
        for m in members:
            m.filename = m.filename[len(prefix):]
            zf.extract(m, os.path.join(dest, 'include'))
for header in ('cublas_v2.h', 'curand.h'):
    if not os.path.isfile(os.path.join(dest, 'include', header)):
        sys.exit('no %s in the wheels' % header)
PY
  rm -rf "$work"
  date -u +%FT%TZ >"$CUDA_HEADERS/.complete"
}

step_plugin() {
  [ -f "$BUILD/caffe.env" ] || { [ $CHECK = 1 ] && { pending "plugin (no build/caffe.env)"; return; }; fail "run the caffe step first"; }
  # shellcheck disable=SC1091
  . "$BUILD/caffe.env"
  local dir=$BUILD/plugin headers=
  [ -f "$CUDA_HEADERS/.complete" ] && headers=$CUDA_HEADERS/include
  local args=(-DCMAKE_BUILD_TYPE=Release -DCaffe_DIR="$CAFFE_CMAKE_DIR"
              -DPython3_EXECUTABLE="$VENV/bin/python" -DMLIC_CUDA_LIBRARY_INCLUDE_DIR="$headers")
  # The kernels with the toolkit Caffe was built with, for the same architectures.
  if [ "${MLIC_GPU:-0}" = 1 ] && [ -z "${CAFFE_ROOT:-}" ]; then
    cuda_locations
    args+=(-DCMAKE_CUDA_COMPILER="$CUDA_ROOT/bin/nvcc" -DCUDAToolkit_ROOT="$CUDA_ROOT")
    [ -n "${MLIC_CUDA_ARCH:-}" ] && args+=("-DMLIC_CUDA_ARCHS_WANTED=${MLIC_CUDA_ARCH// /;}")
  fi
  # Configure again when the arguments change (another Caffe, the CUDA headers arrived).
  local configured=0
  [ -f "$dir/CMakeCache.txt" ] && [ "$(cat "$dir/.configure-args" 2>/dev/null)" = "${args[*]}" ] && configured=1
  if [ $CHECK = 1 ]; then
    if [ $configured = 1 ] && make -C "$dir" -q all >/dev/null 2>&1; then
      say "plugin: $dir up to date"
    elif [ $configured = 1 ] && [ -z "$(make -C "$dir" -n all 2>/dev/null | grep -E '(c\+\+|g\+\+|nvcc|/ld|protoc) ')" ]; then
      say "plugin: $dir up to date"
    else
      pending plugin
    fi
    return
  fi
  if [ $configured = 0 ]; then
    say "plugin: configuring $dir against $CAFFE_CMAKE_DIR"
    logged plugin-configure cmake -S "$ROOT" -B "$dir" "${args[@]}"
    echo "${args[*]}" >"$dir/.configure-args"
  fi
  say "plugin: CUDA $(sed -n 's/^MLIC_CUDA_STATUS:INTERNAL=//p' "$dir/CMakeCache.txt")"
  say "plugin: building (log: $LOGS/plugin-build.log)"
  logged plugin-build cmake --build "$dir" -j "$JOBS"
}

step_openblas() {
  [ -f "$BUILD/caffe.env" ] || { [ $CHECK = 1 ] && { pending "openblas (no build/caffe.env)"; return; }; fail "run the caffe step first"; }
  # shellcheck disable=SC1091
  . "$BUILD/caffe.env"
  local said
  if [ $CHECK = 1 ]; then
    said=$("$VENV/bin/python" "$SETUP_DIR/openblas_core.py" --check "$CAFFE_BIN" "$BUILD/openblas.env") ||
      { pending "openblas ($said)"; return; }
  else
    said=$("$VENV/bin/python" "$SETUP_DIR/openblas_core.py" "$CAFFE_BIN" "$BUILD/openblas.env")
  fi
  say "openblas: $said"
}

steps=()
for a in "$@"; do
  case $a in
    --check) CHECK=1 ;;
    system|venv|cuda|caffe|cuda-headers|plugin|openblas) steps+=("$a") ;;
    all) steps+=(system venv cuda caffe cuda-headers plugin openblas) ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) fail "unknown argument '$a' (see --help)" ;;
  esac
done
[ ${#steps[@]} = 0 ] && steps=(system venv cuda caffe cuda-headers plugin openblas)
for s in "${steps[@]}"; do "step_${s//-/_}"; done
if [ $CHECK = 1 ]; then
  [ ${#PENDING[@]} = 0 ] && { say "setup: nothing to do"; exit 0; }
  say "setup: ${#PENDING[@]} step(s) need work"; exit 1
fi
