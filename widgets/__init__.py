"""trait_lab's interactive layer: ipywidgets + anywidget + plotly views over ``trait_lab``.

``from widgets import SteeringPanel, TraitDynamics, GeometryExplorer, export_figure`` — each is
imported on first use, so ``import widgets`` stays cheap.

Example:
    >>> import widgets
    >>> widgets.export_figure.__name__
    'export_figure'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # editors and mypy see the real types; at run time names load lazily
    from widgets.common.export import ExportBar as ExportBar, export_figure as export_figure
    from widgets.common.figures import (
        metrics_heatmap as metrics_heatmap,
        projection_histogram as projection_histogram,
        token_heatmap as token_heatmap,
    )
    from widgets.common.token_stream import TokenStream as TokenStream
    from widgets.dynamics.figures import dynamics_figure as dynamics_figure
    from widgets.dynamics.view import TraitDynamics as TraitDynamics
    from widgets.evaluation.figures import steering_curves as steering_curves
    from widgets.geometry.explorer import GeometryExplorer as GeometryExplorer
    from widgets.steering.panel import SteeringPanel as SteeringPanel

_WHERE = {
    "SteeringPanel": "widgets.steering.panel",
    "TraitDynamics": "widgets.dynamics.view",
    "GeometryExplorer": "widgets.geometry.explorer",
    "TokenStream": "widgets.common.token_stream",
    "ExportBar": "widgets.common.export",
    "export_figure": "widgets.common.export",
    "metrics_heatmap": "widgets.common.figures",
    "projection_histogram": "widgets.common.figures",
    "token_heatmap": "widgets.common.figures",
    "dynamics_figure": "widgets.dynamics.figures",
    "steering_curves": "widgets.evaluation.figures",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'widgets' has no attribute {name!r}; it offers {__all__}")
    return getattr(importlib.import_module(_WHERE[name]), name)
