"""Hardening of the extraction pipeline: names, settings, resume, model fingerprint, locks.

Every run uses the random 3-layer ``tiny_model`` with a word tokenizer and the built-in
``refusal`` trait (64 pairs); each extraction takes well under a second.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

import trait_lab.extraction.units as units
from tests.faults.checks import clear_error
from tests.helpers import make_tokenizer
from trait_lab.core.locks import LockTimeoutError
from trait_lab.core.paths import activations_path
from trait_lab.extraction.methods import METHODS, DegenerateLayerError, get_method
from trait_lab.extraction.outputs import INPUTS, METRICS_LOG
from trait_lab.extraction.pipeline import ExtractionSettings, extract_trait, run_extraction
from trait_lab.extraction.plan import plan_extraction
from trait_lab.io.vectors import load_vector
from trait_lab.models.manifest import model_fingerprint, write_manifest
from trait_lab.testing import tiny_model
from trait_lab.traits.dataset import load_trait, trait_path
from trait_lab.vectors.grids import load_vector_grid

pytestmark = pytest.mark.usefixtures("one_thread")

TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> "
    "{% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
ONE = ExtractionSettings(methods=("mean_diff",), layers=(0,))
TWO = ExtractionSettings(methods=("mean_diff", "probe"), layers=(0, 2))


@pytest.fixture(scope="module")
def mt() -> tuple[Any, Any]:
    tokenizer = make_tokenizer()
    tokenizer.chat_template = TEMPLATE  # the built-in traits' prompts are conversations
    return tiny_model(), tokenizer


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (lock files aside) with its bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".extraction.lock")
    }


def config(folder: Path, variants: dict[str, Any] | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    variants = variants or {"instruct": {"model": None}}
    (folder / "config.json").write_text(json.dumps({"model_variants": variants}))


class TestNames:
    """Case 1: an experiment, variant or trait name that is a path never becomes one."""

    def test_experiment_that_is_a_path(self, mt, tmp_path: Path) -> None:
        root = tmp_path / "experiments"
        config(root / "e")
        config(tmp_path / "x")  # a config exists at root/../x and at the absolute path
        before = snapshot(tmp_path)
        for name in ("../x", str(tmp_path / "x")):
            kwargs = {"root": root, "model": mt[0], "tokenizer": mt[1]}
            clear_error(
                ValueError,
                run_extraction,
                name,
                "refusal",
                mentions=[repr(name), "rename"],
                **kwargs,
            )
        assert snapshot(tmp_path) == before

    def test_variant_and_trait_that_are_paths(self, mt, tmp_path: Path) -> None:
        root = tmp_path / "experiments"
        config(root / "v", {"../x": {"model": None}})
        kwargs = {"root": root, "model": mt[0], "tokenizer": mt[1]}
        clear_error(
            ValueError, run_extraction, "v", "refusal", mentions=["'../x'", "rename"], **kwargs
        )
        config(root / "e")
        hidden = tmp_path / ".hidden"  # a trait folder whose name cannot be a folder name
        shutil.copytree(trait_path("refusal"), hidden)
        before = snapshot(tmp_path)
        clear_error(
            ValueError, run_extraction, "e", hidden, mentions=["'.hidden'", "rename"], **kwargs
        )
        assert snapshot(tmp_path) == before and not (root / "e" / "extraction").exists()


class TestSettings:
    """Case 2: bad layers, components or positions are refused before anything is written."""

    @pytest.mark.parametrize(
        ("settings", "mentions"),
        [
            ({"layers": (99,)}, ["[99]", "0 to 2"]),
            ({"layers": (-1,)}, ["[-1]", "layer -1 is 2"]),
            ({"layers": (0, 0)}, ["(0, 0)", "each layer once"]),
            ({"layers": (True,)}, ["layers=True", "ints"]),
            ({"components": ("bogus",)}, ["'bogus'", "residual"]),
            ({"position": "nonsense[["}, ["'nonsense[['", "frames"]),
        ],
    )
    def test_refused_before_writing(self, mt, tmp_path: Path, settings, mentions) -> None:
        out = tmp_path / "out"
        extract_trait(*mt, "refusal", out, ONE)
        before = snapshot(out)

        def call(folder: Path) -> None:
            merged = {"methods": ("mean_diff",), "layers": (0,), **settings}
            extract_trait(*mt, "refusal", folder, ExtractionSettings(**merged))

        clear_error(ValueError, call, out, mentions=mentions)
        assert snapshot(out) == before
        clear_error(ValueError, call, tmp_path / "fresh", mentions=mentions)
        assert not (tmp_path / "fresh").exists()

    def test_corrected_call_runs_after_refused_ones(self, mt, tmp_path: Path) -> None:
        out = tmp_path / "out"
        bad_layer = ExtractionSettings(methods=("mean_diff",), layers=(99,))
        clear_error(ValueError, extract_trait, *mt, "refusal", out, bad_layer, mentions=["[99]"])
        assert not out.exists()
        far = ExtractionSettings(methods=("mean_diff",), layers=(0,), position="prompt[500]")
        clear_error(ValueError, extract_trait, *mt, "refusal", out, far, mentions=["'prompt[500]'"])
        assert snapshot(out) == {}  # at most the lock: no inputs.json, no outputs
        fixed = extract_trait(*mt, "refusal", out, ONE)
        assert (fixed.computed, fixed.skipped) == (1, 0)

    def test_a_lone_inputs_json_does_not_block(self, mt, tmp_path: Path) -> None:
        """What a refused run of an older trait_lab left behind is replaced, not refused."""
        out = tmp_path / "out"
        out.mkdir()
        (out / INPUTS).write_text(json.dumps({"hash": "made-for-layer-99"}))
        assert extract_trait(*mt, "refusal", out, ONE).computed == 1


class TestResume:
    """Case 3: a resumed run verifies every file it reuses and recomputes what fails."""

    def test_changed_vector_bytes_are_recomputed(self, mt, tmp_path: Path, caplog) -> None:
        first = extract_trait(*mt, "refusal", tmp_path, TWO)
        vector = first.vector_path("mean_diff", 2)
        saved = load_vector(vector).clone()
        data = bytearray(vector.read_bytes())
        data[-2] ^= 0x01  # still a valid safetensors file, with a slightly different vector
        vector.write_bytes(bytes(data))
        with caplog.at_level(logging.WARNING, logger="trait_lab.core.runs"):
            again = extract_trait(*mt, "refusal", tmp_path, TWO)
        assert (again.computed, again.skipped) == (1, 3)
        assert str(vector) in caplog.text and "sha256" in caplog.text
        assert any(str(vector) in note for note in again.notes)
        torch.testing.assert_close(load_vector(vector), saved)

    def test_rows_without_checksum_still_check_shape(self, mt, tmp_path: Path) -> None:
        first = extract_trait(*mt, "refusal", tmp_path, TWO)
        log = tmp_path / METRICS_LOG
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        log.write_text("".join(json.dumps({**r, "sha256": None}) + "\n" for r in rows))
        vector = first.vector_path("probe", 0)
        save_file({"vector": torch.ones(16) / 4}, str(vector))  # another model's vector
        again = extract_trait(*mt, "refusal", tmp_path, TWO)
        assert (again.computed, again.skipped) == (1, 3)
        assert "shape (32,)" in " ".join(again.notes)

    def test_activations_with_nan_are_recaptured(self, mt, tmp_path: Path) -> None:
        extract_trait(*mt, "refusal", tmp_path, TWO)
        path = activations_path(tmp_path, "residual")
        stored = load_file(str(path))
        stored["pos"][3, 1, 5] = float("nan")
        save_file(stored, str(path))
        again = extract_trait(*mt, "refusal", tmp_path, TWO)
        assert any("NaN" in note and str(path) in note for note in again.notes)
        assert torch.isfinite(load_file(str(path))["pos"].float()).all()


def model_folder(folder: Path, weights: torch.Tensor, manifest: bool = True) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text('{"model_type": "llama"}')
    save_file({"w": weights}, str(folder / "model.safetensors"))
    if manifest:
        write_manifest(folder, {"kind": "test", "name": "w", "sha256": "0" * 64})
    return folder


class TestModelFingerprint:
    """Case 4: the inputs hash names the model by its content, not by its folder."""

    def test_same_weights_anywhere_same_fingerprint(self, tmp_path: Path) -> None:
        a = model_folder(tmp_path / "cache1" / "m", torch.arange(4.0))
        b = model_folder(tmp_path / "cache2" / "m", torch.arange(4.0))
        c = model_folder(tmp_path / "cache3" / "m", torch.arange(4.0) + 1)
        plain = model_folder(tmp_path / "plain", torch.arange(4.0), manifest=False)
        assert model_fingerprint(a) == model_fingerprint(b) == model_fingerprint(plain)
        assert model_fingerprint(a) != model_fingerprint(c)
        assert model_fingerprint("HuggingFaceTB/SmolLM2-135M") is None

    def test_moving_the_cache_keeps_finished_work(self, mt, tmp_path: Path) -> None:
        model, tokenizer = mt
        a = model_folder(tmp_path / "cache1" / "m", torch.arange(4.0))
        b = model_folder(tmp_path / "cache2" / "m", torch.arange(4.0))
        c = model_folder(tmp_path / "cache3" / "m", torch.arange(4.0) + 1)
        dataset, where = load_trait("refusal"), model.config._name_or_path
        hashes = {}
        try:
            for folder in (a, b, c):
                model.config._name_or_path = str(folder)
                hashes[folder] = plan_extraction(model, dataset, ONE).inputs()["hash"]
            assert hashes[a] == hashes[b] != hashes[c]
            model.config._name_or_path = str(a)
            assert extract_trait(model, tokenizer, dataset, tmp_path / "out", ONE).computed == 1
            model.config._name_or_path = str(b)  # the cache moved
            moved = extract_trait(model, tokenizer, dataset, tmp_path / "out", ONE)
            assert (moved.computed, moved.skipped) == (0, 1)
            model.config._name_or_path = str(c)  # other weights: other inputs
            clear_error(
                ValueError,
                extract_trait,
                model,
                tokenizer,
                dataset,
                tmp_path / "out",
                ONE,
                mentions=["different inputs", "overwrite"],
            )
        finally:
            model.config._name_or_path = where

    def test_folders_of_the_older_hash_resume(self, mt, tmp_path: Path) -> None:
        model, tokenizer = mt
        dataset, where = load_trait("refusal"), model.config._name_or_path
        try:
            model.config._name_or_path = str(model_folder(tmp_path / "m", torch.arange(4.0)))
            extract_trait(model, tokenizer, dataset, tmp_path / "out", ONE)
            plan = plan_extraction(model, dataset, ONE)
            inputs = json.loads((tmp_path / "out" / INPUTS).read_text())
            (tmp_path / "out" / INPUTS).write_text(json.dumps({**inputs, "hash": plan.legacy_hash}))
            again = extract_trait(model, tokenizer, dataset, tmp_path / "out", ONE)
            assert (again.computed, again.skipped) == (0, 1)
            assert json.loads((tmp_path / "out" / INPUTS).read_text())["hash"] == inputs["hash"]
        finally:
            model.config._name_or_path = where


class _Seen(logging.Handler):
    """Sets ``event`` when a record containing ``text`` is logged; keeps the messages."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text, self.event, self.messages = text, threading.Event(), []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())
        if self.text in record.getMessage():
            self.event.set()


