"""Calibration runs: rebuilding from the curated neutral prompts, research mode's per-token file.

Ground truth is independent of the library's hooks: the per-token values are checked against
Hugging Face's ``output_hidden_states`` (final norm made the identity, so the last layer's
entry is the raw residual stream too) and token counts against the tokenizer itself.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

import trait_lab.cli as cli
from tests.helpers import hook_counts, warm
from trait_lab.core.atomic import TEMP_GLOB
from trait_lab.dynamics.calibration import (
    calibrate,
    ensure_calibration,
    passive_collector,
    research_calibration,
)
from trait_lab.dynamics.cleaning import dims_to_clean
from trait_lab.dynamics.massive import (
    NEUTRAL_PROMPTS,
    STATE_NAME,
    CalibrationError,
    calibration_path,
    load_calibration,
)
from trait_lab.dynamics.per_token import PER_TOKEN_NAME, load_per_token
from trait_lab.testing import tiny_batch, tiny_model, tiny_tokenizer

OTHER_PROMPTS = ["the cat sat on the mat", "hello there, how are you?", "two plus two is four"]


@pytest.fixture(scope="module")
def model():
    m = tiny_model("llama")
    warm(m, tiny_batch(1, 3))
    return m


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def _n_tokens(tok, prompts) -> int:
    return sum(len(tok(p)["input_ids"]) for p in prompts)


def _raise_on_call(model, n: int):
    """A forward hook on layer 1 that raises on its ``n``-th call (a run failing midway)."""
    calls = []

    def hook(*_):
        calls.append(1)
        if len(calls) == n:
            raise RuntimeError("boom midway")

    return model.model.layers[1].register_forward_hook(hook)


class TestRebuild:
    def test_overwrite_replaces_a_calibration_from_other_prompts(self, model, tok, tmp_path):
        path = calibration_path("exp", "inst", root=tmp_path)
        old = calibrate(model, tok, OTHER_PROMPTS, path)
        assert (old["prompt_source"], old["n_prompts"]) == ("custom", 3)
        assert old["tokens_seen"] == _n_tokens(tok, OTHER_PROMPTS)
        kept = ensure_calibration(model, tok, "exp", "inst", root=tmp_path)
        assert kept == old  # valid, so without overwrite it is reused
        new = ensure_calibration(model, tok, "exp", "inst", root=tmp_path, overwrite=True)
        assert (new["prompt_source"], new["n_prompts"]) == ("neutral", 50)
        assert new["tokens_seen"] == _n_tokens(tok, NEUTRAL_PROMPTS)
        assert load_calibration(path) == new
        assert not path.with_name(STATE_NAME).exists() and not list(path.parent.glob(TEMP_GLOB))

    def test_old_file_intact_when_the_rebuild_fails_midway(self, model, tok, tmp_path):
        path = calibration_path("exp", "inst", root=tmp_path)
        calibrate(model, tok, OTHER_PROMPTS, path)
        before, hooks = path.read_bytes(), hook_counts(model)
        handle = _raise_on_call(model, 3)  # the third of seven batches of 8
        try:
            with pytest.raises(RuntimeError, match="boom midway"):
                ensure_calibration(model, tok, "exp", "inst", root=tmp_path, overwrite=True)
        finally:
            handle.remove()
        assert path.read_bytes() == before
        assert hook_counts(model) == hooks
        assert not path.with_name(STATE_NAME).exists() and not list(path.parent.glob(TEMP_GLOB))

    def test_per_token_pass_failing_leaves_both_files_alone(self, model, tok, tmp_path):
        path = tmp_path / "calibration.json"
        calibrate(model, tok, OTHER_PROMPTS, path)
        before = path.read_bytes()
        handle = _raise_on_call(model, 2)  # one batch collects, the per-token pass fails
        try:
            with pytest.raises(RuntimeError, match="boom midway"):
                calibrate(model, tok, OTHER_PROMPTS[:2], path, per_token=True)
        finally:
            handle.remove()
        assert path.read_bytes() == before and not (tmp_path / PER_TOKEN_NAME).exists()

    def test_passive_calibration_records_its_source(self, model, tmp_path):
        with torch.no_grad(), passive_collector(model, "exp", "inst", root=tmp_path, max_tokens=5):
            model(**tiny_batch(1, 6))
        record = load_calibration(calibration_path("exp", "inst", root=tmp_path))
        assert record["prompt_source"] == "inference" and "n_prompts" not in record

    @pytest.mark.parametrize(
        ("kwargs", "error", "match"),
        [
            ({"prompts": []}, ValueError, "prompts is empty"),
            ({"prompts": "one prompt"}, TypeError, "prompts is one string"),
            ({"prompts": ["ok", 7]}, TypeError, r"prompts\[1\] is 7 \(int\)"),
            ({"prompts": ["ok", "  "]}, ValueError, r"prompts \[1\] are blank"),
            ({"batch_size": 0}, ValueError, "batch_size must be a positive int, got 0"),
            ({"source": ""}, ValueError, "source must name the prompts"),
        ],
    )
    def test_bad_calibrate_arguments(self, model, tok, tmp_path, kwargs, error, match):
        args = {"prompts": OTHER_PROMPTS, "batch_size": 8, "source": None, **kwargs}
        out = tmp_path / "c.json"
        with pytest.raises(error, match=match):
            calibrate(
                model,
                tok,
                args["prompts"],
                out,
                batch_size=args["batch_size"],
                source=args["source"],
            )
        assert not out.exists()

    def test_bad_overwrite(self, model, tok, tmp_path):
        with pytest.raises(TypeError, match="overwrite must be True or False, got 'yes'"):
            ensure_calibration(model, tok, "exp", "inst", root=tmp_path, overwrite="yes")

    @pytest.mark.parametrize(
        ("key", "value", "match"),
        [("n_prompts", -1, "n_prompts must be a non-negative int"), ("prompt_source", 3, "string")],
    )
    def test_bad_recorded_source_is_corrupt(self, model, tok, tmp_path, key, value, match):
        path = tmp_path / "c.json"
        calibrate(model, tok, OTHER_PROMPTS, path)
        path.write_text(json.dumps({**json.loads(path.read_text()), key: value}))
        with pytest.raises(CalibrationError, match=match):
            load_calibration(path)


def _reference(model, ids: list[int]) -> np.ndarray:
    """``[layers, tokens, hidden]`` residual stream from HF output_hidden_states (norm removed)."""
    ref = copy.deepcopy(model)
    ref.model.norm = torch.nn.Identity()
    with torch.no_grad():
        out = ref(input_ids=torch.tensor([ids]), output_hidden_states=True)
    return torch.stack(out.hidden_states[1:])[:, 0].double().numpy()


class TestPerToken:
    def test_values_equal_hf_hidden_states(self, model, tok, tmp_path):
        prompts = OTHER_PROMPTS  # different lengths: batches of 2 are right-padded
        record, table = calibrate(
            model, tok, prompts, tmp_path / "calibration.json", per_token=True, batch_size=2
        )
        assert table == load_per_token(tmp_path / PER_TOKEN_NAME)
        assert table["schema"] == "trait_lab.massive_per_token" and table["schema_version"] == 1
        dims = sorted(set(record["candidates"]) | set(dims_to_clean(record, "top5")))
        assert table["dims"] == dims and dims
        assert table["layers"] == [0, 1, 2] and table["prompt_source"] == "custom"
        assert [row["prompt"] for row in table["prompts"]] == prompts
        for prompt, row in zip(prompts, table["prompts"], strict=True):
            assert row["input_ids"] == tok(prompt)["input_ids"]  # padding dropped
            want = _reference(model, row["input_ids"])[..., dims]
            np.testing.assert_allclose(np.array(row["values"]), want, atol=1e-5, rtol=1e-5)

    def test_research_mode_per_token_on_request(self, model, tok, tmp_path):
        prompts = tmp_path / "probe_set.txt"
        prompts.write_text("one two three\nfour five\n")
        record, folder = research_calibration(
            model, tok, "exp", "inst", prompts, root=tmp_path, per_token=True
        )
        table = load_per_token(folder / PER_TOKEN_NAME)
        assert record["prompt_source"] == table["prompt_source"] == "probe_set"
        assert [row["prompt"] for row in table["prompts"]] == ["one two three", "four five"]
        research_calibration(model, tok, "exp", "inst", prompts, root=tmp_path)
        assert not (folder / PER_TOKEN_NAME).exists()  # the stale one no longer matches
        assert load_calibration(folder / "calibration.json")["n_prompts"] == 2

    @pytest.mark.parametrize(
        ("corrupt", "match"),
        [
            (lambda t: {**t, "schema_version": 9}, "schema_version 9"),
            (lambda t: {k: v for k, v in t.items() if k != "dims"}, r"missing keys \['dims'\]"),
            (lambda t: {**t, "dims": [1.5]}, "lists of ints"),
            (lambda t: {**t, "prompts": [{**t["prompts"][0], "values": [[1.0]]}]}, "has shape"),
            (lambda t: {**t, "prompts": [{"input_ids": [1], "values": []}]}, "needs 'prompt'"),
        ],
        ids=["newer-version", "missing-key", "float-dim", "bad-shape", "no-prompt"],
    )
    def test_corrupt_file_is_refused_naming_it(self, model, tok, tmp_path, corrupt, match):
        _, table = calibrate(model, tok, OTHER_PROMPTS[:1], tmp_path / "c.json", per_token=True)
        path = tmp_path / PER_TOKEN_NAME
        path.write_text(json.dumps(corrupt(table)))
        with pytest.raises(CalibrationError, match=match) as info:
            load_per_token(path)
        assert str(path) in str(info.value)

    def test_missing_file(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="no per-token file"):
            load_per_token(tmp_path / PER_TOKEN_NAME)


class TestCli:
    @pytest.fixture()
    def experiment(self, model, tok, tmp_path, monkeypatch):
        (tmp_path / "exp").mkdir()
        config = {"model_variants": {"inst": {"model": None}}, "default_variant": "inst"}
        (tmp_path / "exp" / "config.json").write_text(json.dumps(config))
        monkeypatch.setenv("TRAIT_LAB_EXPERIMENTS", str(tmp_path))
        monkeypatch.setattr(cli, "load_model", lambda *a, **k: (model, tok))
        return tmp_path

    def test_overwrite_rebuilds_from_the_neutral_prompts(self, model, tok, experiment, capsys):
        path = calibration_path("exp", "inst", root=experiment)
        calibrate(model, tok, OTHER_PROMPTS, path)
        assert cli.main(["calibrate", "--experiment", "exp"]) == 0
        out = capsys.readouterr().out
        assert "(prompts: 3 custom)" in out and "pass --overwrite to rebuild it" in out
        assert load_calibration(path)["prompt_source"] == "custom"
        assert cli.main(["calibrate", "--experiment", "exp", "--overwrite"]) == 0
        out = capsys.readouterr().out
        assert "(prompts: 50 neutral)" in out and "--overwrite" not in out
        assert load_calibration(path)["n_prompts"] == 50

    def test_research_per_token(self, experiment, capsys):
        argv = ["calibrate", "--experiment", "exp", "--prompt-set", "borderline", "--per-token"]
        assert cli.main(argv) == 0
        out = capsys.readouterr().out
        path = calibration_path("exp", "inst", root=experiment).parent / "research" / "borderline"
        assert f"per-token values: {path / PER_TOKEN_NAME}" in out
        assert load_per_token(path / PER_TOKEN_NAME)["prompt_source"] == "borderline"

    def test_per_token_needs_a_prompt_set(self, experiment, capsys, monkeypatch):
        monkeypatch.setattr(cli, "load_model", pytest.fail)  # refused before loading a model
        assert cli.main(["calibrate", "--experiment", "exp", "--per-token"]) == 2
        assert "--per-token is research mode and needs a prompt set" in capsys.readouterr().err
