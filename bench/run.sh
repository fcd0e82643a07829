#!/usr/bin/env bash
# Every figure of docs/performance.md on this machine, printed and kept as JSON in OUT:
#   1. the node's pipeline per stage, publishing included (`coin_sorter bench pipeline`)
#   2. resident memory over MEMORY_FRAMES frames (the same command, MEMORY_MODEL)
#   3. a running coin_sorter_node over DDS at 10 Hz, 30 Hz and closed loop (`bench e2e`)
#   4. the same node at 10 Hz for LONG_SECONDS: sort commands lost, its resident memory
#   5. bench/compare.sh: the node against the Python reference
# Runs itself inside scripts/netns.sh. Environment: MODEL (models/coin_resnet50.pt),
# MEMORY_MODEL (MODEL), BAG (../shared/data/bags/bgr8-mcap), THREADS (2), FRAMES (300),
# MEMORY_FRAMES (10000), E2E_SECONDS (60), LONG_SECONDS (600), OUT (out/bench).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/prepare.sh
MODEL=${MODEL:-models/coin_resnet50.pt}
MEMORY_MODEL=${MEMORY_MODEL:-$MODEL}
BAG=${BAG:-../shared/data/bags/bgr8-mcap}
THREADS=${THREADS:-2}
OUT=${OUT:-out/bench}
mkdir -p "$OUT"
# The node's defaults, one command per detection (every frame of the bag is another photo),
# and the thread count the Python reference gets too.
printf '/coin_sorter:\n  ros__parameters:\n    tracking: false\n    num_threads: %s\n' \
  "$THREADS" > "$OUT/params.yaml"
CS=target/release/coin_sorter

echo "== 1. pipeline per stage, publishing included ($MODEL)"
"$CS" bench pipeline --bag "$BAG" --model "$MODEL" --params-file "$OUT/params.yaml" \
  --frames "${FRAMES:-300}" --publish --json "$OUT/pipeline.json"

echo "== 2. resident memory over ${MEMORY_FRAMES:-10000} frames ($MEMORY_MODEL)"
"$CS" bench pipeline --bag "$BAG" --model "$MEMORY_MODEL" --params-file "$OUT/params.yaml" \
  --frames "${MEMORY_FRAMES:-10000}" --batch 0 --memory-every 1000 --json "$OUT/memory.json"

pid=
cleanup() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" || true; fi; }
trap cleanup EXIT
node() {
  target/release/coin_sorter_node --ros-args --params-file "$OUT/params.yaml" \
    -p model_path:="$MODEL" > "$OUT/node-$1.log" 2>&1 &
  pid=$!
}
E2E=("$CS" bench e2e --bag "$BAG" --node /coin_sorter)

echo "== 3. coin_sorter_node over DDS"
node e2e
for rate in 10 30 0; do
  "${E2E[@]}" --rate "$rate" --duration "${E2E_SECONDS:-60}" --pid "$pid" \
    --json "$OUT/e2e-$rate.json"
done
cleanup; pid=

echo "== 4. 10 Hz for ${LONG_SECONDS:-600} s"
node long
"${E2E[@]}" --rate 10 --duration "${LONG_SECONDS:-600}" --pid "$pid" --json "$OUT/e2e-long.json"
cleanup; pid=

echo "== 5. against the Python reference"
MODEL="$MODEL" BAG="$BAG" THREADS="$THREADS" OUT="$OUT" bench/compare.sh
