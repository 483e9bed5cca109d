"""Extraction throughput with 1 and 2 processes (1 thread each) on the same work, as a ratio.

Each case is the real command line in fresh processes on a fresh experiments folder:
``python -m trait_lab extract …`` (one process) and ``torchrun --standalone --nproc_per_node=2
-m trait_lab extract …`` (two ranks, gloo), both with ``OMP_NUM_THREADS=1``, and for comparison
one process with as many threads as there are ranks (what the cores give without torchrun). A
last case reruns the one-process command on a finished folder: start-up, model load and output
checks with no work, which is subtracted to give the time spent extracting. Cases run
round-robin and the median is taken. On a GPU machine ``--nproc`` can be the GPU count
(NCCL is chosen there).

    python bench/bench_scale_out.py --repeats 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _command(nproc: int, args: list[str]) -> list[str]:
    if nproc == 1:
        return [sys.executable, "-m", "trait_lab", *args]
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*launch, f"--nproc_per_node={nproc}", "-m", "trait_lab", *args]


def _fresh(tmp: Path, name: str) -> Path:
    root = tmp / name
    shutil.rmtree(root, ignore_errors=True)
    (root / "default").mkdir(parents=True)
    config = REPO / "experiments" / "default" / "config.json"
    (root / "default" / "config.json").write_bytes(config.read_bytes())
    return root


def _timed(root: Path, nproc: int, args: list[str], threads: int) -> float:
    env = {**os.environ, "TRAIT_LAB_EXPERIMENTS": str(root), "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    done = subprocess.run(_command(nproc, args), env=env, cwd=REPO, capture_output=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(done.stderr.decode()[-3000:])
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--trait", default="optimism")
    parser.add_argument("--methods", nargs="+", default=["mean_diff", "probe"])
    args = parser.parse_args()
    work = ["extract", "--trait", args.trait, "--methods", *args.methods]
    tmp = Path(tempfile.mkdtemp(prefix="bench_scale_out_"))
    finished = _fresh(tmp, "finished")
    _timed(finished, 1, work, 1)  # warm-up, and the folder the start-up case reruns
    many, threads = f"{args.nproc} processes", f"1 process, {args.nproc} threads"
    samples: dict[str, list[float]] = {"1 process": [], many: [], threads: [], "start": []}
    for _ in range(args.repeats):
        samples["1 process"].append(_timed(_fresh(tmp, "one"), 1, work, 1))
        samples[many].append(_timed(_fresh(tmp, "many"), args.nproc, work, 1))
        samples[threads].append(_timed(_fresh(tmp, "threads"), 1, work, args.nproc))
        samples["start"].append(_timed(finished, 1, work, 1))
    median = {name: statistics.median(values) for name, values in samples.items()}
    start = median.pop("start")
    one = median["1 process"]
    print(f"trait {args.trait}, methods {' '.join(args.methods)}, every layer, 1 thread a process")
    print(f"start-up + load + checks with nothing to do (1 process): {start:.1f} s")
    print("| case | median wall s | wall speed-up | extracting s | extracting speed-up |")
    print("|---|---|---|---|---|")
    for name, seconds in median.items():
        busy = seconds - start
        print(
            f"| {name} | {seconds:.1f} | {one / seconds:.2f}x | {busy:.1f} | "
            f"{(one - start) / busy:.2f}x |"
        )
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
