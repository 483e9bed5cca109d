"""What a projection record keeps of a calibration, and which dims' values it stores.

A :class:`~trait_lab.dynamics.records.ProjectionRecord` does not copy the whole
``calibration.json``: :func:`calibration_summary` keeps its fingerprint, its candidate dims and
the top-:data:`TOP_N` dims per calibrated layer, and :func:`cleaning_dims` lists the dims whose
activation values the record stores (so every clean option can be applied later).

Example:
    >>> cal = {"candidates": [9], "layers": [{"layer": 0, "top_dims": [1, 2]}]}
    >>> cleaning_dims(calibration_summary(cal))
    [1, 2, 9]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["TOP_N", "calibration_summary", "cleaning_dims"]

TOP_N = 5
"""Top dims per calibrated layer kept in a record (enough for the ``"top5"`` clean option)."""


def calibration_summary(calibration: Mapping[str, Any]) -> dict[str, Any]:
    """What a record keeps of a calibration: fingerprint, candidates, top-5 dims per layer.

    Example:
        >>> cal = {"candidates": [3], "layers": [{"layer": 0, "top_dims": [3, 1, 2, 0, 4, 5]}]}
        >>> calibration_summary(cal)["top_dims"]
        [[3, 1, 2, 0, 4]]
    """
    text = json.dumps(dict(calibration), sort_keys=True, default=str)
    return {
        "fingerprint": hashlib.sha256(text.encode()).hexdigest()[:16],
        "candidates": sorted(int(d) for d in calibration["candidates"]),
        "top_dims": [[int(d) for d in e["top_dims"][:TOP_N]] for e in calibration["layers"]],
    }


def cleaning_dims(summary: Mapping[str, Any]) -> list[int]:
    """The dims a record stores values of: candidates ∪ every layer's top-5 dims.

    Example:
        >>> cleaning_dims({"candidates": [9], "top_dims": [[1, 2], [2, 3]]})
        [1, 2, 3, 9]
    """
    dims = {int(d) for d in summary["candidates"]}
    dims.update(int(d) for top in summary["top_dims"] for d in top)
    return sorted(dims)
