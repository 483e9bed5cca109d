"""Trait-dynamics figures: a :class:`~widgets.dynamics.panels.Panel` drawn into plotly.

:func:`draw` puts a panel into a plotly figure *in place* (a ``FigureWidget`` keeps its
identity, so a notebook's output updates without flicker) and rebuilds the whole layout each
time (axes, shapes, notes), so a figure after any sequence of changes equals one drawn fresh.
Heatmaps use the one colour convention of :mod:`widgets.common.colours` (``SIGNED_SCALE``: red =
toward the positive pole) and say so in the colour bar; nothing in a figure is NaN (a missing
z value is ``None``). :func:`read` gets back what a figure shows, so tests can compare it with
``trait_matrix``.

Example:
    >>> from trait_lab.testing import tiny_record
    >>> rec = tiny_record()
    >>> panel = layers_panel(rec, "t", clean="all", mode="cosine")
    >>> fig = go.Figure()
    >>> draw(fig, panel)
    >>> read(fig).rows == panel.rows == ["L4", "L8"]
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from trait_lab.dynamics import ProjectionRecord
from widgets.common.colours import SIGNED_SCALE, pole_legend
from widgets.common.figures import replace_figure
from widgets.dynamics.panels import (
    Panel,
    layers_panel,
    record_label,
    token_labels,
    traits_panel,
)

__all__ = [
    "MARGIN",
    "MAX_WIDTH",
    "VIEWS",
    "Panel",
    "Shown",
    "boundary_marks",
    "colour_bar_title",
    "draw",
    "dynamics_figure",
    "figure_width",
    "layers_panel",
    "none_for_nan",
    "read",
    "record_label",
    "signed_heatmap",
    "token_axis",
    "token_labels",
    "traits_panel",
]

VIEWS: tuple[str, ...] = ("tokens × layers", "tokens × traits", "lines")
"""The view's layouts: a heatmap per trait, a heatmap per layer, or one line per layer."""

MAX_WIDTH = 940
"""Widest figure in px: fits JupyterLab's ~970 px output area with the colour bar on show."""

MARGIN = {"l": 110, "r": 170, "t": 80, "b": 40}
"""Margins of the heatmap and of the panels under it (its colour bar sits in the right margin),
so token columns line up."""

_TICK_PX = 13  # a vertical size-10 tick label needs ~13 px to stay clear of its neighbours
_FRAME_PX = 280  # left margin + right margin (with the colour bar)


@dataclass(frozen=True)
class Shown:
    """What a figure shows: row labels, values ``[rows, tokens]`` and norms ``[rows, tokens]``."""

    rows: list[str]
    values: np.ndarray
    norms: np.ndarray


def none_for_nan(values: Any) -> Any:
    """``values`` as plotly data: finite arrays unchanged, otherwise nested lists with ``None``
    where a value is NaN or infinite (plotly draws a gap; NaN would reach the browser).

    Example:
        >>> none_for_nan(np.array([[1.0, np.nan]]))
        [[1.0, None]]
    """
    arr = np.asarray(values, dtype=float)
    if np.isfinite(arr).all():
        return arr
    return np.where(np.isfinite(arr), arr, None).tolist()


def figure_width(n_tokens: int) -> int:
    """The figure width in px for ``n_tokens`` columns: at least 760, ~24 px per token up to 45
    tokens, then 13 px per token, never more than :data:`MAX_WIDTH` (always a number: switching
    between a fixed width and autosize in place breaks plotly's widget).

    Example:
        >>> figure_width(3), figure_width(30), figure_width(500)
        (760, 940, 940)
    """
    per_token = 24 if n_tokens <= 45 else _TICK_PX
    return min(MAX_WIDTH, max(760, _FRAME_PX + per_token * n_tokens))


