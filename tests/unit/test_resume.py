"""Extraction and inference resume on tiny models: killed runs, damaged outputs, progress bars.

The default-model versions (tests/integration/test_extraction_default.py and
test_inference_default.py) check the same on SmolLM2; these run in seconds on a random
3-layer model with a word tokenizer.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import trait_lab.dynamics.inference as inference_module
from tests.helpers import PROMPTS, dies_on_call, make_tokenizer
from trait_lab.core.paths import activations_path, calibration_path, records_dir
from trait_lab.dynamics.inference import run_inference
from trait_lab.dynamics.records import load_record
from trait_lab.extraction.methods import get_method
from trait_lab.extraction.pipeline import METRICS_LOG, ExtractionSettings, extract_trait
from trait_lab.io.vectors import load_vector
from trait_lab.testing import tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")

TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> "
    "{% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
SETTINGS = ExtractionSettings(methods=("mean_diff", "probe"), layers=(0, 2))


@pytest.fixture(scope="module")
def model_and_tokenizer():
    tokenizer = make_tokenizer()
    tokenizer.chat_template = TEMPLATE  # the built-in traits' prompts are conversations
    return tiny_model(), tokenizer


class TestExtraction:
    def test_killed_run_resumes_and_matches_a_fresh_one(
        self, model_and_tokenizer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        probe = type(get_method("probe"))
        real = dies_on_call(monkeypatch, probe, "extract", 2)
        with pytest.raises(KeyboardInterrupt):
            extract_trait(*model_and_tokenizer, "refusal", tmp_path / "run", SETTINGS)
        monkeypatch.setattr(probe, "extract", real)
        with (tmp_path / "run" / METRICS_LOG).open("a") as log:
            log.write('{"component": "resid')  # a kill in the middle of an append
        resumed = extract_trait(*model_and_tokenizer, "refusal", tmp_path / "run", SETTINGS)
        assert (resumed.computed, resumed.skipped) == (1, 3)
        fresh = extract_trait(*model_and_tokenizer, "refusal", tmp_path / "fresh", SETTINGS)
        cols = ["method", "layer", "val_accuracy", "val_effect_size"]
        assert resumed.metrics[cols].equals(fresh.metrics[cols])

    def test_damaged_files_are_recomputed_with_a_warning(
        self, model_and_tokenizer, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        first = extract_trait(*model_and_tokenizer, "refusal", tmp_path, SETTINGS)
        vector = first.vector_path("mean_diff", 2)
        saved = load_vector(vector).clone()  # the file is overwritten in place below
        acts = activations_path(tmp_path, "residual")
        vector.write_bytes(b"not a safetensors file")
        acts.write_bytes(acts.read_bytes()[:100])
        with caplog.at_level(logging.WARNING, logger="trait_lab.core.runs"):
            again = extract_trait(*model_and_tokenizer, "refusal", tmp_path, SETTINGS)
        assert (again.computed, again.skipped) == (1, 3)
        warned = "\n".join(r.getMessage() for r in caplog.records)
        assert str(vector) in warned and str(acts) in warned
        torch.testing.assert_close(load_vector(vector), saved)
        cols = ["method", "layer", "val_accuracy"]
        assert again.metrics[cols].equals(first.metrics[cols])

    def test_activations_of_another_shape_are_not_trusted(
        self, model_and_tokenizer, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        extract_trait(*model_and_tokenizer, "refusal", tmp_path, SETTINGS)
        path = activations_path(tmp_path, "residual")
        save_file({"pos": torch.zeros(2, 2, 32), "neg": torch.zeros(2, 2, 32)}, str(path))
        with caplog.at_level(logging.WARNING, logger="trait_lab.core.runs"):
            extract_trait(*model_and_tokenizer, "refusal", tmp_path, SETTINGS)
        assert "does not hold pos/neg activations" in caplog.text
        assert load_file(str(path))["pos"].shape[:2] == (64, 2)  # recaptured: 64 pairs, 2 layers

    def test_progress_bar(self, model_and_tokenizer, tmp_path: Path, capsys) -> None:
        settings = ExtractionSettings(methods=("mean_diff",), layers=(1,))
        extract_trait(*model_and_tokenizer, "refusal", tmp_path, settings, progress=True)
        assert "extracting refusal" in capsys.readouterr().err
        extract_trait(*model_and_tokenizer, "refusal", tmp_path / "quiet", settings)
        assert "extracting" not in capsys.readouterr().err


class TestInference:
    @pytest.fixture
    def traits(self) -> dict[str, dict[int, torch.Tensor]]:
        gen = torch.Generator().manual_seed(0)
        return {"t": {layer: torch.randn(32, generator=gen) for layer in (0, 2)}}

    def run(self, model_and_tokenizer, traits, root: Path, **kwargs) -> list[Path]:
        model, tokenizer = model_and_tokenizer
        return run_inference(
            "exp",
            "set",
            PROMPTS,
            traits,
            root=root,
            model=model,
            tokenizer=tokenizer,
            max_new_tokens=3,
            **kwargs,
        )

    def test_killed_run_resumes(
        self, model_and_tokenizer, traits, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real = dies_on_call(monkeypatch, inference_module, "project_prompts", 2)
        with pytest.raises(KeyboardInterrupt):
            self.run(model_and_tokenizer, traits, tmp_path)
        folder = records_dir("exp", "instruct", "set", tmp_path)
        assert sorted(p.name for p in folder.glob("[0-9]*.json")) == ["0.json"]
        assert calibration_path("exp", "instruct", tmp_path).exists()
        first = (folder / "0.json").stat().st_mtime_ns
        monkeypatch.setattr(inference_module, "project_prompts", real)
        paths = self.run(model_and_tokenizer, traits, tmp_path)
        assert [p.name for p in paths] == ["0.json", "1.json"]
        assert paths[0].stat().st_mtime_ns == first  # not rewritten
        assert PROMPTS[1] in load_record(paths[1]).prompt

    def test_damaged_record_is_rewritten_with_a_warning(
        self, model_and_tokenizer, traits, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        paths = self.run(model_and_tokenizer, traits, tmp_path)
        before = load_record(paths[1])
        paths[1].write_text('{"schema_version": ')
        with caplog.at_level(logging.WARNING, logger="trait_lab.core.runs"):
            again = self.run(model_and_tokenizer, traits, tmp_path)
        assert again == paths and str(paths[1]) in caplog.text and "recomputing" in caplog.text
        after = load_record(paths[1])
        np.testing.assert_allclose(after.raw("t", 2)[0], before.raw("t", 2)[0], atol=1e-5)

    def test_a_finished_run_needs_no_model(self, model_and_tokenizer, traits, tmp_path) -> None:
        paths = self.run(model_and_tokenizer, traits, tmp_path)
        again = run_inference("exp", "set", PROMPTS, traits, root=tmp_path, max_new_tokens=3)
        assert again == paths

    def test_progress_bars(self, model_and_tokenizer, traits, tmp_path: Path, capsys) -> None:
        self.run(model_and_tokenizer, traits, tmp_path, progress=True)
        err = capsys.readouterr().err
        assert "calibrating" in err and "inference set" in err
        self.run(model_and_tokenizer, traits, tmp_path / "quiet")
        assert capsys.readouterr().err == ""
