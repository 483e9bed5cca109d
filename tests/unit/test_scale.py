"""typical_norms and typical_cosines against a direct computation from output_hidden_states."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trait_lab.activations.norms import coefficient_for, typical_cosines, typical_norms
from trait_lab.testing import tiny_batch, tiny_model
from widgets.steering.targets import coefficients, steering_targets


def test_median_over_real_non_first_tokens() -> None:
    model = tiny_model()
    batch = tiny_batch(2, 6, left_pad=(0, 3))
    norms = typical_norms(model, batch, layers=[0, 1])
    with torch.no_grad():
        hidden = model(**batch, output_hidden_states=True).hidden_states
    for layer in (0, 1):
        h = hidden[layer + 1]
        rows = [h[0, 1:], h[1, 4:]]  # row 1's first real token is index 3
        expected = torch.cat(rows).norm(dim=-1).median()
        assert norms[layer] == pytest.approx(float(expected))


@pytest.mark.parametrize("quantile", [0.5, 0.99, 1.0])
def test_typical_cosines_is_the_quantile_of_abs_cosine_over_the_same_tokens(quantile) -> None:
    model = tiny_model()
    batch = tiny_batch(2, 6, left_pad=(0, 3))
    gen = torch.Generator().manual_seed(1)
    vectors = {0: torch.randn(32, generator=gen), 1: torch.randn(32, generator=gen)}
    got = typical_cosines(model, batch, vectors, quantile=quantile)
    with torch.no_grad():
        hidden = model(**batch, output_hidden_states=True).hidden_states
    for layer, v in vectors.items():
        h = hidden[layer + 1].double().numpy()
        tokens = np.concatenate([h[0, 1:], h[1, 4:]])  # the same tokens typical_norms uses
        u = v.double().numpy()
        cos = np.abs(tokens @ u / (np.linalg.norm(tokens, axis=1) * np.linalg.norm(u)))
        assert got[layer] == pytest.approx(float(np.quantile(cos, quantile)), rel=1e-5)


def test_typical_cosines_refuses_no_vectors_and_bad_quantiles() -> None:
    with pytest.raises(ValueError, match="no vectors"):
        typical_cosines(tiny_model(), tiny_batch(1, 4), {})
    with pytest.raises(ValueError, match=r"quantile must be in \(0, 1\]"):
        typical_cosines(tiny_model(), tiny_batch(1, 4), {0: torch.ones(32)}, quantile=0)


def test_single_token_sequences_are_refused() -> None:
    with pytest.raises(ValueError, match="single token"):
        typical_norms(tiny_model(), tiny_batch(2, 1))


def test_coefficient_for_unknown_layer() -> None:
    with pytest.raises(KeyError, match=r"measured: \[1\]"):
        coefficient_for({1: 2.0}, 3, 0.5)


@pytest.mark.parametrize(("mode", "expected"), [("add", -3.0), ("cap", -3.0), ("ceiling", -3.0)])
def test_coefficient_for_scales_by_the_typical_norm(mode: str, expected: float) -> None:
    assert coefficient_for({4: 10.0}, 4, -0.3, mode) == pytest.approx(expected)


def test_coefficient_for_ablate_is_the_strength_itself() -> None:
    assert coefficient_for({}, 4, 0.5, "ablate") == 0.5


def test_coefficient_for_unknown_mode() -> None:
    with pytest.raises(ValueError, match=r"unknown steering mode 'steer'; choose one of"):
        coefficient_for({4: 10.0}, 4, 0.5, "steer")


def test_the_panel_uses_the_same_rule() -> None:
    target = steering_targets({"t": {2: torch.ones(4), 3: torch.ones(4)}}, 4, 4)[0]
    norms = {2: 10.0, 3: 20.0}
    for mode in ("add", "ablate", "cap", "ceiling"):
        assert coefficients(target, 0.25, 3, mode, norms) == {
            3: coefficient_for(norms, 3, 0.25, mode)
        }
