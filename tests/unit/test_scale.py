"""typical_norms against a direct computation from output_hidden_states."""

from __future__ import annotations

import pytest
import torch

from trait_lab.activations.norms import coefficient_for, typical_norms
from trait_lab.testing import tiny_batch, tiny_model


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


def test_single_token_sequences_are_refused() -> None:
    with pytest.raises(ValueError, match="single token"):
        typical_norms(tiny_model(), tiny_batch(2, 1))


def test_coefficient_for_unknown_layer() -> None:
    with pytest.raises(KeyError, match=r"measured: \[1\]"):
        coefficient_for({1: 2.0}, 3, 0.5)
