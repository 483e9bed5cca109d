"""Extraction methods and the resumable extraction pipeline."""

from __future__ import annotations

from trait_lab.extraction.methods import (
    METHODS,
    RFM,
    DegenerateLayerError,
    ExtractionMethod,
    Gradient,
    MeanDiff,
    MethodResult,
    Probe,
    RandomBaseline,
    get_method,
    ledoit_wolf_shrinkage,
)
from trait_lab.extraction.outputs import (
    INPUTS,
    ExtractionSummary,
    extraction_dir,
    read_inputs,
    vector_path,
)
from trait_lab.extraction.pipeline import (
    METRICS_LOG,
    extract_trait,
    run_extraction,
)
from trait_lab.extraction.plan import (
    ExtractionPlan,
    ExtractionSettings,
    plan_extraction,
)
from trait_lab.extraction.rfm import (
    DEFAULT_BANDWIDTHS,
    rfm_direction,
)

__all__ = [
    "DEFAULT_BANDWIDTHS",
    "INPUTS",
    "METHODS",
    "METRICS_LOG",
    "RFM",
    "DegenerateLayerError",
    "ExtractionMethod",
    "ExtractionPlan",
    "ExtractionSettings",
    "ExtractionSummary",
    "Gradient",
    "MeanDiff",
    "MethodResult",
    "Probe",
    "RandomBaseline",
    "extract_trait",
    "extraction_dir",
    "get_method",
    "ledoit_wolf_shrinkage",
    "plan_extraction",
    "read_inputs",
    "rfm_direction",
    "run_extraction",
    "vector_path",
]
