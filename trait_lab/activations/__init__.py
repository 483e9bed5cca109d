"""Activations of datasets: ActivationStore, extract_representations,
capture_at_position and typical norms.
"""

from __future__ import annotations

from trait_lab.activations.capture import (
    POOLS,
    capture_at_position,
)
from trait_lab.activations.extract import (
    extract_representations,
)
from trait_lab.activations.norms import (
    coefficient_for,
    typical_norms,
)
from trait_lab.activations.store import (
    ActivationStore,
    PositionSelector,
    check_layer_names,
)

__all__ = [
    "POOLS",
    "ActivationStore",
    "PositionSelector",
    "capture_at_position",
    "check_layer_names",
    "coefficient_for",
    "extract_representations",
    "typical_norms",
]