def blocked_first_run(monkeypatch, mt, out: Path, settings: ExtractionSettings):
    """Start a run in a thread that stops inside its first mean_diff until ``go`` is set."""
    cls = type(get_method("mean_diff"))
    real, inside, go = cls._extract, threading.Event(), threading.Event()

    def slow(self, pos, neg, **options):
        inside.set()
        assert go.wait(30)
        return real(self, pos, neg, **options)

    monkeypatch.setattr(cls, "_extract", slow)
    result: dict[str, Any] = {}

    def first() -> None:
        try:
            result["summary"] = extract_trait(*mt, "refusal", out, settings)
        except BaseException as exc:  # reported by the test
            result["error"] = exc

    thread = threading.Thread(target=first)
    thread.start()
    assert inside.wait(30)
    return thread, go, result


class TestConcurrentRuns:
    """Cases 5 and 6: one run per extraction folder at a time; the second waits, then reuses."""

    def run_second(self, mt, out: Path, go, settings, **kwargs):
        seen = _Seen("waiting for another run of this extraction")
        logging.getLogger("trait_lab.core.locks").addHandler(seen)
        result: dict[str, Any] = {}

        def second() -> None:
            try:
                result["summary"] = extract_trait(*mt, "refusal", out, settings, **kwargs)
            except BaseException as exc:
                result["error"] = exc

        thread = threading.Thread(target=second)
        try:
            thread.start()
            assert seen.event.wait(30), seen.messages
        finally:
            go.set()
            thread.join(60)
            logging.getLogger("trait_lab.core.locks").removeHandler(seen)
        return result, seen

    def test_second_run_waits_then_reuses(self, mt, tmp_path: Path, monkeypatch) -> None:
        out = tmp_path / "out"
        first, go, done = blocked_first_run(monkeypatch, mt, out, TWO)
        clear_error(
            LockTimeoutError,
            extract_trait,
            *mt,
            "refusal",
            out,
            TWO,
            lock_timeout=0.2,
            mentions=[f"pid {os.getpid()}", ".extraction.lock", "wait"],
        )
        second, seen = self.run_second(mt, out, go, TWO)
        first.join(60)
        assert "error" not in done and "error" not in second, (done, second)
        assert (done["summary"].computed, done["summary"].skipped) == (4, 0)
        assert (second["summary"].computed, second["summary"].skipped) == (0, 4)
        assert any(f"(pid {os.getpid()})" in m and str(out) in m for m in seen.messages)

    def test_overwrite_waits_instead_of_clearing_a_running_folder(
        self, mt, tmp_path: Path, monkeypatch
    ) -> None:
        out = tmp_path / "out"
        first, go, done = blocked_first_run(monkeypatch, mt, out, ONE)
        other = ExtractionSettings(methods=("mean_diff",), layers=(1,))
        second, _ = self.run_second(mt, out, go, other, overwrite=True)
        first.join(60)
        assert "error" not in done and "error" not in second, (done, second)
        assert done["summary"].computed == 1 and second["summary"].computed == 1
        inputs = json.loads((out / INPUTS).read_text())
        assert inputs["settings"]["layers"] == [1]
        names = sorted(p.name for p in (out / "vectors").rglob("*.safetensors"))
        assert names == ["layer_1.safetensors"]
        assert second["summary"].metrics["layer"].tolist() == [1]


