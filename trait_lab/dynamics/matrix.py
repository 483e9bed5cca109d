"""Trait dynamics: a projection record turned into the layers × tokens matrix a view shows.

Skipping the first tokens (:func:`skip_first`), cleaning (massive dims removed), mode (raw /
normalized / cosine), smoothing that stops at the prompt/response boundary and centring are
applied in that order, all with the pure functions of :mod:`trait_lab.dynamics.cleaning`, so
every view computes the same numbers.

Example:
    >>> from trait_lab.testing import tiny_record
    >>> rec = tiny_record()
    >>> layers, values, _ = trait_matrix(rec, "t", clean="all")
    >>> values.shape == (len(layers), rec.n_tokens)
    True
    >>> trait_matrix(rec, "t", skip=1)[1].shape
    (2, 2)
"""

from __future__ import annotations

import numpy as np

from trait_lab.core import check_int
from trait_lab.dynamics.cleaning import apply_mode, center, check_clean_option, smooth
from trait_lab.dynamics.records import ProjectionRecord

__all__ = ["skip_first", "trait_matrix"]


def skip_first(
    scores: np.ndarray, norms: np.ndarray, boundary: int, n: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Drop the first ``n`` token positions: ``(scores[..., n:], norms[..., n:], boundary')``.

    The first tokens (``<s>``, chat markup) often carry huge norms and projections that wash out
    a colour scale and a "normalized" mean; dropping them *before* normalisation removes them
    from both. ``boundary'`` is the prompt/response boundary in the kept positions (0 when the
    whole prompt was dropped). At least one token must remain.

    Example:
        >>> s, n, b = skip_first(np.array([9.0, 1.0, 2.0]), np.array([90.0, 1.0, 1.0]), 2, 1)
        >>> s.tolist(), n.tolist(), b
        ([1.0, 2.0], [1.0, 1.0], 1)
    """
    total = np.shape(scores)[-1]
    check_int("skip_first", "n", n, 0)
    if n >= total:
        raise ValueError(
            f"skip_first n={n} would drop all {total} tokens; pass n between 0 and {total - 1}"
        )
    if np.shape(norms) != np.shape(scores):
        raise ValueError(f"norms shape {np.shape(norms)} must equal scores {np.shape(scores)}")
    return scores[..., n:], norms[..., n:], max(boundary - n, 0)


def trait_matrix(
    record: ProjectionRecord,
    trait: str,
    *,
    clean: str = "none",
    mode: str = "cosine",
    smoothing: int = 1,
    centre: bool = False,
    layers: list[int] | None = None,
    skip: int = 0,
) -> tuple[list[int], np.ndarray, np.ndarray]:
    """``(layers, values [layers, tokens], norms [layers, tokens])`` for one trait of a record.

    Args:
        record: a projection record (prompt + response tokens).
        trait: a trait name in the record.
        clean: a key of ``CLEAN_OPTIONS``: ``"none"``, ``"top5"`` (recommended) or ``"all"``.
        mode: ``"raw"``, ``"normalized"`` (÷ mean response norm) or ``"cosine"``.
        smoothing: odd moving-average window (1 = none); never crosses the boundary.
        centre: subtract each layer's mean over response tokens.
        layers: a subset of the record's layers for this trait (default: all).
        skip: drop the first ``skip`` tokens before anything else (see :func:`skip_first`);
            the matrix then has ``n_tokens - skip`` columns, starting at position ``skip``.

    Example:
        >>> from trait_lab.testing import tiny_record
        >>> trait_matrix(tiny_record(), "t", layers=[8])[0]
        [8]
    """
    check_clean_option(clean)
    if trait not in record.projections:
        raise KeyError(f"no trait {trait!r} in this record; traits: {sorted(record.projections)}")
    chosen = sorted(record.projections[trait]) if layers is None else list(layers)
    rows, norm_rows = [], []
    for layer in chosen:
        scores, norms = record.cleaned(trait, layer, clean)
        scores, norms, boundary = skip_first(scores, norms, record.boundary, skip)
        response = np.arange(len(scores)) >= boundary
        mask = response if response.any() else None
        values = apply_mode(scores, norms, mode, response_mask=mask)
        if smoothing > 1:
            values = smooth(values, smoothing, boundary)
        if centre:
            values = center(values, mask)
        rows.append(np.asarray(values, float))
        norm_rows.append(np.asarray(norms, float))
    return chosen, np.stack(rows), np.stack(norm_rows)
