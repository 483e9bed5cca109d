"""Massive activations of SmolLM2-135M-Instruct: calibration finds them, cleaning removes them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trait_lab.dynamics.calibration import calibrate, ensure_calibration
from trait_lab.dynamics.cleaning import clean_norms, clean_projection, dims_to_clean
from trait_lab.dynamics.massive import NEUTRAL_PROMPTS, load_calibration
from trait_lab.dynamics.per_token import load_per_token
from trait_lab.hooks import MultiLayerCapture

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def neutral_calibration(default_model, tmp_path_factory):
    model, tokenizer = default_model
    root = tmp_path_factory.mktemp("experiments")
    return ensure_calibration(model, tokenizer, "smol", "instruct", root=root)


def test_finds_dim_507_massive_at_middle_layers(neutral_calibration) -> None:
    cal = neutral_calibration
    assert cal["tokens_seen"] > 300
    print("\nlayer: top dims (max |h|, ratio to median mean |h|)")
    for entry in cal["layers"]:
        top = zip(entry["top_dims"][:4], entry["top_max_abs"], entry["top_ratio"], strict=False)
        cells = ", ".join(f"{d} ({m:.0f}, {r:.0f}x)" for d, m, r in top)
        print(f"{entry['layer']:>2}: {cells}  mean norm {entry['mean_norm']:.0f}")
    print("candidates:", cal["candidates"])
    print("top5 (Top 5, 3+ layers):", dims_to_clean(cal, "top5"))
    assert {507, 247} <= set(cal["candidates"])
    middle = [e for e in cal["layers"] if 11 <= e["layer"] <= 26]
    assert all(e["top_dims"][:2] == [507, 247] for e in middle)
    assert all(e["top_ratio"][0] > 1000 and e["top_max_abs"][0] > 20000 for e in middle)
    assert 507 in dims_to_clean(cal, "top5")


def test_cleaning_equals_zeroed_recompute_on_recorded_data(
    default_model, neutral_calibration
) -> None:
    model, tokenizer = default_model
    ids = tokenizer("The weather today is calm and mild.", return_tensors="pt")
    with torch.no_grad(), MultiLayerCapture(model, [6, 12, 20]) as cap:
        model(**ids)
    rng = np.random.default_rng(0)
    v = rng.normal(size=model.config.hidden_size)
    v /= np.linalg.norm(v)
    for option in ("top5", "all"):
        dims = dims_to_clean(neutral_calibration, option)
        assert dims
        for layer in (6, 12, 20):
            h = cap.get(layer)[0].double().numpy()
            zeroed = h.copy()
            zeroed[:, dims] = 0
            got = clean_projection(h @ v, h[:, dims], v, dims)
            np.testing.assert_allclose(got, zeroed @ v, atol=1e-5, rtol=0)
            norms = clean_norms(np.linalg.norm(h, axis=-1), h[:, dims], dims)
            np.testing.assert_allclose(norms, np.linalg.norm(zeroed, axis=-1), atol=1e-5, rtol=0)


def test_per_token_research_mode(default_model, tmp_path) -> None:
    model, tokenizer = default_model
    record, table = calibrate(
        model, tokenizer, NEUTRAL_PROMPTS[:4], tmp_path / "calibration.json", per_token=True
    )
    assert load_calibration(tmp_path / "calibration.json") == record
    assert load_per_token(tmp_path / "per_token.json") == table
    assert 507 in table["dims"]
    col = table["dims"].index(507)
    values = np.array(table["prompts"][0]["values"][12])
    first_token = abs(values[0, col])
    later = np.abs(values[1:, col])
    assert first_token > 10 * later.max()
