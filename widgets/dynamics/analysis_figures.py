"""Figures of the trait-dynamics analyses: the difference of two variants, the trait–trait
correlation matrix and the top-spans table.

Both heatmaps use the one colour convention (``SIGNED_SCALE`` through
:func:`~widgets.dynamics.figures.signed_heatmap`, red = positive, stated in the colour bar); a
correlation that has no value (a constant trait) is ``None`` in ``z`` and "n/a" in the cell.

Example:
    >>> from trait_lab.testing import tiny_record
    >>> from trait_lab.dynamics import trait_correlation
    >>> fig = correlation_figure(*trait_correlation([tiny_record()], 4, part="all"))
    >>> fig.data[0].zmin, fig.data[0].zmax
    (-1.0, 1.0)
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from trait_lab.dynamics import Difference, Span
from widgets.dynamics.figures import (
    MARGIN,
    boundary_marks,
    figure_width,
    signed_heatmap,
    token_axis,
)
from widgets.dynamics.panels import token_labels

__all__ = ["correlation_figure", "difference_figure", "spans_table"]


def difference_figure(diff: Difference, title: str, value_title: str = "A − B") -> go.Figure:
    """A heatmap of ``diff.values`` (layers × paired tokens); hover names both tokens and
    marks positions where the two variants' tokens differ.

    Example:
        >>> from trait_lab.testing import tiny_record
        >>> from trait_lab.dynamics import variant_difference
        >>> d = variant_difference(tiny_record(), tiny_record(seed=1), "t")
        >>> difference_figure(d, "t").data[0].colorscale[0][1]  # blue at the low end
        'rgb(5,48,97)'
    """
    labels = token_labels(diff.tokens_a, start=diff.start_a)
    n = len(labels)
    other = token_labels(diff.tokens_b, start=diff.start_b)
    pairs = zip(other, diff.same, strict=True)
    note = [[f"{b}{'' if same else ' (differs)'}" for b, same in pairs]]
    finite = diff.values[np.isfinite(diff.values)]
    limit = float(np.abs(finite).max()) if finite.size else 1.0
    trace = signed_heatmap(
        diff.values,
        limit,
        value_title,
        x=labels,
        y=[f"L{layer}" for layer in diff.layers],
        customdata=note * len(diff.layers),
        hovertemplate="A %{x}<br>B %{customdata}<br>layer %{y}<br>A − B %{z:.3f}<extra></extra>",
    )
    fig = go.Figure(go.Heatmap(trace))
    shapes, notes = boundary_marks(diff.boundary, n)
    fig.update_layout(
        title={"text": title},
        xaxis=dict(title={"text": "token (A)"}, **token_axis(labels, heat=True)),
        yaxis=dict(type="category", title={"text": "layer"}),
        shapes=shapes,
        annotations=notes,
        height=260 + 30 * len(diff.layers),
        width=figure_width(n),
        margin=MARGIN,
    )
    return fig


def correlation_figure(names: Sequence[str], r: np.ndarray, title: str = "") -> go.Figure:
    """A traits × traits heatmap of Pearson ``r`` in ``[-1, 1]``, values written in the cells.

    Example:
        >>> correlation_figure(["a", "b"], np.array([[1.0, np.nan], [np.nan, 1.0]])).data[0].z
        ([1.0, None], [None, 1.0])
    """
    text = [[("n/a" if not np.isfinite(v) else f"{v:.2f}") for v in row] for row in r]
    trace = signed_heatmap(
        r,
        1.0,
        "Pearson r",
        x=list(names),
        y=list(names),
        text=text,
        texttemplate="%{text}",
        hovertemplate="%{y} vs %{x}<br>r = %{text}<extra></extra>",
    )
    fig = go.Figure(go.Heatmap(trace))
    side = min(620, 220 + 60 * len(names))
    fig.update_layout(
        title={"text": title or "trait–trait correlation over tokens"},
        xaxis={"type": "category"},
        yaxis={"type": "category", "autorange": "reversed"},
        height=side + 60,
        width=side + 200,
        margin=MARGIN,
    )
    return fig


def spans_table(spans: Sequence[Span], labels: Sequence[str], value_title: str) -> str:
    """An HTML table of ``spans`` (rank, record, positions, mean, text); ``labels[i]`` names
    record ``i``.

    Example:
        >>> spans_table([], [], "cosine")
        '<p class="tl-spans-empty">no window fits; make the width smaller</p>'
    """
    if not spans:
        return '<p class="tl-spans-empty">no window fits; make the width smaller</p>'
    head = (
        "<tr><th>#</th><th>record</th><th>tokens</th>"
        f"<th>mean {html.escape(value_title)}</th><th>text</th></tr>"
    )
    rows = []
    for rank, span in enumerate(spans, 1):
        color = "#b2182b" if span.mean > 0 else "#2166ac"
        rows.append(
            f"<tr><td>{rank}</td><td>{span.record}: {html.escape(labels[span.record])}</td>"
            f"<td>{span.start}–{span.stop - 1}</td>"
            f"<td style='color:{color};text-align:right'>{span.mean:+.3f}</td>"
            f"<td><code>{html.escape(span.text)}</code></td></tr>"
        )
    style = "border-collapse:separate;border-spacing:12px 3px"
    return f"<table class='tl-spans-table' style='{style}'>{head}{''.join(rows)}</table>"
