"""Token-by-token dynamics: massive dims, calibration, cleaning, projection
records and inference.
"""

from __future__ import annotations

from trait_lab.dynamics.calibration import (
    calibrate,
    ensure_calibration,
    passive_collector,
    research_calibration,
)
from trait_lab.dynamics.cleaning import (
    CLEAN_OPTIONS,
    MODES,
    ArrayT,
    apply_mode,
    center,
    clean_norms,
    clean_projection,
    dims_to_clean,
    smooth,
)
from trait_lab.dynamics.inference import (
    TraitInput,
    VectorLoader,
    project_prompts,
    records_dir,
    resolve_traits,
    run_inference,
)
from trait_lab.dynamics.massive import (
    NEUTRAL_PROMPTS,
    SCHEMA,
    SCHEMA_VERSION,
    STATE_NAME,
    CalibrationError,
    MassiveDimCollector,
    calibration_path,
    load_calibration,
)
from trait_lab.dynamics.matrix import (
    trait_matrix,
)
from trait_lab.dynamics.records import (
    TOP_N,
    Members,
    ProjectionRecord,
    RecordError,
    build_record,
    calibration_summary,
    cleaning_dims,
    load_record,
)

__all__ = [
    "CLEAN_OPTIONS",
    "MODES",
    "NEUTRAL_PROMPTS",
    "SCHEMA",
    "SCHEMA_VERSION",
    "STATE_NAME",
    "TOP_N",
    "ArrayT",
    "CalibrationError",
    "MassiveDimCollector",
    "Members",
    "ProjectionRecord",
    "RecordError",
    "TraitInput",
    "VectorLoader",
    "apply_mode",
    "build_record",
    "calibrate",
    "calibration_path",
    "calibration_summary",
    "center",
    "clean_norms",
    "clean_projection",
    "cleaning_dims",
    "dims_to_clean",
    "ensure_calibration",
    "load_calibration",
    "load_record",
    "passive_collector",
    "project_prompts",
    "records_dir",
    "research_calibration",
    "resolve_traits",
    "run_inference",
    "smooth",
    "trait_matrix",
]
