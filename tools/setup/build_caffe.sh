#!/usr/bin/env bash
# Builds stock BVLC Caffe from Debian's source package into PREFIX.
#   build_caffe.sh --key    print the cache key: a hash of everything that changes the build
#   build_caffe.sh --cmake-flags   print the flags Caffe's CMake gets, one per line
#   build_caffe.sh PREFIX   fetch, patch, build and install; PREFIX/.complete marks success
#   build_caffe.sh --source DIR   only fetch and patch, into DIR/src
# Environment: PYTHON_EXECUTABLE (the venv's python, for NumPy headers), MLIC_JOBS, LOGS,
#   MLIC_GPU=1  build with CUDA, cuDNN and NCCL; the key then starts with "cuda-". The toolkit
#               (with cuBLAS and cuRAND): MLIC_CUDA_ROOT, else nvcc on PATH or in /usr/local/cuda;
#               cuDNN and NCCL: MLIC_CUDA_LIBS, else the toolkit, else /usr.
#   MLIC_CUDA_ARCH="80 90"  only these GPU architectures; MLIC_CUDNN=0, MLIC_NCCL=0  without them
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE_PACKAGE=caffe
SOURCE_VERSION=1.0.0+git20180821.99bd997-8
SOURCE_SUITE=bullseye
# Python layers and OpenBLAS. OpenCV, LevelDB and LMDB are off: our data layer decodes images
# in Python (OpenCV from PyPI), and dropping them shortens a fresh install.
CMAKE_FLAGS=(
  -DCMAKE_BUILD_TYPE=Release -DBLAS=Open
  -DBUILD_python=ON -DBUILD_python_layer=ON -Dpython_version=3
  -DUSE_OPENCV=OFF -DUSE_LEVELDB=OFF -DUSE_LMDB=OFF -DUSE_HDF5=ON
  -DBUILD_docs=OFF -DBUILD_matlab=OFF -DBUILD_SHARED_LIBS=ON
)
# Volta to Hopper; the newest also as PTX, which the driver compiles for later GPUs. Those
# the toolkit no longer supports are left out (CUDA 13 dropped Volta). MLIC_CUDA_ARCH narrows
# the list to the GPUs at hand ("90", "80 90"), which shortens the build several times.
CUDA_ARCHS_WANTED=(70 75 80 86 89 90)
if [ -n "${MLIC_CUDA_ARCH:-}" ]; then read -r -a CUDA_ARCHS_WANTED <<<"$MLIC_CUDA_ARCH"; fi

# The first of FILES that exists, or nothing.
first_file() { local f; for f in "$@"; do [ -f "$f" ] && { echo "$f"; return 0; }; done; return 0; }

