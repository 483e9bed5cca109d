"""Token-by-token dynamics: massive dims, calibration, cleaning, projection
records, research-mode per-token output, inference, and the analyses of a view (velocity,
magnitude, top spans, variant differences, trait correlation).
"""

from __future__ import annotations

from trait_lab.dynamics.calibration import (
    calibrate,
    ensure_calibration,
    passive_collector,
    research_calibration,
)
from trait_lab.dynamics.cleaning import (
    CLEAN_LABELS,
    CLEAN_OPTIONS,
    MODES,
    ArrayT,
    apply_mode,
    center,
    check_clean_option,
    clean_norms,
    clean_projection,
    dims_to_clean,
    smooth,
)
from trait_lab.dynamics.correlation import (
    pearson_rows,
    trait_correlation,
)
from trait_lab.dynamics.inference import (
    TraitInput,
    VectorLoader,
    check_widths,
    project_prompts,
    records_dir,
    resolve_traits,
    run_inference,
)
from trait_lab.dynamics.massive import (
    CALIBRATION_SCHEMA,
    NEUTRAL_PROMPTS,
    STATE_NAME,
    CalibrationError,
    MassiveDimCollector,
    calibration_path,
    load_calibration,
)
from trait_lab.dynamics.matrix import (
    skip_first,
    trait_matrix,
)
from trait_lab.dynamics.per_token import (
    PER_TOKEN_NAME,
    PER_TOKEN_SCHEMA,
    load_per_token,
    per_token_values,
)
from trait_lab.dynamics.records import (
    PROJECTION_SCHEMA,
    Members,
    ProjectionRecord,
    RecordError,
    build_record,
    load_record,
)
from trait_lab.dynamics.spans import (
    PARTS,
    Span,
    top_spans,
)
from trait_lab.dynamics.summary import (
    TOP_N,
    calibration_summary,
    cleaning_dims,
)
from trait_lab.dynamics.token_stats import (
    activation_magnitude,
    velocity,
)
from trait_lab.dynamics.variants import (
    ALIGNMENTS,
    Difference,
    variant_difference,
)

__all__ = [
    "ALIGNMENTS",
    "CALIBRATION_SCHEMA",
    "CLEAN_LABELS",
    "CLEAN_OPTIONS",
    "MODES",
    "NEUTRAL_PROMPTS",
    "PARTS",
    "PER_TOKEN_NAME",
    "PER_TOKEN_SCHEMA",
    "PROJECTION_SCHEMA",
    "STATE_NAME",
    "TOP_N",
    "ArrayT",
    "CalibrationError",
    "Difference",
    "MassiveDimCollector",
    "Members",
    "ProjectionRecord",
    "RecordError",
    "Span",
    "TraitInput",
    "VectorLoader",
    "activation_magnitude",
    "apply_mode",
    "build_record",
    "calibrate",
    "calibration_path",
    "calibration_summary",
    "center",
    "check_clean_option",
    "check_widths",
    "clean_norms",
    "clean_projection",
    "cleaning_dims",
    "dims_to_clean",
    "ensure_calibration",
    "load_calibration",
    "load_per_token",
    "load_record",
    "passive_collector",
    "pearson_rows",
    "per_token_values",
    "project_prompts",
    "records_dir",
    "research_calibration",
    "resolve_traits",
    "run_inference",
    "skip_first",
    "smooth",
    "top_spans",
    "trait_correlation",
    "trait_matrix",
    "variant_difference",
    "velocity",
]
