"""Trait dynamics: a projection record turned into the layers × tokens matrix a view shows.

Cleaning (massive dims removed), mode (raw / normalized / cosine), smoothing that stops at the
prompt/response boundary and centring are applied in that order, all with the pure functions
of :mod:`trait_lab.dynamics.cleaning`, so every view computes the same numbers.

Example:
    >>> layers, values, _ = trait_matrix(rec, "optimism", clean="all")  # doctest: +SKIP
    >>> values.shape == (len(layers), rec.n_tokens)  # doctest: +SKIP
    True
"""

from __future__ import annotations

import numpy as np

from trait_lab.dynamics.cleaning import apply_mode, center, check_clean_option, smooth
from trait_lab.dynamics.records import ProjectionRecord


def trait_matrix(
    record: ProjectionRecord,
    trait: str,
    *,
    clean: str = "none",
    mode: str = "cosine",
    smoothing: int = 1,
    centre: bool = False,
    layers: list[int] | None = None,
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
    """
    check_clean_option(clean)
    if trait not in record.projections:
        raise KeyError(f"no trait {trait!r} in this record; traits: {sorted(record.projections)}")
    chosen = sorted(record.projections[trait]) if layers is None else list(layers)
    response = np.arange(record.n_tokens) >= record.boundary
    rows, norm_rows = [], []
    for layer in chosen:
        scores, norms = record.cleaned(trait, layer, clean)
        values = apply_mode(scores, norms, mode, response_mask=response if response.any() else None)
        if smoothing > 1:
            values = smooth(values, smoothing, record.boundary)
        if centre:
            values = center(values, response if response.any() else None)
        rows.append(np.asarray(values, float))
        norm_rows.append(np.asarray(norms, float))
    return chosen, np.stack(rows), np.stack(norm_rows)
