#!/usr/bin/env bash
# One command that proves the GPU side, on the first machine with an NVIDIA GPU:
#   1. builds Caffe (CUDA, cuDNN, NCCL) and our plugin for this GPU's architecture only
#   2. runs every layer's gradient checks, on the CPU and on the GPU (ctest)
#   3. runs tests/gpu: every layer of ours and every small net forward and backward on the GPU
#      against the CPU, and tools/train.py on 1 GPU (and 2 where present)
#   4. times forward+backward of the full-size teacher, stage 1 and stage 2 nets with cuDNN
#      and with Caffe's own engine, and our layers' share of the time
#   5. measures their GPU memory at batch 1, 2 and 4 beside tools/net_memory.py's estimate
# and prints one table. Without a GPU it says so and exits 2; a failed part makes it exit 1.
#
# Environment: GPU_CHECK_DIR (logs and results; default build/gpu_check),
#   GPU_CHECK_SKIP_BUILD=1 (use the build already there), GPU_CHECK_ITERATIONS (timed passes, 5).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${GPU_CHECK_DIR:-$ROOT/build/gpu_check}
ITERATIONS=${GPU_CHECK_ITERATIONS:-5}
REPORT=(python3 "$ROOT/tools/gpu_check_report.py")

if ! gpus=$("${REPORT[@]}" gpus); then
  echo "gpu_check: no GPU to check on this machine (see above);" \
    "run it where nvidia-smi lists one" >&2
  exit 2
fi
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: >"$RESULTS"
count=$(echo "$gpus" | wc -l)
read -r _ arch name memory <<<"$(echo "$gpus" | head -n 1)"
echo "gpu_check: $count GPU(s); GPU 0 is ${name//_/ } (sm_$arch, $memory MiB); logs in $OUT"
"${REPORT[@]}" add "$RESULTS" machine "GPU 0" \
  "${name//_/ }, sm_$arch, $memory MiB, $count GPU(s), $(date -u +%Y-%m-%d)" 1

timed() {  # timed NAME LOG COMMAND...: runs it with its output in LOG; sets SECONDS_TAKEN and OK
  local name=$1 log=$2; shift 2
  echo "gpu_check: $name (log: $log)"
  local start=$SECONDS
  if "$@" >"$log" 2>&1; then OK=1; else OK=0; fi
  SECONDS_TAKEN=$((SECONDS - start))
}

# 1. The build, for this architecture only.
if [ "${GPU_CHECK_SKIP_BUILD:-0}" != 1 ]; then
  timed build "$OUT/build.log" env MLIC_GPU=1 MLIC_CUDA_ARCH="$arch" bash tools/setup/setup.sh all
  "${REPORT[@]}" add "$RESULTS" build "Caffe + plugin for sm_$arch" "${SECONDS_TAKEN} s" "$OK"
  if [ "$OK" != 1 ]; then
    tail -n 30 "$OUT/build.log" >&2
    "${REPORT[@]}" summary "$RESULTS"
    exit 1
  fi
fi
PY=$ROOT/.venv/bin/python

# 2. Gradient checks.
timed ctest "$OUT/ctest.log" ctest --test-dir build/plugin --output-on-failure -j "$(nproc)"
"${REPORT[@]}" ctest "$RESULTS" "$OUT/ctest.log" "$OK"

# 3. GPU against CPU, and the trainer.
timed "pytest tests/gpu" "$OUT/pytest.log" "$PY" -m pytest tests/gpu -q -p no:cacheprovider \
  --junitxml="$OUT/gpu_tests.xml"
if [ -f "$OUT/gpu_tests.xml" ]; then
  "${REPORT[@]}" pytest "$RESULTS" "$OUT/gpu_tests.xml"
else
  "${REPORT[@]}" add "$RESULTS" "pytest tests/gpu" "did not run" "see $OUT/pytest.log" 0
fi

# 4 and 5. Speed (batch 4, both engines) and memory (batch 1, 2, 4; each in a fresh process:
# Caffe never gives GPU memory back).
speed=() memory=()
for net in prototxt/wsddn/train.prototxt prototxt/kd/stage1_train.prototxt \
           prototxt/kd/stage2_train.prototxt; do
  tag=$(basename "$(dirname "$net")")_$(basename "$net" .prototxt)
  for run in "4 CUDNN" "4 CAFFE" "1 CUDNN" "2 CUDNN"; do
    read -r batch engine <<<"$run"
    json=$OUT/time_${tag}_${engine}_$batch.json
    rm -f "$json"
    timed "$net batch $batch $engine" "$OUT/time_${tag}_${engine}_$batch.log" \
      "$PY" tools/net_time.py "$net" --batch "$batch" --engine "$engine" --gpu 0 \
      --iterations "$ITERATIONS" --json "$json"
    if [ "$OK" != 1 ]; then
      "${REPORT[@]}" add "$RESULTS" speed "$net batch $batch $engine" \
        "failed: see $OUT/time_${tag}_${engine}_$batch.log" 0
      continue
    fi
    [ "$batch" = 4 ] && speed+=("$json")
    [ "$engine" = CUDNN ] && memory+=("$json")
  done
done
[ ${#speed[@]} -eq 0 ] || "${REPORT[@]}" speed "$RESULTS" "${speed[@]}"
if [ ${#memory[@]} -gt 0 ] && ! "$PY" tools/gpu_check_report.py memory "$RESULTS" "${memory[@]}" \
    >"$OUT/memory.log" 2>&1; then
  "${REPORT[@]}" add "$RESULTS" "GPU memory" "estimates" "failed: see $OUT/memory.log" 0
fi

echo
"${REPORT[@]}" summary "$RESULTS"
