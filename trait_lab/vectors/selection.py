"""Vector selection: pick the best extracted vector(s) for a trait from the metrics.

Candidates are the rows of an extraction's ``metrics.csv``. Gates first — polarity correct on
validation, validation accuracy at least ``min_accuracy``, and never the random baseline —
then the largest signed validation effect size wins. Selection sources are tried in order;
today that is extraction metrics only, and steering results (coefficient sweeps judged for
trait expression and coherence) will slot in ahead of them when the steering evaluation
writes its results, which is why ``VectorResult`` carries ``source``.

Example:
    >>> best = select_vector("default", "optimism")  # doctest: +SKIP
    >>> best.layer, best.method, best.to_vector_spec(weight=4.0).weight  # doctest: +SKIP
    (14, 'probe', 4.0)
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from trait_lab.core.types import VectorResult
from trait_lab.extraction.pipeline import INPUTS, extraction_dir, vector_path
from trait_lab.io.vectors import load_vector

EXCLUDED_METHODS = ("random_baseline",)


def _candidates(folder: Path) -> tuple[pd.DataFrame, str]:
    metrics = folder / "metrics.csv"
    if not metrics.is_file():
        raise FileNotFoundError(
            f"no extraction metrics at {metrics}; run the extraction first "
            "(run_extraction, or `trait-lab extract --trait NAME`)"
        )
    position = json.loads((folder / INPUTS).read_text()).get("position", "")
    return pd.read_csv(metrics), str(position)


def select_vectors(
    experiment: str,
    trait: str,
    variant: str = "instruct",
    *,
    n: int = 3,
    component: str = "residual",
    methods: list[str] | None = None,
    layers: list[int] | range | None = None,
    min_accuracy: float = 0.7,
    root: str | None = None,
) -> list[VectorResult]:
    """The ``n`` best vectors, best first (see the module docstring for the rule).

    ``layers`` restricts the candidates, e.g. to the middle layers where steering works best
    (the layer that separates best is often a late one that steers poorly).

    Raises:
        ValueError: no row passes the gates (the best rejected rows are described).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    folder = extraction_dir(experiment, trait, variant, root)
    table, position = _candidates(folder)
    rows = table[(table["component"] == component) & ~table["method"].isin(EXCLUDED_METHODS)]
    if methods is not None:
        rows = rows[rows["method"].isin(methods)]
    if layers is not None:
        rows = rows[rows["layer"].isin(list(layers))]
    passing = rows[
        rows["val_polarity_correct"].astype(bool) & (rows["val_accuracy"] >= min_accuracy)
    ]
    if passing.empty:
        top = rows.sort_values("val_accuracy", ascending=False).head(3)
        shown = ", ".join(
            f"{r.method}@L{r.layer}: acc {r.val_accuracy:.2f}, polarity {r.val_polarity_correct}"
            for r in top.itertuples()
        )
        raise ValueError(
            f"no {component} vector for {trait!r} passes the gates (polarity correct and "
            f"validation accuracy >= {min_accuracy}); best candidates: {shown or 'none'}. "
            "Lower min_accuracy, or improve the trait's pairs."
        )
    best = passing.sort_values("val_effect_size", ascending=False).head(n)
    return [
        VectorResult(
            layer=int(r.layer),
            component=component,
            position=position,
            method=str(r.method),
            source="extraction",
            accuracy=float(r.val_accuracy),
            effect_size=float(r.val_effect_size),
            polarity_correct=bool(r.val_polarity_correct),
            path=str(vector_path(folder, component, str(r.method), int(r.layer))),
        )
        for r in best.itertuples()
    ]


def select_vector(
    experiment: str, trait: str, variant: str = "instruct", **options: object
) -> VectorResult:
    """The single best vector; options as for ``select_vectors``."""
    return select_vectors(experiment, trait, variant, n=1, **options)[0]  # type: ignore[arg-type]


def load_selected(result: VectorResult) -> torch.Tensor:
    """The unit vector a ``VectorResult`` points at, as fp32."""
    if not result.path:
        raise ValueError(f"{result!r} has no vector path")
    vector = load_vector(result.path)
    assert isinstance(vector, torch.Tensor)
    return vector.float()
