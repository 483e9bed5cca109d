"""Inference resume and the files it leaves: killed runs, corrupt state, wrong-width vectors.

Case 3: a run killed (kill -9) while calibrating or while writing records, then rerun, leaves
the same bytes as an uninterrupted run: the same ``calibration.json`` (not the saved state
plus a second full pass) and so the same calibration fingerprint in every record. A kill is
simulated as in tests/unit/test_resume.py (``dies_on_call``), and made exact: whatever was on
disk at the instant of the kill is restored afterwards, so cleanup that Python runs on the way
out (context managers) cannot help. Case 4: a corrupt ``inputs.json``, ``calibration.json`` or
collector state gives an error naming the file and the fix, or (for the state, a resume cache)
a warning naming it and a recomputation: never a raw JSONDecodeError/KeyError/TypeError.
Case 5: a vector whose width is not the model's hidden size is refused before any forward.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch

import trait_lab.dynamics.inference as inference_module
from tests.faults.checks import clear_error
from tests.helpers import PROMPTS, dies_on_call
from trait_lab.core.paths import calibration_path, records_dir
from trait_lab.dynamics.calibration import ensure_calibration
from trait_lab.dynamics.inference import project_prompts, run_inference
from trait_lab.dynamics.massive import (
    STATE_NAME,
    CalibrationError,
    MassiveDimCollector,
    load_calibration,
)
from trait_lab.dynamics.records import load_record

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def traits() -> dict[str, dict[int, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return {"t": {layer: torch.randn(32, generator=gen) for layer in (0, 2)}}


def run(model, tokenizer, traits, root: Path, prompts=PROMPTS, **kwargs: Any) -> list[Path]:
    return run_inference(
        "exp",
        "set",
        prompts,
        traits,
        root=root,
        model=model,
        tokenizer=tokenizer,
        max_new_tokens=3,
        **kwargs,
    )


@pytest.fixture(scope="module")
def whole(model, tokenizer, traits, tmp_path_factory) -> Path:
    """The experiments folder of an uninterrupted run (one thread, as every test here runs)."""
    root = tmp_path_factory.mktemp("whole")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # float sums depend on the thread count
    try:
        run(model, tokenizer, traits, root)
    finally:
        torch.set_num_threads(threads)
    return root


def files(root: Path) -> dict[str, bytes]:
    """Every file under the run's inference folder, by relative path."""
    folder = root / "exp" / "inference"
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def kill_at(monkeypatch, owner: Any, name: str, n: int, root: Path, cut: Path) -> None:
    """Call ``n`` of ``owner.name`` is a kill -9: the disk as it was then is what remains."""
    dies_on_call(monkeypatch, owner, name, n, at_death=lambda: shutil.copytree(root, cut))


def killed(model, tokenizer, traits, root: Path, monkeypatch, owner, name, n) -> None:
    """Run until call ``n`` of ``owner.name`` kills it; leave on disk what a kill -9 would."""
    cut = root.parent / f"{root.name}-at-kill"
    kill_at(monkeypatch, owner, name, n, root, cut)
    with pytest.raises(KeyboardInterrupt):
        run(model, tokenizer, traits, root)
    monkeypatch.undo()
    shutil.rmtree(root)
    cut.rename(root)


class TestKilledInference:
    def test_killed_while_calibrating_resumes_to_the_same_calibration_and_records(
        self, model, tokenizer, traits, whole, tmp_path, monkeypatch
    ) -> None:
        root = tmp_path / "root"
        root.mkdir()
        killed(model, tokenizer, traits, root, monkeypatch, model, "forward", 6)
        state = calibration_path("exp", "instruct", root).with_name(STATE_NAME)
        assert json.loads(state.read_text())["forwards_seen"] == 5  # 5 texts counted, then killed
        assert not calibration_path("exp", "instruct", root).exists()
        paths = run(model, tokenizer, traits, root)
        assert files(root) == files(whole)  # calibration.json, inputs.json and records, bytewise
        fingerprints = {load_record(p).calibration["fingerprint"] for p in paths}
        assert len(fingerprints) == 1 and not state.exists()

    def test_killed_while_writing_records_resumes_to_the_same_records(
        self, model, tokenizer, traits, whole, tmp_path, monkeypatch
    ) -> None:
        root = tmp_path / "root"
        root.mkdir()
        killed(model, tokenizer, traits, root, monkeypatch, inference_module, "project_prompts", 2)
        folder = records_dir("exp", "instruct", "set", root)
        assert sorted(p.name for p in folder.glob("[0-9]*.json")) == ["0.json"]
        run(model, tokenizer, traits, root)
        assert files(root) == files(whole)

    def test_a_state_collected_from_other_prompts_is_not_resumed(
        self, model, tokenizer, traits, whole, tmp_path, monkeypatch, caplog
    ) -> None:
        """Killed while calibrating on other prompts: this run starts its calibration afresh."""
        root = tmp_path / "root"
        root.mkdir()
        cut = tmp_path / "cut"
        kill_at(monkeypatch, model, "forward", 4, root, cut)
        with pytest.raises(KeyboardInterrupt):
            run(model, tokenizer, traits, root, prompts=["why be brief", "tell me a joke"])
        monkeypatch.undo()
        shutil.rmtree(root)
        cut.rename(root)
        shutil.rmtree(records_dir("exp", "instruct", "set", root))  # their inputs.json
        with caplog.at_level(logging.WARNING, logger="trait_lab.dynamics.massive"):
            run(model, tokenizer, traits, root)
        assert "other inputs" in caplog.text and STATE_NAME in caplog.text
        assert files(root) == files(whole)


