"""Records with one schema mechanism, atomic writes and experiment paths."""

from __future__ import annotations

from trait_lab.core.atomic import (
    TEMP_GLOB,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
)
from trait_lab.core.experiments import (
    CONFIG_NAME,
    ExperimentConfig,
    experiments_root,
    get_model_variant,
    load_experiment_config,
)
from trait_lab.core.records import (
    Record,
    check_choice,
    check_float,
    check_int,
    check_items,
    check_opt_float,
    check_str,
    invalid,
    jsonable,
    set_field,
)
from trait_lab.core.types import (
    COMPONENTS,
    DTYPES,
    SCHEMA_VERSION,
    SOURCES,
    ActivationMetadata,
    JudgeResult,
    ModelVariant,
    ProjectionConfig,
    VectorResult,
    VectorSpec,
    load_json,
    save_json,
)

__all__ = [
    "COMPONENTS",
    "CONFIG_NAME",
    "DTYPES",
    "SCHEMA_VERSION",
    "SOURCES",
    "TEMP_GLOB",
    "ActivationMetadata",
    "ExperimentConfig",
    "JudgeResult",
    "ModelVariant",
    "ProjectionConfig",
    "Record",
    "VectorResult",
    "VectorSpec",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "check_choice",
    "check_float",
    "check_int",
    "check_items",
    "check_opt_float",
    "check_str",
    "experiments_root",
    "get_model_variant",
    "invalid",
    "jsonable",
    "load_experiment_config",
    "load_json",
    "save_json",
    "set_field",
]
