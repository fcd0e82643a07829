#!/usr/bin/env bash
# coin_sorter_node against the Python reference users would write (bench/reference): the same
# bag frames, model, thread count and job (tracking:=false and shift_score:=off, which the
# reference does not do), each measured from outside by `coin_sorter bench e2e` in closed loop
# (the next frame once the last is answered: per-frame latency without queueing, and the most
# frames per second one stream sustains). Prints both and the ratios. Runs itself inside
# scripts/netns.sh. Environment: MODEL, BAG, THREADS, SECONDS_EACH, OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/prepare.sh
MODEL=${MODEL:-models/coin_resnet50.pt}
BAG=${BAG:-../shared/data/bags/bgr8-mcap}
THREADS=${THREADS:-2}
SECONDS_EACH=${SECONDS_EACH:-60}
OUT=${OUT:-out/bench}
mkdir -p "$OUT"
BENCH=(target/release/coin_sorter bench e2e --bag "$BAG" --rate 0 --duration "$SECONDS_EACH")
pid=
cleanup() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" || true; fi; }
trap cleanup EXIT

echo "== coin_sorter_node (Rust), $THREADS threads"
target/release/coin_sorter_node --ros-args -p model_path:="$MODEL" -p tracking:=false \
  -p shift_score:=off -p num_threads:="$THREADS" > "$OUT/rust-node.log" 2>&1 &
pid=$!
"${BENCH[@]}" --node /coin_sorter --pid "$pid" --json "$OUT/rust.json"
cleanup; pid=

echo "== Python reference (OpenCV-python, PyTorch, Cyclone DDS Python), $THREADS threads"
.venv-bench/bin/python bench/reference/sorter_reference.py --model "$MODEL" \
  --threads "$THREADS" --stats "$OUT/python-stages.json" > "$OUT/python-node.log" 2>&1 &
pid=$!
"${BENCH[@]}" --node /coin_sorter_reference --pid "$pid" --json "$OUT/python.json"
cleanup; pid=

.venv-bench/bin/python - "$OUT" <<'PY'
import json, statistics, sys
out = sys.argv[1]
r, p = (json.load(open(f"{out}/{n}.json")) for n in ("rust", "python"))
stages = json.load(open(f"{out}/python-stages.json"))
print("python reference stages (ms, p50):",
      ", ".join(f"{k} {1e3 * statistics.median(v):.1f}" for k, v in stages.items() if v))
for name, key in (("throughput (frames/s)", "answered_fps"),):
    print(f"{name}: rust {r[key]:.2f}, python {p[key]:.2f}, ratio {r[key] / p[key]:.2f}x "
          "(target at least 1.5x)")
lr, lp = r["latency"]["p50_ms"], p["latency"]["p50_ms"]
print(f"per-frame latency p50 (ms): rust {lr:.1f}, python {lp:.1f}, ratio {lr / lp:.2f} "
      "(target at most 0.7)")
PY
