"""The trait-dynamics view's inputs: records, live-mode vectors and the control widgets.

:func:`as_record` turns a path into a :class:`~trait_lab.dynamics.ProjectionRecord`,
:func:`check_live` refuses bad live-mode trait vectors before anything is generated, and
:func:`make_controls` builds the view's controls (each with a ``tl-<name>`` CSS class, so a
browser test can find it).

Example:
    >>> controls = make_controls("none", "cosine", "lines", 1, False, 0)
    >>> sorted(controls)[:3], controls["skip"].value
    (['centre', 'clean', 'layer'], 0)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as w

from trait_lab.dynamics import (
    CLEAN_LABELS,
    CLEAN_OPTIONS,
    MODES,
    ProjectionRecord,
    check_widths,
    load_record,
    resolve_traits,
)
from trait_lab.math import nonzero_norm, tensor_arg
from widgets.dynamics.figures import VIEWS

__all__ = [
    "MAX_SKIP",
    "SMOOTHING_WINDOWS",
    "RecordLike",
    "as_record",
    "check_live",
    "choose",
    "make_controls",
]

RecordLike = ProjectionRecord | str | os.PathLike[str]
SMOOTHING_WINDOWS = (1, 3, 5, 7, 9)
MAX_SKIP = 64
"""The most leading tokens the "skip first" box drops."""


def as_record(item: Any, index: int) -> ProjectionRecord:
    """``item`` if it is a record, else the record file it names (``records[index]``)."""
    if isinstance(item, ProjectionRecord):
        return item
    if isinstance(item, str | os.PathLike):
        return load_record(item)
    raise ValueError(
        f"records[{index}] is a {type(item).__name__}; pass ProjectionRecord objects or paths to "
        "record files (load_record(path) / run_inference(...) returns them)"
    )


def check_live(model: Any, traits: Mapping[str, Any]) -> None:
    """Live mode's trait vectors, checked before anything is generated: real, finite,
    non-zero and as wide as the model's hidden size."""
    resolved = resolve_traits(traits)
    for name, per_layer in resolved.items():
        for layer, members in per_layer.items():
            for _, vector in members:
                where = f"traits[{name!r}][{layer}]"
                nonzero_norm(tensor_arg(vector, where, None, "[hidden]"), where)
    check_widths(resolved, model)


def choose(name: str, value: Any, allowed: Sequence[Any], fix: str) -> Any:
    """``value`` if it is one of ``allowed``; else a ``ValueError`` naming both and the fix."""
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}; choose one of {list(allowed)} ({fix})")
    return value


def make_controls(
    clean: str, mode: str, view: str, smoothing: int, centre: bool, skip: int
) -> dict[str, Any]:
    """The view's controls by name (``record``, ``trait``, ``layer``, ``view``, ``clean``,
    ``mode``, ``smoothing``, ``centre``, ``skip``, ``layers``), not yet observed."""

    def dropdown(description: str, options: Sequence[Any], value: Any, width: str) -> Any:
        return w.Dropdown(
            options=options, value=value, description=description, layout=w.Layout(width=width)
        )

    narrow = {"description_width": "initial"}
    controls = {
        "record": dropdown("record", [], None, "420px"),
        "trait": dropdown("trait", [], None, "220px"),
        "layer": dropdown("layer", [], None, "160px"),
        "view": w.ToggleButtons(options=list(VIEWS), value=view, description="view"),
        "clean": dropdown("Clean", [(CLEAN_LABELS[k], k) for k in CLEAN_OPTIONS], clean, "260px"),
        "mode": dropdown("mode", list(MODES), mode, "200px"),
        "smoothing": w.IntSlider(value=smoothing, min=1, max=9, step=2, description="smoothing"),
        "centre": w.Checkbox(value=centre, description="centre on response mean", style=narrow),
        "skip": w.BoundedIntText(
            value=skip,
            min=0,
            max=MAX_SKIP,
            description="skip first N tokens",
            style=narrow,
            layout=w.Layout(width="200px"),
        ),
        "layers": w.SelectMultiple(options=[], description="layers", rows=4),
    }
    for name, control in controls.items():
        control.add_class(f"tl-{name}")
    return controls
