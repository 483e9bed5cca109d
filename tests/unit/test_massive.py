"""MassiveDimCollector on tiny models: prefill-only counting, cap, resume, validation."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

import trait_lab.dynamics.calibration as calibration_module
import trait_lab.dynamics.massive as massive
from tests.helpers import FakeTokenizer, hook_counts, warm
from trait_lab.core.atomic import TEMP_GLOB
from trait_lab.dynamics.calibration import calibrate, ensure_calibration, passive_collector
from trait_lab.dynamics.massive import (
    NEUTRAL_PROMPTS,
    CalibrationError,
    MassiveDimCollector,
    calibration_path,
    load_calibration,
)
from trait_lab.hooks import MultiLayerCapture
from trait_lab.hooks.base import register_tensor_hook
from trait_lab.models.identity import model_name
from trait_lab.testing import tiny_batch, tiny_model


@pytest.fixture(scope="module")
def model():
    m = tiny_model("llama")
    warm(m, tiny_batch(1, 3))
    return m


def test_neutral_prompts() -> None:
    assert len(NEUTRAL_PROMPTS) == 50 and len(set(NEUTRAL_PROMPTS)) == 50


class TestCollector:
    def test_generate_counts_prompt_tokens_only(self, model, tmp_path) -> None:
        batch = tiny_batch(2, 7, left_pad=(0, 2))
        with torch.no_grad(), MassiveDimCollector(model, tmp_path / "c.json") as col:
            out = model.generate(**batch, max_new_tokens=4, do_sample=False, pad_token_id=0)
        assert out.shape[1] == 11  # decode steps did run
        assert col.tokens_seen == 12  # 7 + 5 real prompt tokens, no padding, no decode
        assert load_calibration(tmp_path / "c.json")["tokens_seen"] == 12

    def test_stats_match_direct_capture(self, model, tmp_path) -> None:
        batch = tiny_batch(2, 6, left_pad=(0, 3))
        with torch.no_grad(), MultiLayerCapture(model) as cap:
            col = MassiveDimCollector(model, tmp_path / "c.json").attach()
            model(**batch)
            col.detach()
        keep = batch["attention_mask"].bool()
        for layer in range(3):
            h = cap.get(layer)[keep].double()
            np.testing.assert_allclose(col.max_abs[layer], h.abs().max(0).values, rtol=1e-6)
            mean_norm = col.sum_norm[layer] / col.tokens_seen
            assert mean_norm == pytest.approx(float(h.norm(dim=-1).mean()), rel=1e-6)

    def test_stops_at_max_tokens_and_removes_hooks(self, model, tmp_path) -> None:
        before = hook_counts(model)
        col = MassiveDimCollector(model, tmp_path / "c.json", max_tokens=10).attach()
        assert hook_counts(model) != before
        with torch.no_grad():
            model(**tiny_batch(2, 7))
        assert col.tokens_seen == 10 and col.done and not col.active
        assert hook_counts(model) == before
        assert load_calibration(tmp_path / "c.json")["tokens_seen"] == 10
        assert not (tmp_path / massive.STATE_NAME).exists()
        assert not list(tmp_path.glob(TEMP_GLOB))

    def test_hooks_removed_on_exception(self, model, tmp_path) -> None:
        before = hook_counts(model)
        with pytest.raises(RuntimeError), MassiveDimCollector(model, tmp_path / "c.json"):
            model(**tiny_batch(1, 4))
            raise RuntimeError("boom")
        assert hook_counts(model) == before
        assert not (tmp_path / "c.json").exists()  # no finalize after an error
        assert (tmp_path / massive.STATE_NAME).exists()

    def test_forward_that_raises_is_not_counted(self, model, tmp_path) -> None:
        def boom(h: torch.Tensor) -> None:
            raise RuntimeError("boom")

        col = MassiveDimCollector(model, tmp_path / "c.json").attach()
        handle = register_tensor_hook(model, "model.layers.1", boom, edits=True)
        with pytest.raises(RuntimeError, match="boom"):
            model(**tiny_batch(1, 5))
        handle.remove()
        model(**tiny_batch(1, 3))
        col.detach()
        ref = MassiveDimCollector(model, tmp_path / "ref" / "c.json").attach()
        model(**tiny_batch(1, 3))
        ref.detach()
        assert col.tokens_seen == 3
        np.testing.assert_array_equal(col.max_abs[0], ref.max_abs[0])
        np.testing.assert_array_equal(col.sum_abs[0], ref.sum_abs[0])

    def test_killed_collector_resumes(self, model, tmp_path) -> None:
        out = tmp_path / "c.json"
        a, b = tiny_batch(1, 7, seed=1), tiny_batch(1, 5, seed=2)
        first = MassiveDimCollector(model, out).attach()
        with torch.no_grad():
            model(**a)
        first.remove()  # the process "dies": hooks gone, no detach/finalize
        del first
        assert not out.exists()
        second = MassiveDimCollector(model, out)
        assert second.tokens_seen == 7
        with torch.no_grad(), second:
            model(**b)
        resumed = load_calibration(out)
        ref_out = tmp_path / "ref" / "c.json"
        with torch.no_grad(), MassiveDimCollector(model, ref_out):
            model(**a)
            model(**b)
        ref = load_calibration(ref_out)
        assert resumed["tokens_seen"] == 12
        assert resumed["layers"] == ref["layers"]

    def test_calibration_written_atomically(self, model, tmp_path, monkeypatch) -> None:
        calls = []
        real = massive.atomic_write_json
        monkeypatch.setattr(massive, "atomic_write_json", lambda p, *a, **k: (
            calls.append(p), real(p, *a, **k))[1])  # fmt: skip
        with torch.no_grad(), MassiveDimCollector(model, tmp_path / "c.json"):
            model(**tiny_batch(1, 4))
        assert tmp_path / "c.json" in calls
        record = load_calibration(tmp_path / "c.json")
        assert record["hidden_size"] == 32 and len(record["layers"]) == 3
        assert len(record["layers"][0]["top_dims"]) == 10


def _valid(model, tmp_path):
    out = tmp_path / "c.json"
    with torch.no_grad(), MassiveDimCollector(model, out):
        model(**tiny_batch(1, 4))
    return out


class TestValidation:
    @pytest.mark.parametrize(
        "corrupt",
        [
            lambda text: text[: len(text) // 2],
            lambda text: json.dumps({**json.loads(text), "schema_version": 99}),
            lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "layers"}),
            lambda text: json.dumps({**json.loads(text), "candidates": [999]}),
        ],
        ids=["truncated", "wrong-schema", "missing-key", "dim-out-of-range"],
    )
    def test_corrupt_file_raises_naming_it(self, model, tmp_path, corrupt) -> None:
        out = _valid(model, tmp_path)
        out.write_text(corrupt(out.read_text()))
        with pytest.raises(CalibrationError, match=str(out)):
            load_calibration(out)

    def test_missing_file(self, tmp_path) -> None:
        with pytest.raises(FileNotFoundError, match="ensure_calibration"):
            load_calibration(tmp_path / "nope.json")


class TestEnsure:
    def test_builds_then_reuses(self, model, tmp_path, monkeypatch) -> None:
        record = ensure_calibration(model, FakeTokenizer(), "exp", "inst", root=tmp_path)
        path = calibration_path("exp", "inst", root=tmp_path)
        assert path.exists() and record["tokens_seen"] > 0

        def fail(*a, **k):
            raise AssertionError("should not recalibrate")

        monkeypatch.setattr(calibration_module, "calibrate", fail)
        assert ensure_calibration(model, FakeTokenizer(), "exp", "inst", root=tmp_path) == record

    def test_corrupt_file_rebuilt_with_warning(self, model, tmp_path, caplog) -> None:
        path = calibration_path("exp", "inst", root=tmp_path)
        path.parent.mkdir(parents=True)
        path.write_text('{"schema": "trait_lab.massive_calibration", "schema_ver')
        with caplog.at_level(logging.WARNING, logger="trait_lab.dynamics.massive"):
            record = ensure_calibration(model, FakeTokenizer(), "exp", "inst", root=tmp_path)
        assert "corrupt" in caplog.text and str(path) in caplog.text
        assert load_calibration(path) == record

    def test_other_model_rebuilt(self, model, tmp_path, caplog) -> None:
        path = calibration_path("exp", "inst", root=tmp_path)
        other = tiny_model("gpt2")
        ensure_calibration(other, FakeTokenizer(), "exp", "inst", root=tmp_path)
        with caplog.at_level(logging.WARNING, logger="trait_lab.dynamics.massive"):
            ensure_calibration(model, FakeTokenizer(), "exp", "inst", root=tmp_path)
        assert "was made for" in caplog.text
        assert load_calibration(path)["model"] == model_name(model)


def test_passive_collector_runs_once_then_skips(model, tmp_path, caplog) -> None:
    first = passive_collector(model, "exp", "inst", root=tmp_path, max_tokens=6)
    assert isinstance(first, MassiveDimCollector)
    with torch.no_grad(), first:
        model.generate(**tiny_batch(1, 8), max_new_tokens=2, do_sample=False, pad_token_id=0)
    path = calibration_path("exp", "inst", root=tmp_path)
    assert load_calibration(path)["tokens_seen"] == 6
    assert not isinstance(
        passive_collector(model, "exp", "inst", root=tmp_path), MassiveDimCollector
    )
    path.write_text("{}")
    with caplog.at_level(logging.WARNING, logger="trait_lab.dynamics.massive"):
        again = passive_collector(model, "exp", "inst", root=tmp_path)
    assert isinstance(again, MassiveDimCollector) and "no 'schema' key" in caplog.text


def test_calibrate_per_token(model, tmp_path) -> None:
    prompts = list(NEUTRAL_PROMPTS[:3])
    record, table = calibrate(model, FakeTokenizer(), prompts, tmp_path / "c.json", per_token=True)
    assert (tmp_path / "per_token.json").exists()
    assert record["tokens_seen"] == sum(len(p.split()) for p in prompts)
    row = table["prompts"][1]
    dims = table["dims"]
    assert dims and row["prompt"] == prompts[1]
    ids = torch.tensor([row["input_ids"]])
    with torch.no_grad(), MultiLayerCapture(model) as cap:
        model(input_ids=ids)
    for layer in range(3):
        want = cap.get(layer)[0][:, dims]
        np.testing.assert_allclose(np.array(row["values"][layer]), want, atol=1e-5)
