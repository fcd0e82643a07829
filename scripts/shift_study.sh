#!/usr/bin/env bash
# The shift monitor measurements of docs/shift-monitor.md, on the models and crop sets of the
# seed experiment (run scripts/seed_experiment.sh first):
#   1. the stage-1 model (coins-mobile) gets monitor statistics from its own training split
#      and is scored on held-out coins-mobile photos against every coins-photos crop;
#   2. the stage-2 model (coins-photos target classes) gets statistics from the target
#      training split and is scored on held-out target photos against coins-mobile.
# Copies of the models are changed, not the seed experiment's own. No DDS.
# Usage: scripts/shift_study.sh   (env vars below override)
set -euo pipefail
cd "$(dirname "$0")/.."
SEED_OUT=${SEED_OUT:-out/seed}
OUT=${OUT:-out/shift}
CS=${CS:-target/release/coin_sorter}
DEVICE=${DEVICE:-auto}
[ -x "$CS" ] || { echo "run scripts/setup.sh first ($CS is missing)" >&2; exit 1; }
[ -f "$SEED_OUT/stage2/coin.pt" ] || {
  echo "run scripts/seed_experiment.sh first ($SEED_OUT/stage2/coin.pt is missing)" >&2; exit 1; }

rm -rf "$OUT"
mkdir -p "$OUT"
cp -r "$SEED_OUT/stage1" "$OUT/stage1"
cp -r "$SEED_OUT/stage2" "$OUT/stage2"
echo "== 1. stage 1: held-out coins-mobile vs coins-photos"
# The split the stage-1 run used: validation fraction 0.2, seed 0.
$CS monitor fit --model "$OUT/stage1/coin.pt" --data "$SEED_OUT/mobile/train" \
  --val-fraction 0.2 --seed 0 --device "$DEVICE"
$CS monitor study --model "$OUT/stage1/coin.pt" --in-domain "$SEED_OUT/mobile/test" \
  --shifted "$SEED_OUT/photos" --out "$OUT/study-stage1" --device "$DEVICE"
echo "== 2. stage 2: held-out target photos vs coins-mobile"
$CS monitor fit --model "$OUT/stage2/coin.pt" --data "$SEED_OUT/target/train" \
  --val-fraction 0.25 --seed 0 --device "$DEVICE"
$CS monitor study --model "$OUT/stage2/coin.pt" --in-domain "$SEED_OUT/target/test" \
  --shifted "$SEED_OUT/mobile/test" --out "$OUT/study-stage2" --device "$DEVICE"
echo "done: $OUT/study-stage1/shift-study.md and $OUT/study-stage2/shift-study.md"
