"""Metrics on projection scores: how well a trait vector separates positive from negative.

Scores are 1-D torch tensors (any float dtype, bf16 included), numpy arrays or lists, typically
``projection`` or ``batch_cosine_similarity`` outputs for the positive and negative examples.
Everything is computed in float64 and returned as a Python ``float`` or ``bool``; NaN or inf
scores and empty groups are errors.

Example:
    >>> pos, neg = [0.9, 0.7, 0.8], [0.1, 0.3, 0.2]
    >>> accuracy(pos, neg), polarity_correct(pos, neg), round(effect_size(pos, neg), 3)
    (1.0, True, 6.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import torch

Scores: TypeAlias = "torch.Tensor | np.ndarray | Sequence[float]"


def _scores(x: object, name: str, at_least: int = 1) -> np.ndarray:
    """``x`` as a finite 1-D float64 array with at least ``at_least`` entries."""
    try:
        if isinstance(x, torch.Tensor):
            arr = x.detach().to("cpu", torch.float64).numpy()
        else:
            arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"{name} must be a 1-D tensor, array or list of numbers, got {type(x).__name__}"
        ) from err
    if arr.ndim > 1:
        raise ValueError(
            f"{name} must be 1-D scores, got shape {arr.shape}; flatten it first "
            "(scores.reshape(-1)) or score the activations with projection()"
        )
    arr = arr.reshape(-1)
    if arr.size < at_least:
        need = "at least 2 per group to estimate a variance" if at_least > 1 else "at least 1"
        raise ValueError(f"{name} has {arr.size} score(s); need {need}")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"{name} contains {bad} NaN or inf score(s); drop or mask them first")
    return arr


def accuracy(pos_scores: Scores, neg_scores: Scores, threshold: float | None = None) -> float:
    """Fraction of all examples classified correctly when a score ``> threshold`` predicts
    positive (so a negative is correct when its score is ``<= threshold``). The default
    threshold is the midpoint of the two group means; the fraction is over all examples pooled
    (not balanced per group), and a vector with the wrong polarity scores below 0.5.

    Example:
        >>> accuracy([2.0, 3.0], [0.0, 2.4])   # midpoint threshold 1.85: 3 of 4 right
        0.75
    """
    pos = _scores(pos_scores, "pos_scores")
    neg = _scores(neg_scores, "neg_scores")
    if threshold is None:
        cut = float(pos.mean() + neg.mean()) / 2
    else:
        try:
            cut = float(threshold)
        except (TypeError, ValueError):
            cut = math.nan
        if not math.isfinite(cut):
            raise ValueError(f"threshold={threshold!r} must be a finite number, or None (midpoint)")
    correct = int((pos > cut).sum()) + int((neg <= cut).sum())
    return correct / (pos.size + neg.size)


def effect_size(pos_scores: Scores, neg_scores: Scores, signed: bool = False) -> float:
    """Cohen's d: ``(mean(pos) - mean(neg)) / pooled_std``, the pooled variance weighting each
    group's sample variance (n - 1 degrees of freedom) by n - 1. ``signed=False`` returns
    ``|d|``; ``signed=True`` keeps the sign (positive when pos > neg). Each group needs at
    least 2 scores. When both groups are constant the pooled variance is 0: the result is
    ``inf`` (signed: ``±inf``) if the means differ and ``0.0`` if they are equal.

    Example:
        >>> effect_size([1.0, 3.0], [4.0, 6.0], signed=True)   # diff -3, pooled std sqrt(2)
        -2.1213203435596424
    """
    pos = _scores(pos_scores, "pos_scores", at_least=2)
    neg = _scores(neg_scores, "neg_scores", at_least=2)
    diff = float(pos.mean() - neg.mean())
    if np.ptp(pos) == 0 and np.ptp(neg) == 0:
        d = 0.0 if diff == 0 else math.copysign(math.inf, diff)
    else:
        n1, n2 = pos.size, neg.size
        pooled = ((n1 - 1) * pos.var(ddof=1) + (n2 - 1) * neg.var(ddof=1)) / (n1 + n2 - 2)
        d = diff / math.sqrt(pooled)
    return d if signed else abs(d)


def polarity_correct(pos_scores: Scores, neg_scores: Scores) -> bool:
    """True when the positive examples score higher on average: ``mean(pos) > mean(neg)``
    (equal means are not correct).

    Example:
        >>> polarity_correct([0.2, 0.4], [0.5, 0.3])
        False
    """
    pos = _scores(pos_scores, "pos_scores")
    neg = _scores(neg_scores, "neg_scores")
    return bool(pos.mean() > neg.mean())


def pearson_named(a: object, b: object, a_name: str, b_name: str) -> float:
    x = _scores(a, a_name, at_least=2)
    y = _scores(b, b_name, at_least=2)
    if x.size != y.size:
        raise ValueError(
            f"{a_name} has {x.size} values but {b_name} has {y.size}; pass paired values"
        )
    for arr, name in ((x, a_name), (y, b_name)):
        if np.ptp(arr) == 0:
            raise ValueError(
                f"{name} is constant ({arr[0]!r}), so its correlation is undefined; "
                "pass values that vary"
            )
    xc, yc = x - x.mean(), y - y.mean()
    r = float((xc @ yc) / math.sqrt(float(xc @ xc) * float(yc @ yc)))
    return min(1.0, max(-1.0, r))


def pearson_correlation(a: Scores, b: Scores) -> float:
    """Pearson correlation of two paired 1-D samples (same length, at least 2, neither
    constant), in ``[-1, 1]``.

    Example:
        >>> round(pearson_correlation([1.0, 2.0, 3.0], [2.0, 4.0, 7.0]), 4)
        0.9934
    """
    return pearson_named(a, b, "a", "b")