class TestDamagedRecords:
    """Case 7: a damaged inputs.json or metrics.jsonl is named, with the fix."""

    @pytest.mark.parametrize("text", [b'{"hash": "ab', b"\xff\xfe not utf-8", b"[1, 2]"])
    def test_inputs_json(self, mt, tmp_path: Path, text: bytes) -> None:
        extract_trait(*mt, "refusal", tmp_path, ONE)
        (tmp_path / INPUTS).write_bytes(text)
        mentions = [str(tmp_path / INPUTS), "overwrite=True", "delete the folder"]
        clear_error(ValueError, extract_trait, *mt, "refusal", tmp_path, ONE, mentions=mentions)
        again = extract_trait(*mt, "refusal", tmp_path, ONE, overwrite=True)
        assert again.computed == 1

    @pytest.mark.parametrize("bad", ["{not json", '{"component": "residual"}'])
    def test_metrics_jsonl(self, mt, tmp_path: Path, bad: str) -> None:
        extract_trait(*mt, "refusal", tmp_path, TWO)
        log = tmp_path / METRICS_LOG
        lines = log.read_text().splitlines()
        log.write_text("\n".join([lines[0], bad, *lines[1:]]) + "\n")
        mentions = [str(log), "overwrite=True", "delete the folder"]
        clear_error(ValueError, extract_trait, *mt, "refusal", tmp_path, TWO, mentions=mentions)


