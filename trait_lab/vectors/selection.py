"""Vector selection: pick the best extracted vector(s) for a trait from the metrics.

Sources are tried in order, best evidence first:

1. **steering** — when a steering evaluation of the trait finished
   (:func:`trait_lab.vectors.evaluate.run_evaluation`, ``trait-lab evaluate``), its
   recommendation for ``direction``: the coherent configuration that moved the trait most on
   the search questions, kept only if the held-out report questions confirm it (moved the same
   way by at least ``MIN_REPORT_DELTA`` points, coherent). The result has
   ``source="steering"``, ``delta`` and ``coherence`` from the report run and the recommended
   ``coefficient``, which ``to_vector_spec()`` carries.
2. **extraction** — rows of the extraction's ``metrics.csv``: gates first (polarity correct on
   validation, validation accuracy at least ``min_accuracy``, never the random baseline), then
   the largest signed validation effect size.

Example:
    >>> best = select_vector("default", "refusal")  # doctest: +SKIP
    >>> best.source, best.layer, round(best.to_vector_spec().weight, 1)  # doctest: +SKIP
    ('steering', 18, 39.4)
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from trait_lab.core.paths import extraction_dir, steering_dir, vector_path
from trait_lab.core.types import VectorResult
from trait_lab.evaluation.summary import read_summary
from trait_lab.extraction.outputs import read_inputs
from trait_lab.io.vectors import load_vector

EXCLUDED_METHODS = ("random_baseline",)
SELECTION_SOURCES = ("auto", "steering", "extraction")


def steering_result(
    experiment: str,
    trait: str,
    variant: str = "instruct",
    *,
    run: str = "default",
    direction: int = 1,
    root: str | None = None,
) -> VectorResult | None:
    """The steering-validated vector of a finished evaluation run, or ``None``.

    ``None`` when the run has no ``summary.json`` yet, nothing steered in ``direction``, the
    held-out report did not confirm it, or it steers several layers together (one
    ``VectorResult`` names one vector; read the summary for those).
    """
    summary = read_summary(steering_dir(experiment, trait, variant, run, root))
    rec = None if summary is None else summary.recommended(direction)
    if rec is None or not rec.validated or len(rec.layers) != 1:
        return None
    return VectorResult(
        layer=rec.layers[0],
        component=rec.component,
        position=rec.position,
        method=rec.method,
        source="steering",
        delta=rec.report_delta,
        coherence=rec.report_coherence,
        coefficient=rec.coefficients[0],
        path=rec.vector_paths[0],
    )


def _candidates(folder: Path) -> tuple[pd.DataFrame, str]:
    metrics = folder / "metrics.csv"
    if not metrics.is_file():
        raise FileNotFoundError(
            f"no extraction metrics at {metrics}; run the extraction first "
            "(run_extraction, or `trait-lab extract --trait NAME`)"
        )
    position = (read_inputs(folder) or {}).get("position", "")
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
    source: str = "auto",
    run: str = "default",
    direction: int = 1,
) -> list[VectorResult]:
    """The ``n`` best vectors, best first (see the module docstring for the rule).

    ``layers`` restricts the candidates, e.g. to the middle layers where steering works best
    (the layer that separates best is often a late one that steers poorly). ``source``:
    ``"auto"`` (steering-validated first, then extraction), ``"steering"`` (only the
    evaluation's recommendation; raises when there is none) or ``"extraction"``; ``run`` and
    ``direction`` pick the evaluation run and the direction (+1 toward the trait, -1 away).

    Raises:
        ValueError: no row passes the gates (the best rejected rows are described), or
            ``source="steering"`` and no validated recommendation exists.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if source not in SELECTION_SOURCES:
        raise ValueError(f"source={source!r}: choose one of {list(SELECTION_SOURCES)}")
    steered = None
    if source != "extraction":
        steered = steering_result(
            experiment, trait, variant, run=run, direction=direction, root=root
        )
        if steered is not None and (
            steered.component != component
            or (methods is not None and steered.method not in methods)
            or (layers is not None and steered.layer not in list(layers))
        ):
            steered = None
        if source == "steering":
            if steered is None:
                raise ValueError(
                    f"no steering-validated {component} vector for {trait!r} (run {run!r}, "
                    f"direction {direction:+d}) within the given methods/layers: run "
                    f"`trait-lab evaluate --trait {trait}` first, or read its summary.json "
                    "for why nothing was validated; source='auto' falls back to extraction"
                )
            return [steered]
    found = _from_extraction(
        experiment, trait, variant, n, component, methods, layers, min_accuracy, root
    )
    if steered is None:
        return found
    same = [r for r in found if (r.method, r.layer) != (steered.method, steered.layer)]
    return [steered, *same][:n]


def _from_extraction(
    experiment: str,
    trait: str,
    variant: str,
    n: int,
    component: str,
    methods: list[str] | None,
    layers: list[int] | range | None,
    min_accuracy: float,
    root: str | None,
) -> list[VectorResult]:
    """The extraction source: gates, then the largest validation effect size."""
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
