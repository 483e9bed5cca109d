"""Choosing vectors (selection) and loading grids of them."""

from __future__ import annotations

from trait_lab.vectors.grids import (
    DEFAULT_EXCLUDED,
    Key,
    VectorGrid,
    label,
    load_vector_grid,
)
from trait_lab.vectors.selection import (
    EXCLUDED_METHODS,
    load_selected,
    select_vector,
    select_vectors,
)

__all__ = [
    "DEFAULT_EXCLUDED",
    "EXCLUDED_METHODS",
    "Key",
    "VectorGrid",
    "label",
    "load_selected",
    "load_vector_grid",
    "select_vector",
    "select_vectors",
]
