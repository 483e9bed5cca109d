"""Pieces every view uses: figure export, shared figures, the run worker, the
token stream widget.
"""

from __future__ import annotations

from widgets.common.export import (
    FORMATS,
    ChromiumMissingError,
    ExportBar,
    export_figure,
    find_chromium,
)
from widgets.common.figures import (
    metrics_heatmap,
    projection_histogram,
    token_heatmap,
)
from widgets.common.runner import (
    Job,
    LatestRunner,
)
from widgets.common.token_stream import (
    Column,
    TokenStream,
)

__all__ = [
    "FORMATS",
    "ChromiumMissingError",
    "Column",
    "ExportBar",
    "Job",
    "LatestRunner",
    "TokenStream",
    "export_figure",
    "find_chromium",
    "metrics_heatmap",
    "projection_histogram",
    "token_heatmap",
]
