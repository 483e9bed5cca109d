"""Trait–trait correlation over tokens: do two traits rise and fall together in a text?

For each trait the per-token values at one layer come from
:func:`~trait_lab.dynamics.matrix.trait_matrix`; the tokens of all given records (response
tokens by default) are pooled, and the Pearson correlation of every pair of traits across those
tokens is returned. A trait that is constant over the tokens has no correlation: its row and
column are NaN (meaning "no value"), except the diagonal, which is 1.

Example:
    >>> from trait_lab.testing import tiny_record
    >>> names, r = trait_correlation([tiny_record()], 4, part="all")
    >>> names, r.tolist()
    (['t'], [[1.0]])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trait_lab.dynamics.matrix import trait_matrix
from trait_lab.dynamics.records import ProjectionRecord
from trait_lab.dynamics.spans import PARTS

__all__ = ["pearson_rows", "trait_correlation"]


def pearson_rows(x: np.ndarray) -> np.ndarray:
    """Pearson correlation between the rows of ``x`` ``[rows, samples]``; constant rows → NaN
    off the diagonal (``numpy.corrcoef`` would warn and divide by zero).

    Example:
        >>> pearson_rows(np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])).round(6).tolist()
        [[1.0, -1.0], [-1.0, 1.0]]
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"pearson_rows needs [rows, samples>=2], got shape {x.shape}")
    c = x - x.mean(axis=1, keepdims=True)
    norm = np.sqrt((c * c).sum(axis=1))
    ok = norm > 1e-12 * (1 + np.abs(x).max(axis=1))
    safe = np.where(ok, norm, 1.0)
    r = np.clip((c @ c.T) / np.outer(safe, safe), -1.0, 1.0)
    r[~(ok[:, None] & ok[None, :])] = np.nan
    np.fill_diagonal(r, 1.0)
    return r


def trait_correlation(
    records: Sequence[ProjectionRecord],
    layer: int,
    *,
    traits: Sequence[str] | None = None,
    clean: str = "none",
    mode: str = "cosine",
    part: str = "response",
) -> tuple[list[str], np.ndarray]:
    """``(traits, r [traits, traits])``: Pearson correlation across the pooled tokens.

    ``traits`` defaults to every trait that has ``layer`` in every record.

    Example:
        >>> trait_correlation([], 4)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: trait_correlation needs at least one record...
    """
    if not records:
        raise ValueError("trait_correlation needs at least one record; pass records=[...]")
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; choose one of {list(PARTS)}")
    having = [{t for t, per in r.projections.items() if layer in per} for r in records]
    names = sorted(set.intersection(*having)) if traits is None else list(traits)
    missing = [t for t in names if not all(t in h for h in having)]
    if not names or missing:
        raise ValueError(
            f"traits {missing or names} lack layer {layer} in some record; traits with it in "
            f"every record: {sorted(set.intersection(*having))}"
        )
    columns = []
    for record in records:
        first = record.boundary if part == "response" else 0
        rows = [
            trait_matrix(record, t, clean=clean, mode=mode, layers=[layer])[1][0, first:]
            for t in names
        ]
        columns.append(np.stack(rows))
    pooled = np.concatenate(columns, axis=1)
    if pooled.shape[1] < 2:
        raise ValueError(
            f"only {pooled.shape[1]} token(s) to correlate over; pass longer records or part='all'"
        )
    return names, pearson_rows(pooled)
