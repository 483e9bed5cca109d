"""Extraction methods and the resumable extraction pipeline."""

from __future__ import annotations

from trait_lab.extraction.methods import (
    METHODS,
    RFM,
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
    "rfm_direction",
    "run_extraction",
    "vector_path",
]
