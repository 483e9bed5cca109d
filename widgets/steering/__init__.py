"""The live steering panel."""

from __future__ import annotations

from widgets.steering.controls import (
    POSITIONS,
    RANGES,
    UNITS,
    SamplingControls,
    TargetControls,
    colour_controls,
    mode_controls,
    readout_text,
    sampling_controls,
    target_controls,
    target_rows,
)
from widgets.steering.labels import (
    MODE_LABELS,
    MODE_TIPS,
    layers_text,
    run_title,
    sampling_text,
    short_prompt,
)
from widgets.steering.panel import (
    SteeringPanel,
)
from widgets.steering.recolour import (
    recolour_rows,
    reproject,
)
from widgets.steering.rows import (
    Request,
    Row,
    absorb,
    steering_figure,
    stream_columns,
)
from widgets.steering.scale import (
    ColourScale,
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
    "MODE_LABELS",
    "MODE_TIPS",
    "PANEL_MODES",
    "POSITIONS",
    "RANGES",
    "UNITS",
    "ColourScale",
    "Request",
    "Row",
    "SamplingControls",
    "SteeringPanel",
    "SteeringTarget",
    "TargetControls",
    "absorb",
    "build_specs",
    "coefficients",
    "colour_controls",
    "layers_text",
    "mode_controls",
    "readout_text",
    "recolour_rows",
    "reproject",
    "run_title",
    "sampling_controls",
    "sampling_text",
    "selected_vectors",
    "short_prompt",
    "steering_figure",
    "steering_targets",
    "stream_columns",
    "target_controls",
    "target_rows",
]
