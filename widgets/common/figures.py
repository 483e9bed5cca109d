"""Static plotly figures for extraction results (the interactive widgets build on these), and
:func:`replace_figure`, which redraws a ``FigureWidget`` from scratch.

Signed scores (effect sizes, projections) use the one colour convention of
:mod:`widgets.common.colours`: ``SIGNED_SCALE`` (red = positive pole) on a range symmetric
around 0, stated in the colour bar title.

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

from widgets.common.colours import NEGATIVE_RGB, POSITIVE_RGB, SIGNED_SCALE, pole_legend

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
    """Method × layer heatmap of one metric column of an extraction's metrics table.

    Accuracies use a sequential scale from 0.5 (chance) to 1; any other metric is signed (an
    effect size's sign says which pole) and uses ``SIGNED_SCALE`` on a range symmetric
    around 0. Missing cells stay blank.
    """
    if value not in metrics.columns:
        raise ValueError(f"no column {value!r}; columns: {list(metrics.columns)}")
    rows = metrics[metrics["component"] == component]
    table = rows.pivot_table(index="method", columns="layer", values=value)
    if methods is not None:
        table = table.reindex([m for m in methods if m in table.index])
    label = _LABELS.get(value, value)
    z = table.values.astype(float)
    text = [["" if np.isnan(v) else f"{v:.2f}" for v in row] for row in z]
    if "accuracy" in value:
        scale: dict[str, object] = {"colorscale": "Viridis", "zmin": 0.5, "zmax": 1.0}
        bar = label.split(" (")[0]
    else:
        scale = {"colorscale": SIGNED_SCALE, "zmid": 0.0, **_symmetric(z)}
        bar = pole_legend(label.split(" (")[0])
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[str(c) for c in table.columns],
            y=list(table.index),
            text=text,
            texttemplate="%{text}",
            hovertemplate="method %{y}<br>layer %{x}<br>" + label + " %{z:.3f}<extra></extra>",
            colorbar={"title": {"text": bar, "side": "right"}},
            **scale,
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
    """Overlaid histograms of positive and negative examples' scores on a vector, in the pole
    colours (red = positive examples, blue = negative)."""
    fig = go.Figure()
    for scores, name, color in (
        (pos_scores, pos_label, _rgb(POSITIVE_RGB)),
        (neg_scores, neg_label, _rgb(NEGATIVE_RGB)),
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
    Colours: ``SIGNED_SCALE`` (red = positive pole) on a range symmetric around 0, stated in
    the colour bar title.

    Example:
        >>> fig = token_heatmap(["a", "b", "c"], np.zeros((2, 3)), [4, 8], boundary=2)
        >>> fig.data[0].z.shape, fig.data[0].colorbar.title.text
        ((2, 3), 'projection (red = positive pole, blue = negative)')
    """
    values = np.asarray(values, dtype=float)
    if values.shape != (len(layers), len(tokens)):
        raise ValueError(
            f"values has shape {values.shape}; expected (layers, tokens) = "
            f"({len(layers)}, {len(tokens)})"
        )
    labels = [f"{i}:{t}" for i, t in enumerate(tokens)]  # unique x labels, in order
    hover = "token %{x}<br>row %{y}<br>value %{z:.3f}"
    extra: dict[str, object] = {}
    if norms is not None:  # no NaN placeholder: plotly.js logs NaN attribute errors
        norms = np.asarray(norms, dtype=float)
        if norms.shape != values.shape:
            raise ValueError(f"norms has shape {norms.shape}; expected {values.shape} like values")
        extra = {"customdata": norms}
        hover += "<br>norm %{customdata:.1f}"
    fig = go.Figure(
        go.Heatmap(
            z=values,
            x=labels,
            y=list(row_labels) if row_labels is not None else [f"L{layer}" for layer in layers],
            colorscale=SIGNED_SCALE,
            zmid=0.0,
            **_symmetric(values),
            colorbar={"title": {"text": pole_legend(colorbar_title), "side": "right"}},
            hovertemplate=hover + "<extra></extra>",
            **extra,
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


def _symmetric(values: np.ndarray) -> dict[str, float]:
    """``zmin``/``zmax`` symmetric around 0 that cover ``values``; never NaN, never zero-wide."""
    finite = np.abs(values[np.isfinite(values)]) if np.size(values) else np.zeros(0)
    limit = float(finite.max()) if finite.size else 0.0
    limit = limit if limit > 0 else 1.0
    return {"zmin": -limit, "zmax": limit}


def _rgb(rgb: tuple[int, int, int]) -> str:
    return f"rgb{rgb}"


def replace_figure(widget: go.FigureWidget, new: go.Figure) -> None:
    """Redraw ``widget`` as ``new`` from scratch: traces, and every layout key.

    Assigning ``widget.layout = new.layout`` only *sets* the keys ``new`` has; the page keeps
    any other key the old figure had (cluster outlines in ``shapes``, a message in
    ``annotations``) and stretches the axes to fit them. This removes those keys, and orders
    the messages so that the page never draws a trace on the other figure's axes: old traces
    out, layout replaced, new traces in.

    Example:
        >>> widget = go.FigureWidget(go.Figure(layout={"shapes": [{"type": "line"}]}))
        >>> replace_figure(widget, go.Figure(go.Bar(y=[1]), layout={"title": "bars"}))
        >>> widget.layout.shapes, widget.data[0].type
        ((), 'bar')
    """
    stale = set(widget.layout.to_plotly_json()) - set(new.layout.to_plotly_json())
    widget.data = ()  # first: old traces drawn on new axes make plotly.js log NaN errors
    if stale:  # null deletes a key on the page: plotly's widget model unsets it
        widget.plotly_relayout({key: None for key in sorted(stale)})
    widget.layout = new.layout
    widget.add_traces(list(new.data))  # last: new traces land on the new axes (a heatmap's
    # categories on a PCA's linear axis: '<image> attribute width: Expected length, "NaN"')
