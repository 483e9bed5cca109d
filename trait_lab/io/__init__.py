"""Vector and activation files (safetensors; .npz readable by numpy; no pickle)."""

from __future__ import annotations

from trait_lab.io.activations import (
    SUFFIXES,
    Activations,
    Loaded,
    cpu_copy,
    load_activation_file,
    save_activations,
)
from trait_lab.io.load import (
    load_activations,
)
from trait_lab.io.metadata import (
    load_activation_metadata,
)
from trait_lab.io.shards import (
    SHARD_MANIFEST,
    SHARD_SCHEMA,
    ActivationReader,
    ActivationWriter,
    update_digest,
)
from trait_lab.io.vectors import (
    load_vector,
    save_vector,
)

__all__ = [
    "SHARD_MANIFEST",
    "SHARD_SCHEMA",
    "SUFFIXES",
    "ActivationReader",
    "ActivationWriter",
    "Activations",
    "Loaded",
    "cpu_copy",
    "load_activation_file",
    "load_activation_metadata",
    "load_activations",
    "load_vector",
    "save_activations",
    "save_vector",
    "update_digest",
]
