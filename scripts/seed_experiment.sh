#!/usr/bin/env bash
# The seed experiment of docs/seed-experiment.md, end to end on the shared data:
#   1. stage 1 on coins-mobile (split by photo), audited on its held-out photos;
#   2. that model on coins-photos crops (other phones, other backgrounds): the domain shift;
#   3. stage 2 on the three coins-photos classes with the most labelled coins, split by photo,
#      scored before and after on the same held-out photos;
#   4. the audit on stage 2, and on a stage 2 trained on a split by crop (a planted leak).
# Every number lands in out/seed/ (reports, curves, plots). No DDS: runs on the plain network.
# Sizes are set for two CPU cores (about 40 minutes); on a GPU machine use INPUT=224.
# Usage: scripts/seed_experiment.sh   (after scripts/setup.sh; env vars below override)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
OUT=${OUT:-out/seed}
INPUT=${INPUT:-112}          # model input side, px
EPOCHS1=${EPOCHS1:-10}       # stage-1 epochs
EPOCHS2=${EPOCHS2:-15}       # stage-2 epochs
FREEZE=${FREEZE:-layer3}     # stage 2 freezes the backbone up to and including this part
CLASSES=${CLASSES:-20c,1e,5c} # the three coins-photos classes with the most labelled coins
SEED=${SEED:-0}
CS=${CS:-target/release/coin_sorter}  # a copy keeps the run safe from rebuilds
[ -x "$CS" ] || { echo "run scripts/setup.sh first ($CS is missing)" >&2; exit 1; }

rm -rf "$OUT"
mkdir -p "$OUT"
log() { echo "== $*"; }

log "1. stage 1 on coins-mobile at ${INPUT}px, ${EPOCHS1} epochs (held-out photos never seen)"
$CS dataset split --data "$DATA/coins-mobile" --out "$OUT/mobile" --test-fraction 0.2 \
  --seed "$SEED"
$CS train --stage 1 --data "$OUT/mobile/train" --out "$OUT/stage1/coin.pt" \
  --input-size "$INPUT" --epochs "$EPOCHS1" --seed "$SEED"
$CS audit --model "$OUT/stage1/coin.pt" --train "$OUT/mobile/train" --test "$OUT/mobile/test" \
  --out "$OUT/audit-stage1" --control-epochs 1 --seed "$SEED"

log "2. domain shift: the stage-1 model on every coins-photos crop"
$CS dataset crops --labelme "$DATA/coins-photos" --out "$OUT/photos"
$CS audit --model "$OUT/stage1/coin.pt" --train "$OUT/mobile/train" --test "$OUT/photos" \
  --out "$OUT/audit-shift" --control-epochs 0

log "3. stage 2 on $CLASSES of coins-photos, split by photo"
$CS dataset split --data "$OUT/photos" --out "$OUT/target" --classes "$CLASSES" \
  --test-fraction 0.4 --seed "$SEED"
$CS audit --model "$OUT/stage1/coin.pt" --train "$OUT/mobile/train" --test "$OUT/target/test" \
  --out "$OUT/audit-before" --control-epochs 0
$CS train --stage 2 --from "$OUT/stage1/coin.pt" --data "$OUT/target/train" \
  --out "$OUT/stage2/coin.pt" --input-size "$INPUT" --epochs "$EPOCHS2" --batch-size 8 \
  --lr 0.0005 --freeze-until "$FREEZE" --val-fraction 0.25 --seed "$SEED"

log "4. audits: stage 2 on the clean split, and on a split by crop (planted leak)"
$CS audit --model "$OUT/stage2/coin.pt" --train "$OUT/target/train" --test "$OUT/target/test" \
  --out "$OUT/audit-stage2" --control-epochs 5 --control-batch-size 8 --seed "$SEED"
$CS dataset split --data "$OUT/photos" --out "$OUT/leak" --classes "$CLASSES" \
  --test-fraction 0.4 --by crop --seed "$SEED"
$CS train --stage 2 --from "$OUT/stage1/coin.pt" --data "$OUT/leak/train" \
  --out "$OUT/stage2-leak/coin.pt" --input-size "$INPUT" --epochs "$EPOCHS2" --batch-size 8 \
  --lr 0.0005 --freeze-until "$FREEZE" --val-fraction 0.25 --seed "$SEED"
$CS audit --model "$OUT/stage2-leak/coin.pt" --train "$OUT/leak/train" --test "$OUT/leak/test" \
  --out "$OUT/audit-leak" --control-epochs 5 --control-batch-size 8 --seed "$SEED"

log "done: reports in $OUT/audit-*/audit.md, training reports in $OUT/stage*/coin.report.md"
