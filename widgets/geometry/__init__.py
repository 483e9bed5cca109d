"""The geometry explorer."""

from __future__ import annotations

from widgets.geometry.explorer import (
    K_CAP,
    MAX_DEFAULT,
    VIEWS,
    GeometryExplorer,
    GeometryView,
    compute_view,
    k_range,
    view_figure,
)
from widgets.geometry.figures import (
    MAX_WIDTH,
    SYMBOLS,
    TEXT_LIMIT,
    cosine_heatmap,
    message_figure,
    pca_scatter,
)

__all__ = [
    "K_CAP",
    "MAX_DEFAULT",
    "MAX_WIDTH",
    "SYMBOLS",
    "TEXT_LIMIT",
    "VIEWS",
    "GeometryExplorer",
    "GeometryView",
    "compute_view",
    "cosine_heatmap",
    "k_range",
    "message_figure",
    "pca_scatter",
    "view_figure",
]
