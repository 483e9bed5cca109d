"""The live steering panel."""

from __future__ import annotations

from widgets.steering.controls import (
    POSITIONS,
    RANGES,
    UNITS,
    SamplingControls,
    TargetControls,
    readout_text,
    sampling_controls,
    target_controls,
)
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
    selected_vectors,
    steering_targets,
)

__all__ = [
    "PANEL_MODES",
    "POSITIONS",
    "RANGES",
    "UNITS",
    "Request",
    "Row",
    "SamplingControls",
    "SteeringPanel",
    "SteeringTarget",
    "TargetControls",
    "absorb",
    "build_specs",
    "coefficients",
    "readout_text",
    "sampling_controls",
    "selected_vectors",
    "steering_figure",
    "steering_targets",
    "target_controls",
]