def colour_bar_title(label: str) -> str:
    """:func:`pole_legend` of ``label`` on three short lines, so it fits over a short colour
    bar (``.replace("<br>", " ")`` gives the one-line legend back).

    Example:
        >>> colour_bar_title("cosine")
        'cosine<br>(red = positive pole,<br>blue = negative)'
    """
    return pole_legend(label).replace(" (", "<br>(", 1).replace(", ", ",<br>")


def signed_heatmap(z: Any, limit: float, title: str, **spec: Any) -> dict[str, Any]:
    """A heatmap trace spec in the one colour convention: ``SIGNED_SCALE`` centred on 0 over
    ``[-limit, limit]``, the colour bar titled with :func:`pole_legend`.

    Example:
        >>> signed_heatmap([[1.0]], 1.0, "cosine")["colorscale"]
        'RdBu_r'
    """
    limit = float(limit) if np.isfinite(limit) and limit > 0 else 1.0
    return dict(
        z=none_for_nan(z),
        colorscale=SIGNED_SCALE,
        zmid=0.0,
        zmin=-limit,
        zmax=limit,
        colorbar={"title": {"text": colour_bar_title(title), "side": "top"}, "thickness": 14},
        **spec,
    )


def _heatmap(panel: Panel, labels: list[str]) -> dict:
    finite = panel.values[np.isfinite(panel.values)]
    limit = float(np.abs(finite).max()) if finite.size else 1.0
    return signed_heatmap(
        panel.values,
        limit,
        panel.value_title,
        x=labels,
        y=panel.rows,
        customdata=none_for_nan(panel.norms),
        hovertemplate=f"token %{{x}}<br>{panel.row_title} %{{y}}<br>value %{{z:.3f}}"
        "<br>norm %{customdata:.1f}<extra></extra>",
    )


def _lines(panel: Panel, labels: list[str]) -> list[dict]:
    colors = sample_colorscale("Viridis", np.linspace(0, 0.9, max(len(panel.rows), 2)).tolist())
    x = np.arange(len(labels))
    return [
        dict(
            x=x,
            y=none_for_nan(panel.values[i]),
            customdata=none_for_nan(panel.norms[i]),
            text=labels,
            name=row,
            mode="lines+markers",
            line={"color": colors[i], "width": 1.5},
            marker={"size": 4, "color": colors[i]},
            hovertemplate=f"token %{{text}}<br>{row}<br>value %{{y:.3f}}<br>norm "
            "%{customdata:.1f}<extra></extra>",
        )
        for i, row in enumerate(panel.rows)
    ]


def boundary_marks(boundary: int, n: int) -> tuple[list[dict], list[dict]]:
    """The dashed line at ``boundary - 0.5`` and its "response →" note (none when the boundary
    is outside ``(0, n)``)."""
    if not 0 < boundary < n:
        return [], []
    x = boundary - 0.5
    line = {"color": "black", "width": 2, "dash": "dash"}
    shape = dict(type="line", x0=x, x1=x, y0=0, y1=1, yref="paper", line=line)
    note = dict(x=x, y=1.0, yref="paper", text="response →", showarrow=False)
    note.update(xanchor="left", yanchor="bottom")
    return [shape], [note]


