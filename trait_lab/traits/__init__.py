"""Contrastive trait datasets: the on-disk format and the starter traits."""

from __future__ import annotations

from trait_lab.traits.dataset import (
    TraitDataset,
    TraitFormatError,
    builtin_traits_dir,
    list_traits,
    load_trait,
    trait_path,
    validate_trait,
)
from trait_lab.traits.format import (
    DEFAULT_POSITIONS,
    FORMAT_VERSION,
    KINDS,
    META_FILE,
    MIN_PAIRS,
    PAIRS_FILE,
    POLES,
    STEERING_FILE,
    Pole,
    Problem,
    Severity,
    TraitDefinition,
    TraitPair,
    read_trait_folder,
)

__all__ = [
    "DEFAULT_POSITIONS",
    "FORMAT_VERSION",
    "KINDS",
    "META_FILE",
    "MIN_PAIRS",
    "PAIRS_FILE",
    "POLES",
    "STEERING_FILE",
    "Pole",
    "Problem",
    "Severity",
    "TraitDataset",
    "TraitDefinition",
    "TraitFormatError",
    "TraitPair",
    "builtin_traits_dir",
    "list_traits",
    "load_trait",
    "read_trait_folder",
    "trait_path",
    "validate_trait",
]
