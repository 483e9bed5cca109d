"""The live steering panel."""

from __future__ import annotations

from widgets.steering.panel import (
    SteeringPanel,
)
from widgets.steering.rows import (
    Request,
    Row,
    absorb,
    steering_figure,
)
from widgets.steering.targets import (
    PANEL_MODES,
    SteeringTarget,
    build_specs,
    coefficients,
    steering_targets,
)

__all__ = [
    "PANEL_MODES",
    "Request",
    "Row",
    "SteeringPanel",
    "SteeringTarget",
    "absorb",
    "build_specs",
    "coefficients",
    "steering_figure",
    "steering_targets",
]
