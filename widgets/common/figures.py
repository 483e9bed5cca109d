"""Static plotly figures for extraction results (the interactive widgets build on these).

Example:
    >>> import pandas as pd
    >>> table = pd.DataFrame({"method": ["probe", "probe"], "layer": [0, 1],
    ...                       "component": ["residual"] * 2, "val_accuracy": [0.5, 0.9]})
    >>> metrics_heatmap(table).data[0].z.shape
    (1, 2)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

_LABELS = {
    "val_accuracy": "validation accuracy",
    "val_effect_size": "validation effect size (Cohen's d)",
    "train_accuracy": "train accuracy",
}


def metrics_heatmap(
    metrics: pd.DataFrame,
    value: str = "val_accuracy",
    component: str = "residual",
    methods: Sequence[str] | None = None,
    title: str | None = None,
) -> go.Figure:
    """Method × layer heatmap of one metric column of an extraction's metrics table."""
    if value not in metrics.columns:
        raise ValueError(f"no column {value!r}; columns: {list(metrics.columns)}")
    rows = metrics[metrics["component"] == component]
    table = rows.pivot_table(index="method", columns="layer", values=value)
    if methods is not None:
        table = table.reindex([m for m in methods if m in table.index])
    label = _LABELS.get(value, value)
    text = np.vectorize(lambda v: f"{v:.2f}")(table.values)
    fig = go.Figure(
        go.Heatmap(
            z=table.values,
            x=[str(c) for c in table.columns],
            y=list(table.index),
            text=text,
            hovertemplate="method %{y}<br>layer %{x}<br>" + label + " %{z:.3f}<extra></extra>",
            colorscale="Viridis",
            colorbar={"title": {"text": label.split(" (")[0]}},
            zmin=0.5 if "accuracy" in value else None,
            zmax=1.0 if "accuracy" in value else None,
        )
    )
    fig.update_layout(
        title=title or f"{label} by method and layer ({component})",
        xaxis_title="layer",
        yaxis_title="method",
        height=120 + 45 * len(table.index),
        margin={"l": 120, "r": 20, "t": 60, "b": 50},
    )
    return fig


def projection_histogram(
    pos_scores: Sequence[float] | np.ndarray,
    neg_scores: Sequence[float] | np.ndarray,
    title: str = "projection of validation examples",
    pos_label: str = "positive",
    neg_label: str = "negative",
    xaxis_title: str = "cosine with the trait vector",
) -> go.Figure:
    """Overlaid histograms of positive and negative examples' scores on a vector."""
    fig = go.Figure()
    for scores, name, color in (
        (pos_scores, pos_label, "#2a9d8f"),
        (neg_scores, neg_label, "#e76f51"),
    ):
        fig.add_trace(
            go.Histogram(
                x=np.asarray(scores, dtype=float),
                name=name,
                opacity=0.6,
                marker_color=color,
                nbinsx=20,
            )
        )
    fig.update_layout(
        barmode="overlay",
        title=title,
        xaxis_title=xaxis_title,
        yaxis_title="examples",
        height=340,
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
    )
    return fig


def token_heatmap(
    tokens: Sequence[str],
    values: np.ndarray,
    layers: Sequence[int],
    boundary: int | None = None,
    norms: np.ndarray | None = None,
    title: str = "trait projection per token",
    colorbar_title: str = "projection",
    row_labels: Sequence[str] | None = None,
) -> go.Figure:
    """Layers × tokens heatmap of per-token values, the prompt/response boundary marked.

    ``values`` is ``[len(layers), len(tokens)]``; ``norms`` (same shape) shows in the hover.
    ``row_labels`` replaces the ``L<layer>`` labels (e.g. trait names for a traits × tokens view).

    Example:
        >>> fig = token_heatmap(["a", "b", "c"], np.zeros((2, 3)), [4, 8], boundary=2)
        >>> fig.data[0].z.shape
        (2, 3)
    """
    values = np.asarray(values, dtype=float)
    if values.shape != (len(layers), len(tokens)):
        raise ValueError(
            f"values has shape {values.shape}; expected (layers, tokens) = "
            f"({len(layers)}, {len(tokens)})"
        )
    labels = [f"{i}:{t}" for i, t in enumerate(tokens)]  # unique x labels, in order
    custom = np.asarray(norms, dtype=float) if norms is not None else np.full(values.shape, np.nan)
    limit = float(np.nanmax(np.abs(values))) if values.size else 1.0
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=labels,
            y=list(row_labels) if row_labels is not None else [f"L{layer}" for layer in layers],
            customdata=custom,
            colorscale="RdBu",
            zmid=0.0,
            zmin=-limit,
            zmax=limit,
            colorbar={"title": {"text": colorbar_title}},
            hovertemplate="token %{x}<br>row %{y}<br>value %{z:.3f}<br>norm %{customdata:.1f}"
            "<extra></extra>",
        )
    )
    if boundary is not None and 0 < boundary < len(tokens):
        fig.add_vline(x=boundary - 0.5, line_width=2, line_dash="dash", line_color="black")
        fig.add_annotation(
            x=boundary - 0.5,
            y=1.02,
            yref="paper",
            text="response →",
            showarrow=False,
            xanchor="left",
        )
    fig.update_layout(
        title=title,
        xaxis_title="token",
        yaxis_title="layer",
        height=160 + 28 * len(layers),
        margin={"l": 60, "r": 20, "t": 60, "b": 80},
    )
    return fig
