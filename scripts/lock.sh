#!/usr/bin/env bash
# Refresh requirements.lock: every package trait_lab and its notebook/serve/dev extras need, pinned with
# hashes, resolved by `uv pip compile` for every platform (Python >= 3.11, one version of each package). torch and its CUDA
# runtime packages are resolved (scripts/lock-constraints.txt pins torch) but not emitted, so
# installing the lock never replaces a user's torch. Run `make test` afterwards and commit the
# lock only when it passes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m uv --version >/dev/null 2>&1 || "$PY" -m pip install -q uv
compile() {
  "$PY" -m uv pip compile pyproject.toml --extra notebooks --extra serve --extra dev \
    --universal --python-version 3.11 --fork-strategy fewest --generate-hashes \
    --constraint scripts/lock-constraints.txt --quiet "$@"
}
# First pass: find torch's own runtime packages (CUDA wheels, triton) to leave out.
skip=(--no-emit-package torch)
for name in $(compile --no-header --no-annotate | sed -n 's/^\(nvidia-[^=]*\|cuda-[^=]*\|triton\)==.*/\1/p'); do
  skip+=(--no-emit-package "$name")
done
compile --custom-compile-command "make lock" "${skip[@]}" -o requirements.lock
echo "[lock] wrote requirements.lock ($(grep -c '^[a-z0-9]' requirements.lock) packages)"
