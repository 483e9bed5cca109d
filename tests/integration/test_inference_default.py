"""run_inference on SmolLM2-135M-Instruct: resumable records, consistent shapes, cleaning works."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trait_lab.dynamics.cleaning import apply_mode
from trait_lab.dynamics.inference import records_dir, run_inference
from trait_lab.dynamics.records import load_record

pytestmark = pytest.mark.integration

PROMPTS = ["What is the capital of France?", "Say something kind."]
LAYERS = (10, 20)


@pytest.fixture(scope="module")
def run(default_model, tmp_path_factory):
    model, tokenizer = default_model
    root = tmp_path_factory.mktemp("experiments")
    gen = torch.Generator().manual_seed(0)
    hidden = model.config.hidden_size
    vectors = {layer: torch.nn.functional.normalize(torch.randn(hidden, generator=gen), dim=0)
               for layer in LAYERS}  # fmt: skip
    paths = run_inference("smol", "smoke", PROMPTS, {"random": vectors}, root=root,
                          model=model, tokenizer=tokenizer, max_new_tokens=8)  # fmt: skip
    return root, paths, vectors


def test_files_exist_and_rerun_skips(run) -> None:
    root, paths, vectors = run
    assert [p.name for p in paths] == ["0.json", "1.json"]
    assert paths[0].parent == records_dir("smol", "instruct", "smoke", root)
    stamps = [p.stat().st_mtime_ns for p in paths]
    # Every record exists, so no model is needed (none is loaded) and nothing is rewritten.
    again = run_inference("smol", "smoke", PROMPTS, {"random": vectors}, root=root,
                          model=None, tokenizer=None, max_new_tokens=8)  # fmt: skip
    assert again == paths
    assert [p.stat().st_mtime_ns for p in paths] == stamps


def test_record_shapes_are_consistent(run) -> None:
    _, paths, _ = run
    for path in paths:
        rec = load_record(path)
        n = rec.n_tokens
        assert 1 <= len(rec.response_tokens) <= 8 and rec.boundary == len(rec.prompt_tokens)
        assert sorted(rec.norms) == list(LAYERS) and sorted(rec.projections["random"]) == [10, 20]
        for layer in LAYERS:
            assert len(rec.projections["random"][layer]) == len(rec.norms[layer]) == n
            assert np.asarray(rec.dim_values[layer]).shape == (n, len(rec.candidate_dims))
        assert {507, 247} <= set(rec.candidate_dims)


def test_cleaning_removes_the_first_token_massive_dims(run) -> None:
    """At layer 20 the first token carries the massive dims (‖h‖ ≈ 25000): cleaning moves its
    RAW projection far more than any other token's and cuts its norm >5x. In cosine mode the
    massive norm divides out, so for a random vector the first token's cosine changes by about
    as much as the others' (both ~1/sqrt(hidden)); the numbers are printed for the record."""
    _, paths, _ = run
    print("\nprompt layer: mean |Δ cosine| first / rest | mean |Δ raw| first / rest | norm first")
    for i, path in enumerate(paths):
        rec = load_record(path)
        for layer in LAYERS:
            s, n = rec.raw("random", layer)
            cs, cn = rec.cleaned("random", layer, "top5")
            dcos = np.abs(apply_mode(cs, cn, "cosine") - apply_mode(s, n, "cosine"))
            draw = np.abs(cs - s)
            print(f"{i} L{layer}: cos {dcos[0]:.4f} / {dcos[1:].mean():.4f} | raw "
                  f"{draw[0]:.2f} / {draw[1:].mean():.2f} | {n[0]:.0f} -> {cn[0]:.0f}")  # fmt: skip
            assert dcos[1:].mean() > 1e-3  # cleaning changes cosine scores everywhere
            if layer == 20:
                assert n[0] > 5000 and cn[0] < n[0] / 5
                assert draw[0] > draw[1:].mean()


def test_first_run_calibrated_passively_from_its_own_prompts(run, default_model) -> None:
    from trait_lab.dynamics.calibration import ensure_calibration
    from trait_lab.dynamics.massive import calibration_path, load_calibration

    root, _, _ = run
    model, tokenizer = default_model
    record = load_calibration(calibration_path("smol", "instruct", root))
    # this run's two prompts, then neutral prompts, until ~5000 tokens or the set ran out
    assert 200 < record["tokens_seen"] <= 5000
    assert 507 in record["candidates"]
    again = ensure_calibration(model, tokenizer, "smol", "instruct", root)
    assert again["tokens_seen"] == record["tokens_seen"]  # found and reused, not rebuilt


def test_changed_traits_are_refused_unless_overwrite(default_model, tmp_path) -> None:
    model, tokenizer = default_model
    hidden = model.config.hidden_size
    first = {"t": {10: torch.ones(hidden)}}
    second = {"t": {10: -torch.ones(hidden)}}
    kwargs = {"root": tmp_path, "model": model, "tokenizer": tokenizer, "max_new_tokens": 3}
    (path,) = run_inference("smol", "set", PROMPTS[:1], first, **kwargs)
    before, _ = load_record(path).raw("t", 10)
    with pytest.raises(ValueError, match="different prompts, traits or settings"):
        run_inference("smol", "set", PROMPTS[:1], second, **kwargs)
    (path,) = run_inference("smol", "set", PROMPTS[:1], second, overwrite=True, **kwargs)
    after, _ = load_record(path).raw("t", 10)
    np.testing.assert_allclose(after, -before, rtol=1e-6, atol=1e-6)  # the flipped vector
