"""trait_lab's interactive layer: ipywidgets + anywidget + plotly views over ``trait_lab``.

``from widgets import SteeringPanel, TraitDynamics, GeometryExplorer, export_figure`` — each is
imported on first use, so ``import widgets.figures`` stays cheap.

Example:
    >>> import widgets
    >>> widgets.export_figure.__name__
    'export_figure'
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "SteeringPanel": "widgets.steering_panel",
    "TraitDynamics": "widgets.trait_dynamics",
    "GeometryExplorer": "widgets.geometry_explorer",
    "TokenStream": "widgets.token_stream",
    "ExportBar": "widgets.export",
    "export_figure": "widgets.export",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'widgets' has no attribute {name!r}; it offers {__all__}")
    return getattr(importlib.import_module(_WHERE[name]), name)
