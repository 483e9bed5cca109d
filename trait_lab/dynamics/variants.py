"""The difference of two variants of a record (steered vs unsteered, base vs instruct, ...),
aligned by token position.

Both records go through :func:`~trait_lab.dynamics.matrix.trait_matrix` with the same options;
``align="start"`` pairs position ``t`` of ``a`` with position ``t`` of ``b``, ``align="response"``
pairs the records around their prompt/response boundaries (prompt tokens counted back from the
boundary, response tokens forward), so two chat templates of different lengths still compare
response token ``i`` with response token ``i``. Positions only one record has are dropped.

Example:
    >>> from trait_lab.testing import tiny_record
    >>> d = variant_difference(tiny_record(), tiny_record(seed=1), "t")
    >>> d.values.shape, d.boundary
    ((2, 3), 2)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from trait_lab.core import check_int
from trait_lab.dynamics.matrix import trait_matrix
from trait_lab.dynamics.records import ProjectionRecord

__all__ = ["ALIGNMENTS", "Difference", "variant_difference"]

ALIGNMENTS: tuple[str, ...] = ("start", "response")
"""How two records' tokens are paired: from the first token, or around the boundary."""


@dataclass(frozen=True)
class Difference:
    """``values = a - b`` ``[layers, tokens]`` on the paired positions.

    ``tokens_a`` / ``tokens_b`` are the paired tokens, ``same`` marks positions whose token ids
    agree, ``start_a`` / ``start_b`` the first paired position in each record and ``boundary``
    the prompt/response boundary in the paired positions.
    """

    layers: list[int]
    values: np.ndarray
    tokens_a: list[str]
    tokens_b: list[str]
    same: np.ndarray
    start_a: int
    start_b: int
    boundary: int


def variant_difference(
    a: ProjectionRecord,
    b: ProjectionRecord,
    trait: str,
    *,
    align: str = "response",
    layers: list[int] | None = None,
    skip: int = 0,
    **options: Any,
) -> Difference:
    """``a - b`` of one trait's matrix, position by position (see the module docstring).

    ``options`` (``clean``, ``mode``, ``smoothing``, ``centre``) go to ``trait_matrix`` for both
    records; ``layers`` defaults to the layers both records have for ``trait``. ``skip`` drops
    the paired positions that lie among the first ``skip`` tokens of either record (the values
    are computed on the whole records, then cut).

    Example:
        >>> from trait_lab.testing import tiny_record
        >>> float(variant_difference(tiny_record(), tiny_record(), "t").values.max())
        0.0
    """
    check_int("variant_difference", "skip", skip, 0)
    if align not in ALIGNMENTS:
        raise ValueError(f"unknown align {align!r}; choose one of {list(ALIGNMENTS)}")
    for name, record in (("a", a), ("b", b)):
        if trait not in record.projections:
            have = sorted(record.projections)
            raise KeyError(f"record {name} has no trait {trait!r}; traits: {have}")
    common = sorted(set(a.projections[trait]) & set(b.projections[trait]))
    chosen = common if layers is None else list(layers)
    if not chosen or not set(chosen) <= set(common):
        raise ValueError(
            f"layers {chosen} are not all in both records; layers of trait {trait!r} in both: "
            f"{common} (pass layers= from those)"
        )
    _, va, _ = trait_matrix(a, trait, layers=chosen, **options)
    _, vb, _ = trait_matrix(b, trait, layers=chosen, **options)
    if align == "start":
        n = min(a.n_tokens, b.n_tokens)
        sa = sb = 0
        boundary = min(a.boundary, b.boundary, n)
    else:
        before = min(a.boundary, b.boundary)
        n = before + min(a.n_tokens - a.boundary, b.n_tokens - b.boundary)
        sa, sb, boundary = a.boundary - before, b.boundary - before, before
    cut = max(skip - sa, skip - sb, 0)
    if cut >= n:
        raise ValueError(f"skip={skip} leaves no paired position (only {n}); skip fewer tokens")
    sa, sb, n, boundary = sa + cut, sb + cut, n - cut, max(boundary - cut, 0)
    ids_a = (a.prompt_ids + a.response_ids)[sa : sa + n]
    ids_b = (b.prompt_ids + b.response_ids)[sb : sb + n]
    return Difference(
        layers=chosen,
        values=va[:, sa : sa + n] - vb[:, sb : sb + n],
        tokens_a=a.tokens[sa : sa + n],
        tokens_b=b.tokens[sb : sb + n],
        same=np.array([x == y for x, y in zip(ids_a, ids_b, strict=True)], dtype=bool),
        start_a=sa,
        start_b=sb,
        boundary=boundary,
    )
