"""trait_matrix composes cleaning, mode, smoothing and centring exactly as the pure functions do."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import CALIBRATION, PROMPTS, make_tokenizer
from trait_lab.dynamics.cleaning import apply_mode, center, smooth
from trait_lab.dynamics.inference import project_prompts
from trait_lab.dynamics.matrix import trait_matrix
from trait_lab.testing import tiny_model


@pytest.fixture(scope="module")
def record():
    import torch

    gen = torch.Generator().manual_seed(3)
    vectors = {layer: torch.randn(32, generator=gen) for layer in (0, 1, 2)}
    (rec, _) = project_prompts(
        tiny_model(), make_tokenizer(), PROMPTS, {"t": vectors}, CALIBRATION, max_new_tokens=6
    )
    return rec


@pytest.mark.parametrize("clean", ["none", "top5", "all"])
def test_matrix_equals_the_pure_functions(record, clean: str) -> None:
    layers, values, norms = trait_matrix(record, "t", clean=clean, mode="cosine", smoothing=3)
    assert layers == [0, 1, 2] and values.shape == (3, record.n_tokens)
    for i, layer in enumerate(layers):
        s, n = record.cleaned("t", layer, clean)
        expected = smooth(apply_mode(s, n, "cosine"), 3, record.boundary)
        np.testing.assert_allclose(values[i], expected)
        np.testing.assert_allclose(norms[i], n)


def test_cleaning_changes_the_matrix(record) -> None:
    _, raw, _ = trait_matrix(record, "t", clean="none", mode="raw")
    _, cleaned, _ = trait_matrix(record, "t", clean="all", mode="raw")
    assert not np.allclose(raw, cleaned)


def test_centring_over_response_tokens(record) -> None:
    _, values, _ = trait_matrix(record, "t", mode="normalized", centre=True)
    s, n = record.cleaned("t", 1, "none")
    mask = np.arange(record.n_tokens) >= record.boundary
    expected = center(apply_mode(s, n, "normalized", response_mask=mask), mask)
    np.testing.assert_allclose(values[1], expected)


def test_bad_option_and_trait(record) -> None:
    with pytest.raises(ValueError, match="unknown clean option 'Top 5'"):
        trait_matrix(record, "t", clean="Top 5")
    with pytest.raises(ValueError, match="pass clean option 'all' instead"):
        trait_matrix(record, "t", clean="All candidates")
    with pytest.raises(KeyError, match="no trait 'x'"):
        trait_matrix(record, "x")
