"""Activations of datasets: ActivationStore, extract_representations (and its batching),
capture_at_position and typical norms.
"""

from __future__ import annotations

from trait_lab.activations.batches import (
    COMPILED_PREFIX,
    Batcher,
    forward_batch,
    iter_samples,
    sample_ids,
    unwrap_compiled,
)
from trait_lab.activations.capture import (
    POOLS,
    capture_at_position,
)
from trait_lab.activations.extract import (
    Representations,
    extract_representations,
)
from trait_lab.activations.norms import (
    coefficient_for,
    typical_cosines,
    typical_norms,
)
from trait_lab.activations.store import (
    ActivationStore,
    PositionSelector,
    check_layer_names,
)

__all__ = [
    "COMPILED_PREFIX",
    "POOLS",
    "ActivationStore",
    "Batcher",
    "PositionSelector",
    "Representations",
    "capture_at_position",
    "check_layer_names",
    "coefficient_for",
    "extract_representations",
    "forward_batch",
    "iter_samples",
    "sample_ids",
    "typical_cosines",
    "typical_norms",
    "unwrap_compiled",
]
