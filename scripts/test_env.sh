#!/usr/bin/env bash
# Run the whole suite (make check) in a throw-away virtualenv on moving dependencies:
#   latest — the newest releases pyproject.toml's bounds admit (watch the moving edge);
#   oldest — the lock, with the libraries whose internals we touch at their lower bounds.
# torch stays the CPU build of scripts/lock-constraints.txt in both (the newest torch from PyPI
# is a multi-GB CUDA build). Not part of .ci/run; quote the result in the closing note.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:?usage: scripts/test_env.sh latest|oldest}
PY=${PYTHON:-python3}
DIR=$(mktemp -d -t trait_lab_env.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
"$PY" -m venv "$DIR/venv"
VPY="$DIR/venv/bin/python"
"$VPY" -m pip install -q --upgrade pip
TORCH_VERSION=$(sed -n 's/^torch==//p' scripts/lock-constraints.txt)
"$VPY" -m pip install -q "torch==$TORCH_VERSION"
case "$MODE" in
  latest)
    "$VPY" -m pip install -q --upgrade --upgrade-strategy eager -e ".[notebooks,serve,dev]"
    ;;
  oldest)
    "$VPY" -m pip install -q --no-deps --require-hashes -r requirements.lock
    "$VPY" -m pip install -q --no-deps -e .
    # the lower bounds in pyproject.toml of the libraries whose internals we touch
    lowest=$("$VPY" scripts/check_requirements.py --lower-bounds transformers plotly ipywidgets anywidget)
    # shellcheck disable=SC2086
    "$VPY" -m pip install -q $lowest
    ;;
  *) echo "unknown mode $MODE (latest|oldest)" >&2; exit 2 ;;
esac
"$VPY" scripts/check_requirements.py
echo "[test-$MODE] versions:"
"$VPY" -m pip list 2>/dev/null | grep -iE '^(torch|transformers|plotly|ipywidgets|anywidget|numpy|accelerate) '
start=$(date +%s)
PATH="$DIR/venv/bin:$PATH" make check PYTHON="$VPY"
echo "[test-$MODE] green in $(( $(date +%s) - start )) s"
