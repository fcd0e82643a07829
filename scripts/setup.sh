#!/usr/bin/env bash
# Installs everything coin_sorter needs on a fresh Debian 12 machine, inside the repo where it
# can: Debian build packages (OpenCV 4.6, clang for bindgen, fontconfig and a font for the
# plots, iproute2 for the private network namespace), a Python venv at .venv holding libtorch
# 2.11.0 (PyPI torch wheel, CPU-lean install) and the test peers' packages, then a release
# build of every binary.
# Idempotent: a second run only checks and rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

APT_PKGS=(libopencv-dev clang libclang-dev pkg-config iproute2 util-linux python3-venv
  libfontconfig1-dev libfreetype-dev fonts-dejavu-core)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[setup] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${missing[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi
# torch is installed without its CUDA dependency tree: only the runtime and cupti libraries
# libtorch links against. On a GPU machine the full CUDA stack comes from the system's torch.
PIP=(.venv/bin/python -m pip install -q --disable-pip-version-check)
if ! .venv/bin/python -c 'import importlib.metadata as m; assert m.version("torch")=="2.11.0"' \
    2>/dev/null; then
  echo "[setup] installing libtorch 2.11.0 (PyPI torch wheel, about 530 MB)"
  "${PIP[@]}" --no-deps torch==2.11.0 "nvidia-cuda-runtime==13.0.96" "nvidia-cuda-cupti==13.0.85"
fi
"${PIP[@]}" -r scripts/requirements-test.txt
TORCH_DIR=$(.venv/bin/python -c 'import pathlib,importlib.util as u;
print(pathlib.Path(u.find_spec("torch").origin).parent)')
ln -sfn "$TORCH_DIR" .venv/libtorch

if ! command -v cargo >/dev/null; then
  echo "[setup] cargo not found: install Rust (rustup) first" >&2
  exit 1
fi
echo "[setup] building release binaries"
cargo build --release --bins --locked
echo "[setup] done: $ROOT"
