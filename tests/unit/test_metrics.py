"""Metrics on projection scores, checked against numpy and scipy computed in the test."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr

from trait_lab.math.metrics import accuracy, effect_size, pearson_correlation, polarity_correct


def cohens_d(pos: np.ndarray, neg: np.ndarray) -> float:
    """Cohen's d written out: pooled variance from n-1 sample variances."""
    n1, n2 = len(pos), len(neg)
    v1 = ((pos - pos.mean()) ** 2).sum() / (n1 - 1)
    v2 = ((neg - neg.mean()) ** 2).sum() / (n2 - 1)
    pooled = ((n1 - 1) * v1 + (n2 - 1) * v2) / (n1 + n2 - 2)
    return float((pos.mean() - neg.mean()) / np.sqrt(pooled))


def groups(seed: int, shift: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(shift, 1.0, 13), rng.normal(0.0, 2.0, 7)


class TestEffectSize:
    @pytest.mark.parametrize("seed", range(5))
    def test_matches_hand_written_cohens_d(self, seed: int) -> None:
        pos, neg = groups(seed, shift=float(seed - 2))
        d = cohens_d(pos, neg)
        assert effect_size(pos, neg, signed=True) == pytest.approx(d, rel=1e-12)
        assert effect_size(torch.tensor(pos), neg) == pytest.approx(abs(d), rel=1e-12)
        assert effect_size(neg, pos, signed=True) == pytest.approx(-d, rel=1e-12)

    def test_zero_pooled_variance(self) -> None:
        assert effect_size([0.1] * 3, [0.2] * 4, signed=True) == -math.inf
        assert effect_size([0.1] * 3, [0.2] * 4) == math.inf
        assert effect_size([0.3, 0.3], [0.1, 0.1], signed=True) == math.inf
        assert effect_size([0.5, 0.5], [0.5, 0.5, 0.5]) == 0.0

    def test_low_precision_scores(self) -> None:
        pos, neg = groups(0)
        low = torch.tensor(pos).to(torch.bfloat16)
        assert effect_size(low, neg) == pytest.approx(abs(cohens_d(low.double().numpy(), neg)))


class TestAccuracy:
    @pytest.mark.parametrize("seed", range(4))
    def test_matches_numpy_with_midpoint_threshold(self, seed: int) -> None:
        def by_hand(pos: np.ndarray, neg: np.ndarray) -> float:
            cut = (pos.mean() + neg.mean()) / 2
            return float(((pos > cut).sum() + (neg <= cut).sum()) / (len(pos) + len(neg)))

        pos, neg = groups(seed)
        assert accuracy(pos, neg) == pytest.approx(by_hand(pos, neg), abs=1e-12)
        half = torch.tensor(pos, dtype=torch.float16)
        expected = by_hand(half.double().numpy(), neg)
        assert accuracy(half, neg.tolist()) == pytest.approx(expected, abs=1e-12)

    def test_explicit_threshold_and_ties(self) -> None:
        # a score equal to the threshold is predicted negative
        assert accuracy([1.0, 2.0], [0.0, 1.0], threshold=1.0) == 0.75
        assert accuracy([1.0, 2.0], [0.0, 1.0], threshold=0.5) == 0.75
        assert accuracy([5.0], [-5.0], threshold=10.0) == 0.5

    def test_wrong_polarity_scores_below_half(self) -> None:
        pos, neg = groups(1, shift=3.0)
        assert accuracy(neg, pos) < 0.5 < accuracy(pos, neg)
        assert polarity_correct(pos, neg) and not polarity_correct(neg, pos)
        assert not polarity_correct([1.0, 3.0], [2.0, 2.0])  # equal means


class TestPearson:
    @pytest.mark.parametrize("seed", range(4))
    def test_matches_scipy(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        a = rng.normal(size=30)
        b = 0.5 * a + rng.normal(size=30)
        assert pearson_correlation(a, b) == pytest.approx(pearsonr(a, b)[0], abs=1e-12)
        assert pearson_correlation(torch.tensor(a, dtype=torch.float32), b) == pytest.approx(
            pearsonr(a.astype(np.float32).astype(np.float64), b)[0], abs=1e-12
        )

    def test_perfect_correlation_stays_in_range(self) -> None:
        x = np.linspace(0, 1, 50) * 0.1
        up, down = pearson_correlation(x, 3 * x + 1), pearson_correlation(x, -x)
        assert -1.0 <= down <= up <= 1.0
        assert up == pytest.approx(1.0, abs=1e-12) and down == pytest.approx(-1.0, abs=1e-12)


ERROR_CASES: list[tuple[Callable[[], Any], type[Exception], str]] = [
    (lambda: effect_size([1.0], [1.0, 2.0]), ValueError, "pos_scores has 1 score.*at least 2"),
    (lambda: effect_size([1.0, 2.0], []), ValueError, "neg_scores has 0 score"),
    (lambda: accuracy([], [1.0]), ValueError, "pos_scores has 0 score"),
    (lambda: accuracy([1.0, np.nan], [1.0]), ValueError, "pos_scores contains 1 NaN or inf"),
    (lambda: accuracy([1.0], [1.0], threshold=math.nan), ValueError, "threshold=nan"),
    (lambda: polarity_correct(np.ones((2, 2)), [1.0]), ValueError, r"shape \(2, 2\); flatten"),
    (lambda: polarity_correct(np.array(["a"]), [1.0]), TypeError, "pos_scores must be a 1-D"),
    (lambda: effect_size([1.0, math.inf], [1.0, 2.0]), ValueError, "NaN or inf"),
    (lambda: pearson_correlation([1.0, 2.0], [1.0, 2.0, 3.0]), ValueError, "2 values but b has 3"),
    (lambda: pearson_correlation([1.0, 1.0], [1.0, 2.0]), ValueError, "a is constant"),
    (lambda: pearson_correlation([1.0], [1.0]), ValueError, "at least 2"),
]


@pytest.mark.parametrize(("call", "error", "message"), ERROR_CASES)
def test_errors_name_the_problem(call: Callable[[], Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        call()