# The CUDA build: Caffe's CMake (FindCUDA) gets an explicit architecture list, since its own
# lists ("All", "Auto") name architectures that current nvcc rejects, and the cuDNN and NCCL it
# links by path. Sets CMAKE_FLAGS and NVCC_VERSION (part of the cache key).
add_cuda_flags() {
  local nvcc root= dir supported archs=() a libs
  if [ -n "${MLIC_CUDA_ROOT:-}" ]; then nvcc=$MLIC_CUDA_ROOT/bin/nvcc
  else nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc); fi
  [ -x "$nvcc" ] || { echo "build_caffe.sh: MLIC_GPU=1 but no nvcc in MLIC_CUDA_ROOT, on PATH or in /usr/local/cuda/bin" >&2; exit 1; }
  # The toolkit root holds include/cuda_runtime.h; nvcc may be a link or a wrapper script.
  for dir in "$(dirname "$nvcc")/.." "$(dirname "$(readlink -f "$nvcc")")/.." /usr/local/cuda; do
    if [ -f "$dir/include/cuda_runtime.h" ]; then root=$(cd "$dir" && pwd); break; fi
  done
  [ -n "$root" ] || { echo "build_caffe.sh: no include/cuda_runtime.h in the CUDA toolkit of $nvcc" >&2; exit 1; }
  supported=$("$nvcc" --list-gpu-arch)
  for a in "${CUDA_ARCHS_WANTED[@]}"; do
    if grep -qx "compute_$a" <<<"$supported"; then archs+=("$a"); fi
  done
  [ ${#archs[@]} -gt 0 ] || { echo "build_caffe.sh: $nvcc supports none of ${CUDA_ARCHS_WANTED[*]}" >&2; exit 1; }
  # cuDNN and NCCL: in MLIC_CUDA_LIBS (setup.sh's wheels), the toolkit, or the system.
  # BVLC Caffe's cuDNN layers were written for cuDNN 7; caffe_patches/0003 moves them to the
  # API of cuDNN 8 and 9, so any cuDNN from 7 on is used. MLIC_CUDNN=0 leaves it out.
  libs=${MLIC_CUDA_LIBS:-$root}
  local cudnn=(-DUSE_CUDNN=OFF) nccl=(-DUSE_NCCL=OFF) h lib major
  if [ "${MLIC_CUDNN:-1}" != 0 ]; then
    h=$(first_file "$libs/include/cudnn_version.h" "$libs/include/cudnn.h" \
                   /usr/include/cudnn_version.h /usr/include/cudnn.h)
    lib=$(first_file "$libs/lib/libcudnn.so" "$libs/lib64/libcudnn.so" /usr/lib/x86_64-linux-gnu/libcudnn.so)
    [ -n "$h" ] && [ -n "$lib" ] ||
      { echo "build_caffe.sh: no cuDNN (cudnn.h and libcudnn.so) in $libs or /usr; MLIC_CUDNN=0 builds without it" >&2; exit 1; }
    major=$(sed -n 's/^#define CUDNN_MAJOR *\([0-9]*\).*/\1/p' "$h" | head -n1)
    [ "${major:-0}" -ge 7 ] ||
      { echo "build_caffe.sh: cuDNN ${major:-?} in $h; Caffe needs cuDNN 7 or newer (MLIC_CUDNN=0 builds without it)" >&2; exit 1; }
    cudnn=(-DUSE_CUDNN=ON "-DCUDNN_INCLUDE=$(dirname "$h")" "-DCUDNN_LIBRARY=$lib")
  fi
  if [ "${MLIC_NCCL:-1}" != 0 ]; then
    h=$(first_file "$libs/include/nccl.h" /usr/include/nccl.h)
    lib=$(first_file "$libs/lib/libnccl.so" "$libs/lib64/libnccl.so" /usr/lib/x86_64-linux-gnu/libnccl.so)
    [ -n "$h" ] && [ -n "$lib" ] ||
      { echo "build_caffe.sh: no NCCL (nccl.h and libnccl.so) in $libs or /usr; MLIC_NCCL=0 builds without it" >&2; exit 1; }
    nccl=(-DUSE_NCCL=ON "-DNCCL_INCLUDE_DIR=$(dirname "$h")" "-DNCCL_LIBRARIES=$lib")
  fi
  local IFS=';'
  CMAKE_FLAGS+=(-DCPU_ONLY=OFF "${cudnn[@]}" "${nccl[@]}" "-DCUDA_TOOLKIT_ROOT_DIR=$root"
                -DCUDA_ARCH_NAME=Manual "-DCUDA_ARCH_BIN=${archs[*]}" "-DCUDA_ARCH_PTX=${archs[-1]}")
  NVCC_VERSION=$("$nvcc" --version | tail -n1)
}
NVCC_VERSION=
if [ "${MLIC_GPU:-0}" = 1 ]; then add_cuda_flags; else CMAKE_FLAGS+=(-DCPU_ONLY=ON -DUSE_CUDNN=OFF); fi

key() {
  {
    echo "$SOURCE_PACKAGE $SOURCE_VERSION $SOURCE_SUITE ${CMAKE_FLAGS[*]}"
    cat "$HERE/build_caffe.sh" "$HERE"/caffe_patches/*.patch
    /usr/bin/python3 --version 2>&1
    grep -i '^numpy' "$HERE/../../requirements.txt"
    dpkg-query -W libprotobuf-dev libboost-python-dev libhdf5-dev libopenblas-dev \
      libgoogle-glog-dev gcc 2>/dev/null
    echo "$NVCC_VERSION"
    # The cuDNN and NCCL versions (their paths are in the flags, but not always their versions).
    for h in "${CMAKE_FLAGS[@]}"; do
      case $h in -DCUDNN_INCLUDE=*|-DNCCL_INCLUDE_DIR=*)
        grep -hE '^#define (CUDNN|NCCL)_(MAJOR|MINOR|PATCH)' "${h#*=}"/cudnn_version.h "${h#*=}"/cudnn.h "${h#*=}"/nccl.h 2>/dev/null;;
      esac
    done
  } | sha256sum | cut -c1-16
}

if [ "${1:-}" = --cmake-flags ]; then printf '%s\n' "${CMAKE_FLAGS[@]}"; exit 0; fi
if [ "${1:-}" = --key ]; then echo "$([ "${MLIC_GPU:-0}" = 1 ] && echo cuda-)$(key)"; exit 0; fi
PREFIX=${1:?usage: build_caffe.sh --key | PREFIX}
SOURCE_DIR=
if [ "$PREFIX" = --source ]; then SOURCE_DIR=${2:?usage: build_caffe.sh --source DIR}; PREFIX=$SOURCE_DIR; fi
LOGS=${LOGS:-$PREFIX.logs}
JOBS=${MLIC_JOBS:-$(nproc)}
mkdir -p "$LOGS" "$(dirname "$PREFIX")"

exec 3>&1
stage() {
  local name=$1; shift
  local log=$LOGS/caffe-$name.log
  printf '    caffe %-10s ' "$name"
  local t0=$SECONDS
  if ! "$@" >"$log" 2>&1; then
    printf 'FAILED\nsetup: Caffe step "%s" failed; full log: %s\n--- last lines ---\n' "$name" "$log" >&2
    tail -n 40 "$log" >&2
    exit 1
  fi
  printf 'done (%ds)\n' $((SECONDS - t0))
}

# apt's source machinery, pointed at the mirror this machine's own apt sources name, with
# private lists so the system's apt configuration is untouched.
fetch_source() {
  local uri
  uri=$(grep -hoE '^(URIs:|deb) +[^ ]+' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null |
        awk '{print ($1=="deb") ? $2 : $2}' | grep -v security | head -n1)
  [ -n "$uri" ] || { echo "no Debian mirror found in /etc/apt/sources.list*"; return 1; }
  mkdir -p "$WORK/apt/parts" "$WORK/apt/lists/partial" "$WORK/apt/cache"
  printf 'Types: deb-src\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$uri" "$SOURCE_SUITE" >"$WORK/apt/parts/caffe-src.sources"
  local opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$WORK/apt/parts"
              -o "Dir::State::Lists=$WORK/apt/lists" -o "Dir::Cache=$WORK/apt/cache"
              -o APT::Sandbox::User=root)
  apt-get "${opts[@]}" update
  (cd "$WORK" && apt-get "${opts[@]}" source --download-only "$SOURCE_PACKAGE=$SOURCE_VERSION")
}

unpack_and_patch() {
  # dpkg-source applies Debian's own patch series; ours go on top.
  (cd "$WORK" && dpkg-source --no-check -x "${SOURCE_PACKAGE}_${SOURCE_VERSION#*:}.dsc" src)
  local p
  for p in "$HERE"/caffe_patches/*.patch; do
    echo "applying $(basename "$p")"
    patch -d "$WORK/src" -p1 --forward <"$p"
  done
}

configure() {
  cmake -S "$WORK/src" -B "$WORK/build" "${CMAKE_FLAGS[@]}" \
    -DCMAKE_INSTALL_PREFIX="$STAGING" \
    ${PYTHON_EXECUTABLE:+-DPYTHON_EXECUTABLE="$PYTHON_EXECUTABLE"}
}

# make's output goes to its own log; a line of progress every 20 s goes to the terminal (fd 3,
# saved before stage() sends the step's own output to the step log).
compile() {
  local log=$LOGS/caffe-make.log
  make -C "$WORK/build" -j "$JOBS" all pycaffe >"$log" 2>&1 &
  local pid=$!
  while kill -0 $pid 2>/dev/null; do
    sleep 20
    kill -0 $pid 2>/dev/null &&
      printf '[%s] ' "$(grep -oE '^\[ *[0-9]+%\]' "$log" | tail -n1 | tr -d '[] ')" >&3
  done
  if ! wait $pid; then
    echo "make failed; full output: $log"
    tail -n 60 "$log"
    return 1
  fi
}

install_prefix() {
  make -C "$WORK/build" install
  ls "$STAGING"/lib/python3/dist-packages/caffe/_caffe*.so
  test -x "$STAGING/bin/caffe"
  test -f "$STAGING/share/Caffe/CaffeConfig.cmake"
  # Caffe's CMake quietly falls back to a CPU build when it does not find CUDA.
  if [ "${MLIC_GPU:-0}" = 1 ]; then grep -q 'Caffe_HAVE_CUDA TRUE' "$STAGING/share/Caffe/CaffeConfig.cmake"; fi
}

# --source DIR: Debian's source with our patches in DIR/src, nothing built (tests read it).
if [ -n "$SOURCE_DIR" ]; then
  WORK=$SOURCE_DIR
  rm -rf "$WORK" && mkdir -p "$WORK"
  stage fetch fetch_source
  stage unpack unpack_and_patch
  exit 0
fi

WORK=$PREFIX.work
STAGING=$PREFIX  # CMake bakes the install path into RPATHs and configs: install in place
rm -rf "$WORK" "$PREFIX"
mkdir -p "$WORK"
stage fetch fetch_source
stage unpack unpack_and_patch
stage configure configure
stage compile compile
stage install install_prefix
rm -rf "$WORK"
date -u +%FT%TZ >"$PREFIX/.complete"
echo "    caffe installed in $PREFIX"
