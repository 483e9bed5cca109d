"""Trait dynamics views."""

from __future__ import annotations

from widgets.dynamics.figures import (
    VIEWS,
    Panel,
    Shown,
    draw,
    dynamics_figure,
    layers_panel,
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
    "SMOOTHING_WINDOWS",
    "VIEWS",
    "Panel",
    "RecordLike",
    "Shown",
    "TraitDynamics",
    "draw",
    "dynamics_figure",
    "layers_panel",
    "read",
    "record_label",
    "token_labels",
    "traits_panel",
]
