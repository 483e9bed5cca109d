"""Choosing vectors (selection, steering evaluation) and loading grids of them."""

from __future__ import annotations

from trait_lab.vectors.evaluate import evaluate_steering, middle_layers, run_evaluation
from trait_lab.vectors.grids import (
    DEFAULT_EXCLUDED,
    Key,
    VectorGrid,
    label,
    load_vector_grid,
)
from trait_lab.vectors.selection import (
    EXCLUDED_METHODS,
    SELECTION_SOURCES,
    load_selected,
    select_vector,
    select_vectors,
    steering_result,
)

__all__ = [
    "DEFAULT_EXCLUDED",
    "EXCLUDED_METHODS",
    "SELECTION_SOURCES",
    "Key",
    "VectorGrid",
    "evaluate_steering",
    "label",
    "load_selected",
    "load_vector_grid",
    "middle_layers",
    "run_evaluation",
    "select_vector",
    "select_vectors",
    "steering_result",
]
