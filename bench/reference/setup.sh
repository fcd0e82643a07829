#!/usr/bin/env bash
# Makes .venv-bench, the Python reference's own environment (bench/reference/requirements.txt:
# PyPI's torch with its CUDA packages, several GB), unless it works already. Needs PyPI, so
# the benchmark scripts call it before they enter their network namespace.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! .venv-bench/bin/python -c 'import torch, cv2, cyclonedds' 2>/dev/null; then
  echo "[bench] installing the Python reference's packages into .venv-bench (several GB, once)"
  python3 -m venv .venv-bench
  .venv-bench/bin/python -m pip install -q --disable-pip-version-check \
    -r bench/reference/requirements.txt
fi
