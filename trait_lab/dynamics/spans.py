"""Top activating spans: the windows of ``width`` tokens with the highest mean projection,
across many records.

Every window of ``width`` consecutive tokens (of the response, or of the whole record) is scored
by its mean value from :func:`~trait_lab.dynamics.matrix.trait_matrix`; the ``k`` best are
returned, best first, with the record index, the positions and the text. With
``overlap=False`` (default) a window that overlaps a better one of the same record is skipped,
so one hot phrase does not fill the table.

Example:
    >>> from trait_lab.testing import tiny_record
    >>> spans = top_spans([tiny_record(), tiny_record(seed=1)], "t", 8, width=2, part="all")
    >>> [s.stop - s.start for s in spans]
    [2, 2]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from trait_lab.core import check_int
from trait_lab.dynamics.matrix import trait_matrix
from trait_lab.dynamics.records import ProjectionRecord

__all__ = ["PARTS", "Span", "top_spans"]

PARTS: tuple[str, ...] = ("response", "all")
"""Where spans may lie: only response tokens, or anywhere in prompt + response."""


@dataclass(frozen=True)
class Span:
    """One window: ``record`` index, token positions ``[start, stop)``, its mean and text."""

    record: int
    start: int
    stop: int
    mean: float
    tokens: list[str]

    @property
    def text(self) -> str:
        """The window's tokens joined (byte-level BPE spaces shown as spaces)."""
        return "".join(self.tokens).replace("Ġ", " ").replace("▁", " ").replace("Ċ", "\n")


def _windows(values: np.ndarray, width: int) -> np.ndarray:
    csum = np.concatenate([[0.0], np.cumsum(values)])
    return (csum[width:] - csum[:-width]) / width


def top_spans(
    records: Sequence[ProjectionRecord],
    trait: str,
    layer: int,
    *,
    width: int = 5,
    k: int = 10,
    clean: str = "none",
    mode: str = "cosine",
    part: str = "response",
    overlap: bool = False,
    lowest: bool = False,
) -> list[Span]:
    """The ``k`` windows of ``width`` tokens with the highest (``lowest=True``: lowest) mean.

    Values are ``trait_matrix(record, trait, clean=clean, mode=mode, layers=[layer])``;
    records without the trait or layer raise. A record shorter than ``width`` (in ``part``)
    gives no window. Ties keep record order, then position order.

    Example:
        >>> top_spans([], "t", 4)
        []
    """
    check_int("top_spans", "width", width, 1)
    check_int("top_spans", "k", k, 1)
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; choose one of {list(PARTS)}")
    found: list[Span] = []
    for index, record in enumerate(records):
        _, values, _ = trait_matrix(record, trait, clean=clean, mode=mode, layers=[layer])
        first = record.boundary if part == "response" else 0
        row = values[0, first:]
        if len(row) < width:
            continue
        means = _windows(row, width)
        order = np.argsort(means if lowest else -means, kind="stable")
        taken: list[int] = []
        for j in order:
            if not overlap and any(abs(int(j) - t) < width for t in taken):
                continue
            taken.append(int(j))
            start = first + int(j)
            tokens = record.tokens[start : start + width]
            found.append(Span(index, start, start + width, float(means[j]), tokens))
            if len(taken) == k:
                break
    found.sort(key=lambda s: s.mean, reverse=not lowest)  # stable: record, then rank order
    return found[:k]
