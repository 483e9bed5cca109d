"""Every record type in one import, as traitinterp's ``core.types`` offers them.

Each is defined where it belongs (the subpackage named below) and re-exported here; all are
checked when built and round-trip through ``to_dict()`` / ``from_dict()``. Vectors and results:
``VectorSpec``, ``ProjectionConfig``, ``VectorResult``, ``JudgeResult``, ``ModelVariant``,
``ActivationMetadata`` (:mod:`trait_lab.core.types`); ``ModelConfig``
(:mod:`trait_lab.core.model_config`); ``ResponseRecord``, ``ProjectionEntry``
(:mod:`trait_lab.core.responses`); ``ProjectionRecord`` (:mod:`trait_lab.dynamics.records`);
``SteeringEntry``, ``SteeringRunRecord``, ``SteeringResults``
(:mod:`trait_lab.evaluation.results`).

Example:
    >>> from trait_lab.types import ActivationMetadata, ModelConfig, ResponseRecord
    >>> ModelConfig.from_dict(ModelConfig("gpt2", "gpt2", 12, 768).to_dict()).hidden_dim
    768
"""

from __future__ import annotations

from trait_lab.core.model_config import ModelConfig
from trait_lab.core.responses import ProjectionEntry, ResponseRecord
from trait_lab.core.types import (
    ActivationMetadata,
    JudgeResult,
    ModelVariant,
    ProjectionConfig,
    VectorResult,
    VectorSpec,
)
from trait_lab.dynamics.records import ProjectionRecord
from trait_lab.evaluation.results import SteeringEntry, SteeringResults, SteeringRunRecord

__all__ = [
    "ActivationMetadata",
    "JudgeResult",
    "ModelConfig",
    "ModelVariant",
    "ProjectionConfig",
    "ProjectionEntry",
    "ProjectionRecord",
    "ResponseRecord",
    "SteeringEntry",
    "SteeringResults",
    "SteeringRunRecord",
    "VectorResult",
    "VectorSpec",
]
