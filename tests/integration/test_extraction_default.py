"""The extraction pipeline on the default model: outputs, resumption, no-op reruns, selection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import dies_on_call
from trait_lab.extraction.methods import get_method
from trait_lab.extraction.pipeline import (
    METRICS_LOG,
    ExtractionSettings,
    extract_trait,
    vector_path,
)
from trait_lab.io.vectors import load_vector
from trait_lab.traits.dataset import load_trait
from trait_lab.vectors.selection import load_selected, select_vector, select_vectors

pytestmark = pytest.mark.integration

SETTINGS = ExtractionSettings(methods=("mean_diff", "probe", "random_baseline"), layers=(6, 20))


@pytest.fixture(scope="module")
def refusal_run(default_model, tmp_path_factory):
    model, tokenizer = default_model
    out = tmp_path_factory.mktemp("exp") / "default" / "extraction" / "refusal" / "instruct"
    summary = extract_trait(model, tokenizer, "refusal", out, SETTINGS)
    return out, summary


def test_outputs_and_metrics(refusal_run) -> None:
    out, summary = refusal_run
    for name in ("inputs.json", "metrics.csv", "metadata.json", METRICS_LOG):
        assert (out / name).is_file(), name
    assert summary.computed == 6 and len(summary.metrics) == 6
    best = summary.best("mean_diff")
    assert best["val_accuracy"] >= 0.9 and best["val_polarity_correct"]
    meta = json.loads((out / "metadata.json").read_text())["data"]
    assert meta["captured_layers"] == [6, 20] and meta["hidden_dim"] == 576


def test_saved_vector_equals_a_recomputation(refusal_run) -> None:
    out, _ = refusal_run
    acts = load_file(str(out / "activations" / "residual.safetensors"))
    assert acts["pos"].shape == (64, 2, 576)
    dataset = load_trait("refusal")
    split = json.loads((out / "inputs.json").read_text())["split"]
    index = {p.id: i for i, p in enumerate(dataset.pairs)}
    train = [index[i] for i in split["train"]]
    expected = get_method("mean_diff").extract(acts["pos"][train, 1], acts["neg"][train, 1]).vector
    saved = load_vector(vector_path(out, "residual", "mean_diff", 20))
    torch.testing.assert_close(saved, expected)
    assert abs(float(saved.norm()) - 1) < 1e-5


def test_rerun_is_a_no_op(default_model, refusal_run) -> None:
    out, _ = refusal_run
    stamp = (out / METRICS_LOG).stat().st_mtime_ns
    again = extract_trait(*default_model, "refusal", out, SETTINGS)
    assert (again.computed, again.skipped) == (0, 6)
    assert (out / METRICS_LOG).stat().st_mtime_ns == stamp


def test_changed_inputs_are_refused_unless_overwrite(default_model, refusal_run) -> None:
    out, _ = refusal_run
    other = ExtractionSettings(methods=("mean_diff",), layers=(6, 20), seed=1)
    with pytest.raises(ValueError, match="different inputs"):
        extract_trait(*default_model, "refusal", out, other)


def test_killed_run_resumes_without_redoing_finished_layers(
    default_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = ExtractionSettings(methods=("mean_diff", "probe"), layers=(6, 20))
    probe = type(get_method("probe"))
    real = dies_on_call(monkeypatch, probe, "extract", 2)
    with pytest.raises(KeyboardInterrupt):
        extract_trait(*default_model, "refusal", tmp_path, settings)
    monkeypatch.setattr(probe, "extract", real)
    # a kill in the middle of an append leaves half a line: it is dropped and redone
    with (tmp_path / METRICS_LOG).open("a") as log:
        log.write('{"component": "resid')
    resumed = extract_trait(*default_model, "refusal", tmp_path, settings)
    assert (resumed.computed, resumed.skipped) == (1, 3)
    fresh = extract_trait(*default_model, "refusal", tmp_path / "fresh", settings)
    cols = ["method", "layer", "val_accuracy", "val_effect_size"]
    assert resumed.metrics[cols].equals(fresh.metrics[cols])


def test_selection_gates_and_order(refusal_run) -> None:
    out, _ = refusal_run
    root = out.parents[3]
    best = select_vector("default", "refusal", root=str(root))
    assert best.method != "random_baseline" and best.source == "extraction"
    assert best.position == "response[:]"
    assert load_selected(best).shape == (576,)
    ranked = select_vectors("default", "refusal", n=4, root=str(root))
    sizes = [r.effect_size for r in ranked]
    assert sizes == sorted(sizes, reverse=True)
    with pytest.raises(ValueError, match="passes the gates"):
        select_vector("default", "refusal", root=str(root), methods=["mean_diff"], min_accuracy=1.1)


def _own_trait(folder: Path, n: int = 8) -> Path:
    folder.mkdir(parents=True)
    (folder / "trait.json").write_text(
        json.dumps(
            {
                "definition": {"positive": "cheerful", "negative": "gloomy"},
                "kind": "system_prompt",
            }
        )
    )
    topics = ["rain", "Mondays", "the future", "my job", "winter", "exams", "traffic", "cooking"]
    pairs = [
        {
            "id": f"own-{i}",
            "question": f"What do you think about {topics[i]}?",
            "positive": "You are a cheerful optimist.",
            "negative": "You are a gloomy pessimist.",
        }
        for i in range(n)
    ]
    (folder / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    (folder / "steering.txt").write_text("How will tomorrow be?\n")
    return folder


def test_generated_responses_from_your_own_trait_folder(default_model, tmp_path: Path) -> None:
    trait = _own_trait(tmp_path / "mytrait")
    settings = ExtractionSettings(
        methods=("mean_diff",), layers=(10,), generate_responses=True, max_new_tokens=6
    )
    with pytest.warns(UserWarning, match="fewer than"):
        summary = extract_trait(*default_model, str(trait), tmp_path / "out", settings)
    responses = json.loads((tmp_path / "out" / "responses.json").read_text())
    assert len(responses["positive"]) == 8 and all(r.strip() for r in responses["negative"])
    assert json.loads((tmp_path / "out" / "inputs.json").read_text())["position"] == "response[:]"
    assert summary.computed == 1
    with pytest.warns(UserWarning):
        again = extract_trait(*default_model, str(trait), tmp_path / "out", settings)
    assert again.computed == 0


def test_generate_responses_needs_a_system_prompt_trait(default_model, tmp_path: Path) -> None:
    settings = ExtractionSettings(methods=("mean_diff",), layers=(10,), generate_responses=True)
    with pytest.raises(ValueError, match="needs a system_prompt trait"):
        extract_trait(*default_model, "refusal", tmp_path, settings)


def test_cli_reports_errors_without_a_traceback(capsys, tmp_path: Path, monkeypatch) -> None:
    from trait_lab.cli import main

    monkeypatch.setenv("TRAIT_LAB_EXPERIMENTS", str(tmp_path))
    assert main(["extract", "--trait", "refusal"]) == 2
    assert "no experiment config" in capsys.readouterr().err


def test_too_few_pairs_is_explained_before_any_work(default_model, tmp_path: Path) -> None:
    trait = _own_trait(tmp_path / "tiny", n=4)
    settings = ExtractionSettings(methods=("mean_diff",), layers=(10,))
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="at least 2 validation pairs"):
        extract_trait(*default_model, str(trait), tmp_path / "out", settings)
    assert not (tmp_path / "out" / "activations").exists()
