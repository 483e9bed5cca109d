"""What a steering evaluation recommends, checked on held-out questions: ``summary.json``.

A run searches coefficients on the trait's search questions, then runs each direction's best
coherent configuration on the held-out report questions. A :class:`Recommendation` keeps both
measurements; it is ``validated`` only when the report run also moved the trait that way while
staying coherent — the numbers a user should quote are the report ones.

Example:
    >>> r = Recommendation(1, (12,), (40.0,), 0.25, "residual", "probe", "response[:]",
    ...                    ("v.safetensors",), "residual/probe/L12@+40", 30.0, 85.0,
    ...                    55.0, 25.0, 80.0, 12, True)
    >>> r.coefficient, r.report_delta
    (40.0, 25.0)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trait_lab.core.atomic import atomic_write_json
from trait_lab.core.records import Record, check_float, check_int, check_str, invalid
from trait_lab.core.schema import Schema
from trait_lab.core.types import JudgeResult

__all__ = [
    "MIN_REPORT_DELTA",
    "SUMMARY_FILE",
    "SUMMARY_SCHEMA",
    "Recommendation",
    "SteeringSummary",
    "read_summary",
    "write_summary",
]

MIN_REPORT_DELTA = 5.0
"""How far (0–100 points) the report run must move the trait for a recommendation to count as
validated: a trait already at its floor (a model that never refuses, steered away from refusing)
"moves" by noise only."""
SUMMARY_FILE = "summary.json"
SUMMARY_SCHEMA = Schema("trait_lab.steering_summary", 1, remake="run the evaluation again")


@dataclass(frozen=True)
class Recommendation(Record):
    """One direction's recommended configuration, with its search and report numbers.

    ``direction`` is +1 (toward the trait) or -1 (away); ``coefficients[i]`` steers
    ``layers[i]`` with the vector at ``vector_paths[i]``; ``fraction`` is the strength in
    typical residual norms. ``report_*`` are measured on held-out questions the search never
    saw; ``validated`` says the report run moved the trait in ``direction`` by at least
    :data:`MIN_REPORT_DELTA` points and was coherent.
    """

    direction: int
    layers: tuple[int, ...]
    coefficients: tuple[float, ...]
    fraction: float | None
    component: str
    method: str
    position: str
    vector_paths: tuple[str, ...]
    search_key: str
    search_delta: float
    search_coherence: float
    report_trait: float
    report_delta: float
    report_coherence: float
    report_n: int
    validated: bool

    def __post_init__(self) -> None:
        o = "Recommendation"
        if self.direction not in (1, -1):
            raise invalid(o, "direction", self.direction, "+1 or -1", "Pass 1 or -1.")
        n = len(tuple(self.layers))
        if not n or len(tuple(self.coefficients)) != n or len(tuple(self.vector_paths)) != n:
            raise invalid(
                o,
                "layers/coefficients/vector_paths",
                (self.layers, self.coefficients, self.vector_paths),
                "equal-length, non-empty tuples",
                "Pass one coefficient and one vector path per layer.",
            )
        for name in ("component", "method", "position", "search_key"):
            check_str(o, name, getattr(self, name))
        for name in ("search_delta", "search_coherence", "report_trait", "report_delta"):
            check_float(o, name, getattr(self, name))
        check_float(o, "report_coherence", self.report_coherence, lo=0.0, hi=100.0)
        check_int(o, "report_n", self.report_n, minimum=1)

    @property
    def coefficient(self) -> float:
        """The recommended coefficient of a single-layer configuration."""
        if len(self.layers) != 1:
            raise ValueError(
                f"the recommendation steers layers {self.layers} together; read .coefficients "
                "(one per layer) instead of .coefficient"
            )
        return float(self.coefficients[0])

    @classmethod
    def _decode(cls, data: dict[str, Any]) -> dict[str, Any]:
        keys = ("layers", "coefficients", "vector_paths")
        return {**data, **{k: tuple(data[k]) for k in keys}}


@dataclass(frozen=True)
class SteeringSummary(Record):
    """One evaluation run's outcome: baselines and a recommendation per steerable direction."""

    experiment: str
    trait: str
    variant: str
    run: str
    judge: dict[str, Any]
    search_baseline: JudgeResult
    report_baseline: JudgeResult
    recommendations: list[Recommendation]

    def recommended(self, direction: int = 1) -> Recommendation | None:
        """The recommendation for ``direction`` (+1 or -1), or ``None`` if nothing steered."""
        found = [r for r in self.recommendations if r.direction == direction]
        return found[0] if found else None

    @classmethod
    def _decode(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {
            **data,
            "search_baseline": JudgeResult.from_dict(data["search_baseline"]),
            "report_baseline": JudgeResult.from_dict(data["report_baseline"]),
            "recommendations": [Recommendation.from_dict(r) for r in data["recommendations"]],
        }


def write_summary(folder: str | os.PathLike[str], summary: SteeringSummary) -> Path:
    """Write ``<folder>/summary.json`` atomically; returns its path."""
    path = Path(folder) / SUMMARY_FILE
    return atomic_write_json(path, SUMMARY_SCHEMA.stamp(summary.to_dict()))


def read_summary(folder: str | os.PathLike[str]) -> SteeringSummary | None:
    """The run's summary, or ``None`` when the run has not finished (no ``summary.json``)."""
    path = Path(folder) / SUMMARY_FILE
    if not path.is_file():
        return None
    data = SUMMARY_SCHEMA.check(json.loads(path.read_text()), path)
    fields = {k: v for k, v in data.items() if k in SteeringSummary.__dataclass_fields__}
    return SteeringSummary.from_dict(fields)
