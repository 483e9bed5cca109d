"""The panels under the heatmap: velocity (per-token change of each row) and activation
magnitude (residual norm per layer), on the same token positions as the heatmap above.

Numbers come from :func:`trait_lab.dynamics.velocity` (of the panel's values) and
:func:`trait_lab.dynamics.activation_magnitude`; the x axis uses token positions with the
heatmap's range and margins, so column ``i`` sits under column ``i``.

Example:
    >>> from trait_lab.testing import tiny_record
    >>> from trait_lab.dynamics import activation_magnitude
    >>> from widgets.dynamics.panels import layers_panel
    >>> rec = tiny_record()
    >>> fig = details_figure(layers_panel(rec, "t"), *activation_magnitude(rec))
    >>> [t.name for t in fig.data]
    ['Δ L4', 'Δ L8', '‖h‖ L4', '‖h‖ L8']
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from trait_lab.dynamics import velocity
from widgets.dynamics.figures import (
    MARGIN,
    boundary_marks,
    figure_width,
    none_for_nan,
    token_axis,
)
from widgets.dynamics.panels import Panel, token_labels

__all__ = ["details_figure"]


def _colors(n: int) -> list[str]:
    return sample_colorscale("Viridis", np.linspace(0, 0.9, max(n, 2)).tolist())


def details_figure(panel: Panel, layers: Sequence[int], magnitude: np.ndarray) -> go.Figure:
    """Velocity of each of ``panel``'s rows and the norm of each of ``layers`` (``magnitude``
    ``[layers, tokens]``, the same token positions as ``panel``), as two stacked line plots.

    A record of one token has no velocity: the top plot then stays empty with a note.
    """
    labels = token_labels(panel.tokens, start=panel.start)
    n = len(labels)
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.12,
        subplot_titles=("velocity: change from the previous token", "activation magnitude ‖h‖"),
    )
    x = np.arange(n)
    colors = _colors(len(panel.rows))
    if n >= 2:
        for i, (row, change) in enumerate(zip(panel.rows, velocity(panel.values), strict=True)):
            fig.add_trace(
                go.Scatter(
                    x=x[1:],
                    y=none_for_nan(change),
                    text=labels[1:],
                    name=f"Δ {row}",
                    mode="lines+markers",
                    line={"color": colors[i], "width": 1.5},
                    marker={"size": 3},
                    hovertemplate=f"token %{{text}}<br>Δ {row} %{{y:.3f}}<extra></extra>",
                ),
                row=1,
                col=1,
            )
    colors = _colors(len(layers))
    for i, (layer, norms) in enumerate(zip(layers, magnitude, strict=True)):
        fig.add_trace(
            go.Scatter(
                x=x,
                y=none_for_nan(norms),
                text=labels,
                name=f"‖h‖ L{layer}",
                mode="lines",
                line={"color": colors[i], "width": 1.5, "dash": "dot"},
                hovertemplate=f"token %{{text}}<br>‖h‖ L{layer} %{{y:.1f}}<extra></extra>",
            ),
            row=2,
            col=1,
        )
    axis = token_axis(labels, heat=False)
    shapes, _ = boundary_marks(panel.boundary, n)
    for shape in shapes:
        shape["line"] = {"color": "black", "width": 1, "dash": "dash"}
    fig.update_xaxes(autorange=False, **axis)
    fig.update_xaxes(showticklabels=False, row=1, col=1)
    fig.update_yaxes(title={"text": "Δ value"}, zeroline=True, row=1, col=1)
    fig.update_yaxes(title={"text": "‖h‖"}, row=2, col=1)
    fig.update_layout(
        shapes=shapes,
        height=380,
        width=figure_width(n),
        margin={**MARGIN, "t": 40},
        showlegend=False,
    )
    return fig
