#!/usr/bin/env bash
# The GPU check of docs/performance.md, in two steps:
#   bench/gpu.sh bundle   here: out/gpu-bundle/bundle.tar.gz, at most 60 MiB of the 64 MiB a
#                         device run can carry: the release `coin_sorter` binary, the shared
#                         libraries it needs other than glibc and torch's own (libtorch,
#                         libc10, libgomp, the CUDA runtime and CUPTI: the device's torch
#                         brings those), i.e. OpenCV core and imgproc and theirs and libstdc++,
#                         one bag of the shared data and, unless MODEL names a model to carry
#                         (a small one: the 96 px ResNet-50 alone is 94 MB), three photos'
#                         crops per class of coins-mobile to make one
#   bench/gpu.sh run      on the device machine (out/gpu-bundle carried there): unpacks the
#                         bundle, makes a full-width ResNet-50 with `coin_sorter train` (two
#                         optimiser steps: the speed of a forward pass does not depend on the
#                         weights) unless one was carried, then runs the pipeline benchmark on
#                         CUDA against that machine's own torch 2.11 libraries (TORCH_LIB,
#                         default: the lib folder of its Python torch, else .venv/libtorch/lib).
#                         LD_LIBRARY_PATH wins over the binary's RUNPATH (this checkout's
#                         .venv), and the libtorch actually loaded is printed. On a machine
#                         without CUDA the same run falls back to the CPU (logged once).
#                         With CUDA it runs twice: with the node's defaults (fp16 and
#                         channels-last on CUDA), then in fp32 with contiguous batches, for the
#                         difference; once when the model ran on the CPU (both would be fp32)
# Environment: MODEL (a model to carry instead), BAG (../shared/data/bags/bgr8-mcap),
# INPUT_SIZE of the made model (96, as the demo's), FRAMES (300), OUT (out/gpu-bundle);
# relative paths are taken from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu-bundle}
# The device carries 64 MiB in all; 4 MiB stay for the rest of the working tree.
LIMIT=$((60 * 1024 * 1024))
case "${1:-}" in
  bundle)
    BAG=${BAG:-../shared/data/bags/bgr8-mcap}
    DATA=../shared/data/coins-mobile
    stage=$(mktemp -d)
    trap 'rm -rf "$stage"' EXIT
    mkdir -p "$stage/bin" "$stage/lib" "$stage/bag"
    # Stripped: the line tables of a release build triple its size.
    strip -o "$stage/bin/coin_sorter" target/release/coin_sorter
    ldd target/release/coin_sorter | awk '/=> \// {print $3}' | while read -r lib; do
      case "$(basename "$lib")" in
        libtorch*|libc10*|libgomp*|libcudart*|libcupti*|libc.so*|libm.so*|libpthread*|\
        libdl.so*|librt.so*|ld-linux*)
          ;;
        *) cp -L "$lib" "$stage/lib/" ;;
      esac
    done
    if [ ! -d "$BAG" ]; then
      echo "BAG=$BAG is not a rosbag2 folder (metadata.yaml and its files)" >&2
      exit 1
    fi
    cp "$BAG"/* "$stage/bag/"
    if [ -n "${MODEL:-}" ]; then
      case "$MODEL" in
        *.pt) ;;
        *) echo "MODEL=$MODEL: a TorchScript file named *.pt, with its .json beside it" >&2
           exit 1 ;;
      esac
      cp "$MODEL" "${MODEL%.pt}.json" "$stage/"
    else
      for class in "$DATA"/*/; do
        label=$(basename "$class")
        mkdir -p "$stage/train/$label"
        # Crops are <photo>_<k>.jpg; whole photos only, so the split has photos to hold out.
        for photo in $(ls "$class" | sed 's/_[0-9]*\.jpg$//' | sort -u | head -3); do
          cp "$class/$photo"_*.jpg "$stage/train/$label/"
        done
      done
    fi
    printf '/coin_sorter:\n  ros__parameters:\n    device: "auto"\n' > "$stage/params.yaml"
    mkdir -p "$OUT"
    tar -czf "$OUT/bundle.tar.gz.tmp" -C "$stage" .
    size=$(stat -c %s "$OUT/bundle.tar.gz.tmp")
    if [ "$size" -gt "$LIMIT" ]; then
      rm -f "$OUT/bundle.tar.gz.tmp"
      echo "bundle is $size bytes, over the $LIMIT this script allows (64 MiB carry)" >&2
      exit 1
    fi
    mv "$OUT/bundle.tar.gz.tmp" "$OUT/bundle.tar.gz"
    (cd "$stage" && du -sh bin lib bag train ./*.pt 2>/dev/null || true)
    echo "$OUT/bundle.tar.gz: $((size / 1024 / 1024)) MiB (at most 60 MiB, of a 64 MiB carry)"
    ;;
  run)
    # The machine's Python torch, else (no torch in its python3) this checkout's libtorch.
    torch_lib='import os, torch; print(os.path.dirname(torch.__file__) + "/lib")'
    TORCH_LIB=${TORCH_LIB:-$(python3 -c "$torch_lib" 2>/dev/null || echo "$PWD/.venv/libtorch/lib")}
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null \
      || echo "no GPU: CPU part only"
    if [ ! -f "$OUT/bundle.tar.gz" ]; then
      echo "no $OUT/bundle.tar.gz: make it with '$0 bundle' and carry $OUT" >&2
      exit 1
    fi
    here=$(mktemp -d)
    trap 'rm -rf "$here"' EXIT
    tar -xzf "$OUT/bundle.tar.gz" -C "$here"
    export LD_LIBRARY_PATH="$here/lib:$TORCH_LIB"
    echo "libtorch: $(ldd "$here/bin/coin_sorter" | awk '/libtorch_cpu/ {print $3}')"
    model=$(ls "$here"/*.pt 2>/dev/null | head -1 || true)
    if [ -z "$model" ]; then
      model="$here/model.pt"
      echo "making a ResNet-50 at ${INPUT_SIZE:-96} px (two optimiser steps)"
      "$here/bin/coin_sorter" train --data "$here/train" --out "$model" --epochs 1 \
        --max-steps 2 --input-size "${INPUT_SIZE:-96}" --augment none > "$here/train.log" 2>&1 \
        || { tail -20 "$here/train.log"; exit 1; }
    fi
    echo "== the node's defaults (on CUDA: fp16 autocast, channels_last, pinned, own stream)"
    "$here/bin/coin_sorter" bench pipeline --bag "$here/bag" --model "$model" \
      --params-file "$here/params.yaml" --frames "${FRAMES:-300}" --batch 64 --batches 20 \
      | tee "$here/defaults.txt"
    if ! grep -q "on Cuda" "$here/defaults.txt"; then
      echo "== the model ran on the CPU: no fp32 comparison (that run was fp32 contiguous)"
      exit 0
    fi
    echo "== fp32, contiguous: what the defaults gain"
    # params.yaml ends inside ros__parameters, so two more keys join them.
    { cat "$here/params.yaml"
      printf '    precision: "fp32"\n    memory_format: "contiguous"\n'; } > "$here/fp32.yaml"
    "$here/bin/coin_sorter" bench pipeline --bag "$here/bag" --model "$model" \
      --params-file "$here/fp32.yaml" --frames "${FRAMES:-300}" --batch 64 --batches 20
    ;;
  *) echo "usage: $0 bundle|run" >&2; exit 2 ;;
esac
