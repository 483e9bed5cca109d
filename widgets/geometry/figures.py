"""Static plotly figures for the geometry of a set of trait vectors (the ``GeometryExplorer``
draws these): cosine heatmaps (optionally grouped by cluster), a PCA scatter and a cross-layer
RSA heatmap. Pure functions: data in, ``go.Figure`` out.

Example:
    >>> import numpy as np
    >>> fig = cosine_heatmap(["a·L1·probe", "b·L1·probe"], np.eye(2))
    >>> fig.data[0].z.shape, fig.layout.xaxis.title.text
    ((2, 2), 'vector')
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import qualitative

from widgets.common.colours import SIGNED_SCALE, pole_legend

TEXT_LIMIT = 16  # write the value in each cell up to this many rows
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star", "cross", "pentagon")
_COLORS = qualitative.Plotly + qualitative.Dark24
MAX_WIDTH = 940  # px: fits JupyterLab's ~970 px output area, colour bar included


def _size(n: int) -> int:
    return int(min(MAX_WIDTH - 100, max(460, 220 + 22 * n)))


def cosine_heatmap(
    labels: Sequence[str],
    matrix: np.ndarray,
    title: str = "cosine similarity",
    groups: Sequence[int] | None = None,
    axis_title: str = "vector",
    value_name: str = "cosine",
) -> go.Figure:
    """Symmetric heatmap of an ``[N, N]`` similarity matrix on the signed −1..1 scale
    (``SIGNED_SCALE``: red = positive; the colour bar says so), values written in the cells
    when there are few. ``groups`` (one int per label, labels already
    ordered so that each group is contiguous) outlines each group's diagonal block and
    prefixes the tick labels with ``[group]``.

    Example:
        >>> fig = cosine_heatmap(["a", "b", "c"], np.eye(3), groups=[1, 1, 2])
        >>> list(fig.data[0].x), len(fig.layout.shapes), fig.data[0].colorbar.title.text
        (['[1] a', '[1] b', '[2] c'], 2, 'cosine (red = positive pole, blue = negative)')
    """
    z = np.asarray(matrix, dtype=float)
    n = len(labels)
    if z.shape != (n, n):
        raise ValueError(f"matrix has shape {z.shape}; expected ({n}, {n}) for {n} labels")
    ticks = list(labels)
    if groups is not None:
        if len(groups) != n:
            raise ValueError(f"groups has {len(groups)} entries for {n} labels; pass one each")
        ticks = [f"[{g}] {name}" for g, name in zip(groups, labels, strict=True)]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=ticks,
            y=ticks,
            zmin=-1.0,
            zmax=1.0,
            zmid=0.0,
            colorscale=SIGNED_SCALE,
            colorbar={"title": {"text": pole_legend(value_name), "side": "right"}},
            text=np.vectorize(lambda v: f"{v:.2f}")(z) if n <= TEXT_LIMIT else None,
            texttemplate="%{text}" if n <= TEXT_LIMIT else None,
            hovertemplate="%{y}<br>%{x}<br>" + value_name + " %{z:.3f}<extra></extra>",
        )
    )
    if groups is not None:
        start = 0
        for i in range(1, n + 1):
            if i == n or groups[i] != groups[start]:
                fig.add_shape(
                    type="rect",
                    x0=start - 0.5,
                    x1=i - 0.5,
                    y0=start - 0.5,
                    y1=i - 0.5,
                    line={"color": "black", "width": 2},
                )
                start = i
    font = {"size": 10 if n > 20 else 12}
    fig.update_layout(
        title=title,
        xaxis={"title": {"text": axis_title}, "tickangle": -45, "tickfont": font},
        yaxis={"title": {"text": axis_title}, "autorange": "reversed", "tickfont": font},
        width=MAX_WIDTH,
        height=_size(n),
        margin={"l": 60, "r": 20, "t": 70, "b": 60},
    )
    return fig


def pca_scatter(
    coords: np.ndarray,
    explained: Sequence[float],
    keys: Sequence[tuple[str, int, str]],
    title: str = "PCA of the unit vectors",
) -> go.Figure:
    """2-D scatter of PC scores ``coords`` [N, 2] for vectors ``keys`` (trait, layer, method):
    colour by trait, marker symbol by method, the layer written by each point and in the
    hover; the axis titles give each component's share of the variance.

    Example:
        >>> keys = [("joy", 3, "probe"), ("calm", 3, "mean_diff")]
        >>> fig = pca_scatter(np.zeros((2, 2)), [0.75, 0.25], keys)
        >>> fig.layout.xaxis.title.text, [t.name for t in fig.data]
        ('PC1 (75.0% of variance)', ['joy', 'calm', 'mean_diff', 'probe'])
    """
    xy = np.asarray(coords, dtype=float)
    if xy.shape != (len(keys), 2):
        raise ValueError(f"coords has shape {xy.shape}; expected ({len(keys)}, 2)")
    traits = list(dict.fromkeys(k[0] for k in keys))
    methods = sorted({k[2] for k in keys})
    symbol = {m: SYMBOLS[i % len(SYMBOLS)] for i, m in enumerate(methods)}
    fig = go.Figure()
    for i, trait in enumerate(traits):
        rows = [j for j, k in enumerate(keys) if k[0] == trait]
        fig.add_trace(
            go.Scatter(
                x=xy[rows, 0],
                y=xy[rows, 1],
                mode="markers+text" if len(keys) <= 12 else "markers",  # labels collide beyond that
                name=trait,
                legendgroup="traits",
                legendgrouptitle={"text": "trait"},
                text=[f"L{keys[j][1]}" for j in rows],
                textposition="top center",
                textfont={"size": 9},
                marker={
                    "color": _COLORS[i % len(_COLORS)],
                    "symbol": [symbol[keys[j][2]] for j in rows],
                    "size": 11,
                    "line": {"color": "white", "width": 1},
                },
                customdata=[[f"{k[0]}·L{k[1]}·{k[2]}", k[1]] for k in (keys[j] for j in rows)],
                hovertemplate="%{customdata[0]}<br>layer %{customdata[1]}"
                "<br>PC1 %{x:.3f}<br>PC2 %{y:.3f}<extra></extra>",
            )
        )
    for method in methods:  # legend entries only: the symbol of each method
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                name=method,
                legendgroup="methods",
                legendgrouptitle={"text": "method"},
                marker={"color": "#888", "symbol": symbol[method], "size": 11},
            )
        )
    fig.update_layout(
        title=title,
        xaxis_title=f"PC1 ({100 * explained[0]:.1f}% of variance)",
        yaxis_title=f"PC2 ({100 * explained[1]:.1f}% of variance)",
        width=min(820, MAX_WIDTH),
        height=560,
        margin={"l": 70, "r": 20, "t": 70, "b": 60},
    )
    return fig


def message_figure(message: str, title: str = "nothing to show") -> go.Figure:
    """An empty figure that says why it is empty.

    Example:
        >>> message_figure("pick at least 2 vectors").layout.annotations[0].text
        'pick at least 2 vectors'
    """
    fig = go.Figure()
    fig.add_annotation(
        text=message, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font={"size": 16}
    )
    fig.update_layout(
        title=title,
        xaxis={"visible": False},
        yaxis={"visible": False},
        width=min(820, MAX_WIDTH),
        height=320,
    )
    return fig