#: Eight prompts, so that a kill lands among the records; the child sleeps between them.
MANY = [f"{a} {b}" for a in ("hello how are you", "the cat sat on the mat") for b in "abcd"]

_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import torch
    import trait_lab.dynamics.inference as inference
    from tests.helpers import make_tokenizer
    from trait_lab.testing import tiny_model

    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    traits = {"t": {layer: torch.randn(32, generator=gen) for layer in (0, 2)}}
    real = inference.project_prompts

    def slow(*args, **kwargs):
        time.sleep(0.4)  # widen the window in which the parent's SIGKILL lands
        return real(*args, **kwargs)

    inference.project_prompts = slow
    prompts = sys.argv[2].split("|")
    inference.run_inference("exp", "set", prompts, traits, root=Path(sys.argv[1]),
                            model=tiny_model(), tokenizer=make_tokenizer(), max_new_tokens=3)
    """
)


def test_sigkill_during_records_resumes_to_an_uninterrupted_runs_bytes(
    model, tokenizer, traits, tmp_path
) -> None:
    """A real ``kill -9`` of a separate process mid-run; the rerun equals a run never killed."""
    whole_root, root = tmp_path / "whole", tmp_path / "killed"
    run(model, tokenizer, traits, whole_root, prompts=MANY)
    repo = Path(__file__).resolve().parents[2]  # so that the child imports tests.helpers
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), *sys.path])}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(root), "|".join(MANY)], env=env, cwd=repo
    )
    folder = records_dir("exp", "instruct", "set", root)
    deadline = time.monotonic() + 300
    try:
        while len(list(folder.glob("[0-9]*.json"))) < 3:
            assert child.poll() is None, "the child run ended before it could be killed"
            assert time.monotonic() < deadline, "the child wrote no records in 300 s"
            time.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    done = len(list(folder.glob("[0-9]*.json")))
    assert 3 <= done < len(MANY)  # killed among the records, not after them
    run(model, tokenizer, traits, root, prompts=MANY)
    assert files(root) == files(whole_root)


def _state(model, tokenizer, traits, root: Path, monkeypatch) -> Path:
    killed(model, tokenizer, traits, root, monkeypatch, model, "forward", 6)
    return calibration_path("exp", "instruct", root).with_name(STATE_NAME)


STATE_DAMAGE = {
    "truncated": lambda text: text[: len(text) // 2],
    "not-an-object": lambda text: "[]",
    "old-format": lambda text: json.dumps(
        {k: v for k, v in json.loads(text).items() if k not in ("schema", "schema_version")}
    ),
    "tokens-a-string": lambda text: json.dumps({**json.loads(text), "tokens_seen": "88"}),
    "stats-a-list": lambda text: json.dumps({**json.loads(text), "stats": []}),
    "no-stats": lambda text: json.dumps(
        {k: v for k, v in json.loads(text).items() if k != "stats"}
    ),
    "short-array": lambda text: text.replace('"max_abs": [', '"max_abs": [1.0, 2.0], "x": [', 1),
    "strings": lambda text: text.replace('"sum_abs": [', '"sum_abs": ["a", ', 1),
}


class TestCorruptFiles:
    @pytest.mark.parametrize("damage", list(STATE_DAMAGE))
    def test_a_damaged_collector_state_is_recomputed_with_a_warning(
        self, model, tokenizer, traits, whole, tmp_path, monkeypatch, caplog, damage
    ) -> None:
        root = tmp_path / "root"
        root.mkdir()
        state = _state(model, tokenizer, traits, root, monkeypatch)
        state.write_text(STATE_DAMAGE[damage](state.read_text()))
        with caplog.at_level(logging.WARNING, logger="trait_lab.dynamics.massive"):
            collector = MassiveDimCollector(model, state.with_name("calibration.json"))
            assert (collector.tokens_seen, collector.forwards_seen) == (0, 0)
            run(model, tokenizer, traits, root)
        assert f"ignoring collector state {state}" in caplog.text
        assert files(root) == files(whole)  # calibrated from zero, not from the damaged state

    @pytest.mark.parametrize(
        "damage",
        [
            lambda cal: "{" + json.dumps(cal)[1:40],
            lambda cal: {**cal, "layers": [{**cal["layers"][0], "top_dims": 5}]},
            lambda cal: {**cal, "layers": [{**cal["layers"][0], "layer": "0"}]},
            lambda cal: {**cal, "layers": [{**cal["layers"][0], "top_ratio": ["a"] * 10}]},
            lambda cal: {**cal, "layers": [{**cal["layers"][0], "mean_norm": None}]},
            lambda cal: {**cal, "layers": ["x"]},
            lambda cal: {**cal, "candidate_ratio": "100"},
            lambda cal: {**cal, "model": 3},
            lambda cal: {**cal, "candidates": "12"},
        ],
        ids=[
            "truncated",
            "top-dims-an-int",
            "layer-a-string",
            "ratios-strings",
            "norm-null",
            "layer-a-string-entry",
            "ratio-a-string",
            "model-an-int",
            "candidates-a-string",
        ],
    )
    def test_a_corrupt_calibration_is_named_and_rebuilt(
        self, model, tokenizer, traits, whole, tmp_path, caplog, damage
    ) -> None:
        root = tmp_path / "root"
        shutil.copytree(whole, root)
        path = calibration_path("exp", "instruct", root)
        bad = damage(json.loads(path.read_text()))
        path.write_text(bad if isinstance(bad, str) else json.dumps(bad))
        clear_error(CalibrationError, load_calibration, path, mentions=[str(path), "delete it"])
        with caplog.at_level(logging.WARNING, logger="trait_lab.dynamics.calibration"):
            record = ensure_calibration(model, tokenizer, "exp", "instruct", root)
        assert str(path) in caplog.text and "rebuilding" in caplog.text
        assert load_calibration(path) == record

    @pytest.mark.parametrize(
        "text", ['{"fingerprint": "ab', "[]", '{"fingerprint": 3}', '"x"', "\udcff"]
    )
    def test_a_corrupt_inputs_json_is_named_and_overwrite_redoes_the_records(
        self, model, tokenizer, traits, whole, tmp_path, text: str
    ) -> None:
        root = tmp_path / "root"
        shutil.copytree(whole, root)
        inputs = records_dir("exp", "instruct", "set", root) / "inputs.json"
        inputs.write_bytes(text.encode("utf-8", "surrogateescape"))
        before = files(root)
        call = run
        clear_error(
            ValueError,
            call,
            model,
            tokenizer,
            traits,
            root,
            mentions=[str(inputs), "corrupt", "overwrite=True"],
        )
        assert files(root) == before  # nothing deleted or rewritten
        run(model, tokenizer, traits, root, overwrite=True)
        assert files(root) == files(whole)


class TestVectorWidth:
    def test_a_vector_of_another_width_is_refused_before_any_forward(
        self, model, tokenizer, whole, monkeypatch
    ) -> None:
        calibration = load_calibration(calibration_path("exp", "instruct", whole))
        forwards = []
        monkeypatch.setattr(model, "forward", lambda *a, **k: forwards.append(1))
        traits = {"ok": {0: torch.ones(32)}, "wide": {2: torch.ones(48)}}
        clear_error(
            ValueError,
            project_prompts,
            model,
            tokenizer,
            PROMPTS,
            traits,
            calibration,
            mentions=["'wide'", "layer 2", "width 48", "hidden size is 32", "extracted from"],
        )
        assert forwards == []

    def test_run_inference_writes_nothing_for_a_vector_of_another_width(
        self, model, tokenizer, tmp_path, monkeypatch
    ) -> None:
        forwards = []
        monkeypatch.setattr(model, "forward", lambda *a, **k: forwards.append(1))
        traits = {"t": {1: torch.ones(31)}}
        clear_error(
            ValueError,
            run,
            model,
            tokenizer,
            traits,
            tmp_path,
            mentions=["'t'", "layer 1", "width 31", "hidden size is 32"],
        )
        assert forwards == [] and list(tmp_path.iterdir()) == []