class TestDegenerateLayers:
    """Case 8: identical poles are named, and a sweep skips such a layer instead of failing."""

    @pytest.mark.parametrize("name", METHODS)
    @pytest.mark.parametrize("kind", ["same rows", "one vector"])
    def test_every_method(self, name: str, kind: str) -> None:
        acts = torch.randn(8, 6) if kind == "same rows" else torch.ones(8, 6)
        error = clear_error(
            DegenerateLayerError,
            get_method(name).extract,
            acts,
            acts.flip(0),
            mentions=["identical", "another layer or position"],
        )
        assert isinstance(error, ValueError)

    def test_sweep_records_and_skips(self, mt, tmp_path: Path, monkeypatch, caplog) -> None:
        real = units.capture_at_position

        def pole_blind_layer_0(*args: Any, **kwargs: Any) -> torch.Tensor:
            acts = real(*args, **kwargs)
            acts[:, 0] = 1.0  # both poles: one and the same activation at layer 0
            return acts

        monkeypatch.setattr(units, "capture_at_position", pole_blind_layer_0)
        root = tmp_path / "experiments"
        config(root / "e")
        kwargs = {"root": root, "model": mt[0], "tokenizer": mt[1]}
        with caplog.at_level(logging.WARNING, logger="trait_lab.extraction.pipeline"):
            summary = run_extraction(
                "e", "refusal", methods=["mean_diff", "probe"], layers=[0, 2], **kwargs
            )
        assert sorted(summary.degenerate) == [
            ("residual", "mean_diff", 0),
            ("residual", "probe", 0),
        ]
        assert summary.metrics["layer"].tolist() == [2, 2] and summary.computed == 2
        assert "degenerate" in caplog.text and "identical" in " ".join(summary.notes)
        again = run_extraction(
            "e", "refusal", methods=["mean_diff", "probe"], layers=[0, 2], **kwargs
        )
        assert (again.computed, again.skipped) == (0, 4) and again.degenerate == summary.degenerate
        grid = load_vector_grid("e", ["refusal"], methods=["mean_diff", "probe"], root=str(root))
        assert grid.layers == [2]
        clear_error(
            ValueError,
            load_vector_grid,
            "e",
            ["refusal"],
            layers=[0],
            methods=["probe"],
            root=str(root),
            mentions=["[0]", "degenerate", "other layers"],
        )
