"""The geometry explorer."""

from __future__ import annotations

from widgets.geometry.explorer import (
    MAX_DEFAULT,
    VIEWS,
    GeometryExplorer,
    GeometryView,
    compute_view,
    view_figure,
)
from widgets.geometry.figures import (
    SYMBOLS,
    TEXT_LIMIT,
    cosine_heatmap,
    message_figure,
    pca_scatter,
)

__all__ = [
    "MAX_DEFAULT",
    "SYMBOLS",
    "TEXT_LIMIT",
    "VIEWS",
    "GeometryExplorer",
    "GeometryView",
    "compute_view",
    "cosine_heatmap",
    "message_figure",
    "pca_scatter",
    "view_figure",
]