def token_axis(labels: list[str], heat: bool) -> dict[str, Any]:
    """The x axis for ``labels``: categories (heatmap) or positions with every k-th labelled,
    so labels never overlap; hover names every token."""
    n = len(labels)
    shown = max(1, min(n, (figure_width(n) - _FRAME_PX) // _TICK_PX))
    ticks: dict[str, Any] = dict(
        tickangle=-90 if n > 30 else -45, tickfont={"size": 10 if n > 30 else 12}
    )
    if heat:
        return dict(type="category", nticks=shown, **ticks)
    every = -(-n // shown)
    return dict(
        type="linear",
        tickvals=list(range(0, n, every)),
        ticktext=labels[::every],
        range=[-0.5, n - 0.5],  # the heatmap's range: panels under it line up
        **ticks,
    )


def draw(fig: go.Figure, panel: Panel) -> None:
    """Show ``panel`` in ``fig``, in place: traces are reused when the layout kind matches, and
    the layout is rebuilt from scratch (nothing of an earlier view stays); a change of trace
    kind sets the new layout before the new traces arrive.

    The boundary is a dashed vertical line at ``boundary - 0.5`` with a "response →" note;
    tick labels turn vertical for long records, the height grows with the rows and the width
    with the tokens up to :data:`MAX_WIDTH`, beyond which every k-th token is labelled.
    """
    labels = token_labels(panel.tokens, start=panel.start)
    n = len(labels)
    heat = panel.kind != "lines"
    specs = [_heatmap(panel, labels)] if heat else _lines(panel, labels)
    trace_type = go.Heatmap if heat else go.Scatter
    same = len(fig.data) == len(specs) and all(isinstance(t, trace_type) for t in fig.data)
    shapes, notes = boundary_marks(panel.boundary, n)
    if heat:
        yaxis = dict(type="category", title={"text": panel.row_title})
        height = 230 + 30 * len(panel.rows)
    else:
        yaxis = dict(type="linear", title={"text": f"{panel.value_title} (> 0: positive pole)"})
        height = 460
    title = panel.title + (f"<br><sup>{panel.subtitle}</sup>" if panel.subtitle else "")
    layout = dict(
        title={"text": title},
        xaxis=dict(
            title={"text": "token"}, automargin=True, autorange=heat, **token_axis(labels, heat)
        ),
        yaxis=dict(automargin=True, autorange=True, **yaxis),
        shapes=shapes,
        annotations=notes,
        height=height + (60 if n > 30 else 30),
        width=figure_width(n),
        showlegend=not heat,
        margin=MARGIN,
    )
    if same:
        with fig.batch_update():
            for trace, spec in zip(fig.data, specs, strict=True):
                trace.update(spec, overwrite=True)
            fig.update_layout(layout, overwrite=True)  # whole containers: nothing stale stays
        return
    # A new kind of trace: redraw from scratch (old traces out, new axes, then the new traces)
    replace_figure(fig, go.Figure([trace_type(spec) for spec in specs], layout))


def dynamics_figure(
    record: ProjectionRecord,
    trait: str | None = None,
    *,
    view: str = "tokens × layers",
    layer: int | None = None,
    **options: Any,
) -> go.Figure:
    """A static figure of one view (what :class:`~widgets.dynamics.view.TraitDynamics` draws).

    ``trait`` is needed by the layer views, ``layer`` by ``"tokens × traits"``; ``options``
    (``clean``, ``mode``, ``smoothing``, ``centre``, ``skip``, ``sampling``, and ``layers`` for
    the layer views) go to the panel functions.

    Example:
        >>> dynamics_figure(None, view="grid")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: unknown view 'grid'; choose one of ['tokens × layers', ...
    """
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; choose one of {list(VIEWS)}")
    if view == "tokens × traits":
        if layer is None:
            raise ValueError("the 'tokens × traits' view needs layer=; pass one of the layers")
        panel = traits_panel(record, layer, **options)
    else:
        if trait is None:
            raise ValueError(
                f"the {view!r} view needs trait=; traits: {sorted(record.projections)}"
            )
        panel = layers_panel(record, trait, kind=view, **options)
    fig = go.Figure()
    draw(fig, panel)
    return fig


def read(fig: go.Figure) -> Shown:
    """Rows, values and hover norms a figure drawn by :func:`draw` shows.

    Example:
        >>> read(go.Figure()).rows
        []
    """
    if not fig.data:
        return Shown([], np.zeros((0, 0)), np.zeros((0, 0)))
    if isinstance(fig.data[0], go.Heatmap):
        trace = fig.data[0]
        return Shown(list(trace.y), np.asarray(trace.z, float), np.asarray(trace.customdata, float))
    return Shown(
        [t.name for t in fig.data],
        np.stack([np.asarray(t.y, float) for t in fig.data]),
        np.stack([np.asarray(t.customdata, float) for t in fig.data]),
    )
