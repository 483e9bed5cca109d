"""Pieces every view uses: figure export, shared figures, the run worker, the
token stream widget.
"""

from __future__ import annotations

from widgets.common.export import (
    FORMATS,
    ChromiumMissingError,
    ExportBar,
    default_stem,
    export_figure,
    find_chromium,
    free_path,
)
from widgets.common.figures import (
    metrics_heatmap,
    projection_histogram,
    replace_figure,
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
    "default_stem",
    "export_figure",
    "find_chromium",
    "free_path",
    "metrics_heatmap",
    "projection_histogram",
    "replace_figure",
    "token_heatmap",
]
