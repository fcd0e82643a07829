#!/usr/bin/env bash
# The GPU check of docs/performance.md, in two steps:
#   bench/gpu.sh bundle   here: out/gpu-bundle/ with the release `coin_sorter` binary, the
#                         shared libraries it needs other than libtorch and glibc (OpenCV core
#                         and imgproc and theirs), the model and one bag of the shared data
#   bench/gpu.sh run      on the device machine (the bundle carried there): the pipeline
#                         benchmark on CUDA against that machine's own torch 2.11 libraries
#                         (TORCH_LIB, default: the lib folder of its Python torch); on a
#                         machine without CUDA the same run falls back to the CPU (logged once)
# Environment: MODEL (models/coin_resnet50.pt), BAG (../shared/data/bags/bgr8-mcap),
# FRAMES (300), OUT (out/gpu-bundle).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu-bundle}
case "${1:-}" in
  bundle)
    MODEL=${MODEL:-models/coin_resnet50.pt}
    BAG=${BAG:-../shared/data/bags/bgr8-mcap}
    rm -rf "$OUT.tmp" && mkdir -p "$OUT.tmp/bin" "$OUT.tmp/lib" "$OUT.tmp/bag"
    # Stripped: the line tables of a release build triple its size.
    strip -o "$OUT.tmp/bin/coin_sorter" target/release/coin_sorter
    ldd target/release/coin_sorter | awk '/=> \// {print $3}' | while read -r lib; do
      case "$(basename "$lib")" in
        libtorch*|libc10*|libc.so*|libm.so*|libpthread*|libdl.so*|librt.so*|ld-linux*)
          ;;
        *) cp -L "$lib" "$OUT.tmp/lib/" ;;
      esac
    done
    cp "$MODEL" "${MODEL%.pt}.json" "$OUT.tmp/"
    cp "$BAG"/* "$OUT.tmp/bag/"
    printf '/coin_sorter:\n  ros__parameters:\n    device: "auto"\n' > "$OUT.tmp/params.yaml"
    rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
    du -sh "$OUT"/* "$OUT"
    ;;
  run)
    TORCH_LIB=${TORCH_LIB:-$(python3 -c 'import os, torch; print(os.path.dirname(torch.__file__) + "/lib")' 2>/dev/null || echo .venv/libtorch/lib)}
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU: CPU part only"
    LD_LIBRARY_PATH="$OUT/lib:$TORCH_LIB" "$OUT/bin/coin_sorter" bench pipeline \
      --bag "$OUT/bag" --model "$OUT/$(basename "${MODEL:-coin_resnet50.pt}")" \
      --params-file "$OUT/params.yaml" --frames "${FRAMES:-300}" --batch 64 --batches 20
    ;;
  *) echo "usage: $0 bundle|run" >&2; exit 2 ;;
esac
