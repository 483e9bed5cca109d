"""Trait dynamics views: the per-token heatmap, its velocity / magnitude panels and the
analysis tabs (top spans, variant difference, trait–trait correlation)."""

from __future__ import annotations

from widgets.dynamics.analyses import TABS, Analyses
from widgets.dynamics.analysis_figures import (
    correlation_figure,
    difference_figure,
    spans_table,
)
from widgets.dynamics.details import details_figure
from widgets.dynamics.figures import (
    MAX_WIDTH,
    VIEWS,
    Panel,
    Shown,
    draw,
    dynamics_figure,
    layers_panel,
    none_for_nan,
    read,
    record_label,
    token_labels,
    traits_panel,
)
from widgets.dynamics.view import (
    SMOOTHING_WINDOWS,
    RecordLike,
    TraitDynamics,
)

__all__ = [
    "MAX_WIDTH",
    "SMOOTHING_WINDOWS",
    "TABS",
    "VIEWS",
    "Analyses",
    "Panel",
    "RecordLike",
    "Shown",
    "TraitDynamics",
    "correlation_figure",
    "details_figure",
    "difference_figure",
    "draw",
    "dynamics_figure",
    "layers_panel",
    "none_for_nan",
    "read",
    "record_label",
    "spans_table",
    "token_labels",
    "traits_panel",
]
