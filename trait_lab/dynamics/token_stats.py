"""Per-token statistics under the heatmap: velocity of a projection and activation magnitude.

:func:`velocity` is the first difference along the token axis (how much the projection moved
from one token to the next); :func:`activation_magnitude` is the residual norm ``‖h‖`` at each
layer and token, optionally with massive dims removed, after the same :func:`skip_first` as the
matrix, so the three panels line up.

Example:
    >>> import numpy as np
    >>> velocity(np.array([0.0, 1.0, 3.0])).tolist()
    [1.0, 2.0]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trait_lab.dynamics.matrix import skip_first
from trait_lab.dynamics.records import ProjectionRecord

__all__ = ["activation_magnitude", "velocity"]


def velocity(values: np.ndarray) -> np.ndarray:
    """``values[..., t+1] - values[..., t]``: one fewer column than ``values``.

    Column ``j`` of the result is the change *into* token ``j + 1`` (so a plot puts it at
    position ``j + 1``). Needs at least two tokens.

    Example:
        >>> velocity(np.array([[1.0, 4.0, 2.0]])).tolist()
        [[3.0, -2.0]]
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 0 or x.shape[-1] < 2:
        raise ValueError(
            f"velocity needs at least 2 tokens on the last axis, got shape {x.shape}; "
            "pass a [..., tokens] array of a longer record (or skip fewer tokens)"
        )
    return x[..., 1:] - x[..., :-1]


def activation_magnitude(
    record: ProjectionRecord,
    layers: Sequence[int] | None = None,
    *,
    clean: str = "none",
    skip: int = 0,
) -> tuple[list[int], np.ndarray]:
    """``(layers, norms [layers, tokens - skip])``: the residual norm at each layer and token.

    ``clean`` removes the massive dims of a ``CLEAN_OPTIONS`` key first (as the heatmap does);
    ``skip`` drops the first tokens like :func:`~trait_lab.dynamics.matrix.skip_first`.

    Example:
        >>> from trait_lab.testing import tiny_record
        >>> layers, norms = activation_magnitude(tiny_record(), skip=1)
        >>> layers, norms.shape
        ([4, 8], (2, 2))
    """
    chosen = sorted(record.norms) if layers is None else [int(x) for x in layers]
    rows = []
    for layer in chosen:
        norms = record.cleaned_norms(layer, clean)
        rows.append(skip_first(norms, norms, record.boundary, skip)[1])
    return chosen, np.stack(rows) if rows else np.zeros((0, max(record.n_tokens - skip, 0)))
