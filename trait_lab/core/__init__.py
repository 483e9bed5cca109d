"""Records with one schema mechanism, atomic writes, the experiments layout, resumable runs
and profiling (time and memory on CUDA, MPS or the CPU)."""

from __future__ import annotations

from trait_lab.core.atomic import (
    TEMP_GLOB,
    atomic_write,
    atomic_write_json,
    atomic_write_text,
)
from trait_lab.core.experiments import (
    ExperimentConfig,
    get_model_variant,
    load_experiment_config,
)
from trait_lab.core.jsonl import (
    append_jsonl,
    read_jsonl,
)
from trait_lab.core.model_config import (
    ModelConfig,
)
from trait_lab.core.paths import (
    CONFIG_NAME,
    activations_dir,
    activations_path,
    calibration_path,
    check_name,
    config_path,
    experiment_dir,
    experiments_root,
    extraction_dir,
    inference_dir,
    metadata_path,
    record_path,
    records_dir,
    research_dir,
    steering_dir,
    vector_path,
    vectors_dir,
)
from trait_lab.core.profiling import (
    Profile,
    bandwidth_report,
    find_cuda_tensors,
    gpu_profile,
    memory_stats,
    tensor_size_gb,
)
from trait_lab.core.progress import log_progress
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
from trait_lab.core.responses import (
    ProjectionEntry,
    ResponseRecord,
)
from trait_lab.core.runs import (
    ResumableRun,
)
from trait_lab.core.schema import (
    Schema,
    SchemaError,
)
from trait_lab.core.types import (
    COMPONENTS,
    DTYPES,
    RECORD_SCHEMA,
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
    "RECORD_SCHEMA",
    "SOURCES",
    "TEMP_GLOB",
    "ActivationMetadata",
    "ExperimentConfig",
    "JudgeResult",
    "ModelConfig",
    "ModelVariant",
    "Profile",
    "ProjectionConfig",
    "ProjectionEntry",
    "Record",
    "ResponseRecord",
    "ResumableRun",
    "Schema",
    "SchemaError",
    "VectorResult",
    "VectorSpec",
    "activations_dir",
    "activations_path",
    "append_jsonl",
    "atomic_write",
    "atomic_write_json",
    "atomic_write_text",
    "bandwidth_report",
    "calibration_path",
    "check_choice",
    "check_float",
    "check_int",
    "check_items",
    "check_name",
    "check_opt_float",
    "check_str",
    "config_path",
    "experiment_dir",
    "experiments_root",
    "extraction_dir",
    "find_cuda_tensors",
    "get_model_variant",
    "gpu_profile",
    "inference_dir",
    "invalid",
    "jsonable",
    "load_experiment_config",
    "load_json",
    "log_progress",
    "memory_stats",
    "metadata_path",
    "read_jsonl",
    "record_path",
    "records_dir",
    "research_dir",
    "save_json",
    "set_field",
    "steering_dir",
    "tensor_size_gb",
    "vector_path",
    "vectors_dir",
]
