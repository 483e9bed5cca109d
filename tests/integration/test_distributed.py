"""Data-parallel extraction and inference under ``torchrun`` (gloo, CPU) on the default model.

Each run is a real command line in its own process(es), one thread each. The reference is one
process (``python -m trait_lab …``); a 2-process ``torchrun`` run must write the same outputs:
equal bytes, except that a vector file's safetensors header orders its metadata differently
from one process to the next (its tensors and metadata are compared instead, and a metrics
row's ``sha256`` of that file is left out). Then one rank is killed with SIGKILL mid-run and the
job is rerun with another number of processes: it resumes (the log says how many batches were
already done) and ends with the reference's outputs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import torch
from safetensors import safe_open

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "experiments" / "default" / "config.json"
EXTRACT = [
    "extract",
    "--trait",
    "optimism",
    "--methods",
    "mean_diff",
    "probe",
    "--layers",
    "3",
    "9",
]
PROMPTS = [
    "Describe a rainy afternoon.",
    "What should I cook tonight?",
    "Tell me about your weekend.",
    "How do plants grow?",
    "Give me advice on a job interview.",
    "What is the capital of France?",
    "Write a sentence about the sea.",
    "Why do cats purr?",
    "How was the exam?",
    "Plan a short trip.",
    "What makes a good friend?",
    "Describe your morning.",
]


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, "TRAIT_LAB_EXPERIMENTS": str(root), "OMP_NUM_THREADS": "1"}


def _experiments(tmp: Path, name: str) -> Path:
    root = tmp / name
    (root / "default").mkdir(parents=True)
    (root / "default" / "config.json").write_bytes(CONFIG.read_bytes())
    return root


def _command(nproc: int, args: list[str]) -> list[str]:
    if nproc == 1:
        return [sys.executable, "-m", "trait_lab", *args]
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*launch, f"--nproc_per_node={nproc}", "-m", "trait_lab", *args]


def _run(root: Path, nproc: int, args: list[str]) -> str:
    done = subprocess.run(
        _command(nproc, args), env=_env(root), cwd=REPO, capture_output=True, text=True
    )
    if done.returncode != 0:  # the ranks' own error lines first: torchrun's report buries them
        errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
        pytest.fail("\n".join(errors[-40:]) + "\n" + done.stdout[-2000:] + done.stderr[-4000:])
    return done.stdout + done.stderr


def _killed(root: Path, nproc: int, args: list[str], ready: Callable[[], bool]) -> None:
    """Start a ``torchrun`` job and SIGKILL its rank 1 once ``ready()`` (its partial work)."""
    job = subprocess.Popen(
        _command(nproc, args),
        env=_env(root),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 600
    try:
        while not ready():
            assert job.poll() is None, "the job ended before it could be killed"
            assert time.monotonic() < deadline, "the job made no progress in 600 s"
            time.sleep(0.05)
        workers = [p for p in psutil.Process(job.pid).children() if p.environ().get("RANK") == "1"]
        assert len(workers) == 1, workers
        os.kill(workers[0].pid, signal.SIGKILL)
        assert job.wait(timeout=120) != 0  # torchrun stops the other ranks and fails
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()


def _files(folder: Path) -> dict[str, Path]:
    skip = (".extraction.lock", ".extraction.lock.pid")
    return {
        p.relative_to(folder).as_posix(): p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in skip
    }


def _same_vector_file(a: Path, b: Path) -> bool:
    with safe_open(str(a), "pt") as fa, safe_open(str(b), "pt") as fb:
        names = sorted(fa.keys())
        if fa.metadata() != fb.metadata() or names != sorted(fb.keys()):
            return False
        return all(torch.equal(fa.get_tensor(k), fb.get_tensor(k)) for k in names)


def _rows(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "sha256"} for row in rows]


def assert_same_outputs(ref: Path, got: Path) -> None:
    """The usual outputs of ``ref`` and ``got`` are equal (vector headers aside, see top)."""
    a, b = _files(ref), _files(got)
    assert sorted(a) == sorted(b)
    for name, path in a.items():
        if name.startswith("vectors/"):
            assert _same_vector_file(path, b[name]), name
        elif name == "metrics.jsonl":
            assert _rows(path) == _rows(b[name])
        else:
            assert path.read_bytes() == b[name].read_bytes(), name


def _extraction(root: Path) -> Path:
    return root / "default" / "extraction" / "optimism" / "instruct"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """One process: the extraction, then inference on it, as a newcomer would run them."""
    tmp = tmp_path_factory.mktemp("distributed")
    root = _experiments(tmp, "reference")
    (tmp / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    _run(root, 1, EXTRACT)
    _run(root, 1, _infer_args(tmp))
    return root


def _infer_args(tmp: Path) -> list[str]:
    prompts = tmp / "prompts.txt"
    if not prompts.exists():
        prompts.write_text("\n".join(PROMPTS) + "\n")
    return [
        "infer",
        "--prompt-set",
        str(prompts),
        "--traits",
        "optimism",
        "--layer",
        "9",
        "--method",
        "probe",
        "--max-new-tokens",
        "8",
    ]


def test_two_processes_extract_what_one_does(reference, tmp_path) -> None:
    root = _experiments(tmp_path, "two")
    _run(root, 2, EXTRACT)
    assert_same_outputs(_extraction(reference), _extraction(root))
    assert not (_extraction(root) / ".shards").exists()  # the units are merged and removed


def test_killed_rank_resumes_with_another_number_of_processes(reference, tmp_path) -> None:
    root = _experiments(tmp_path, "killed")
    out = _extraction(root)

    def some_batches() -> bool:
        return len(list(out.glob(".shards/*/residual/*.safetensors"))) >= 3

    _killed(root, 2, EXTRACT, some_batches)
    left = len(list(out.glob(".shards/*/residual/*.safetensors")))
    assert left >= 3 and not (out / "metrics.csv").exists()  # killed mid-run
    log = _run(root, 1, EXTRACT)  # resumed by one process
    assert re.search(rf"\b{left} of \d+ residual batches done", log), log[-2000:]
    assert_same_outputs(_extraction(reference), out)


def test_inference_on_two_processes_and_resumed_on_three(reference, tmp_path) -> None:
    records = Path("default") / "inference" / "instruct"
    args = _infer_args(tmp_path)
    two = _experiments(tmp_path, "two")
    shutil.copytree(_extraction(reference), _extraction(two))  # the vectors inference reads
    _run(two, 2, args)
    ref = reference / records
    assert_same_outputs(ref, two / records)  # calibration.json, inputs.json, every record
    killed = _experiments(tmp_path, "killed")
    shutil.copytree(_extraction(reference), _extraction(killed))
    folder = killed / records / "projections" / "prompts"

    def some_records() -> bool:
        return len(list(folder.glob("[0-9]*.json"))) >= 2

    _killed(killed, 2, args, some_records)
    assert 2 <= len(list(folder.glob("[0-9]*.json"))) < len(PROMPTS)
    _run(killed, 3, args)
    assert_same_outputs(ref, killed / records)
