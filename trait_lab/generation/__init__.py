"""Generation with hooks: configs, the KV-cached HookedGenerator, backends."""

from __future__ import annotations

from trait_lab.generation.backends import (
    CaptureResult,
    LocalBackend,
    StreamToken,
    get_backend,
)
from trait_lab.generation.configs import (
    STEERING_MODES,
    CaptureConfig,
    CaptureSpec,
    GenerationConfig,
    GenerationResult,
    LayerActivations,
    ProjectionSpec,
    SamplingConfig,
    SteeringConfig,
    SteeringMode,
    SteeringSpec,
    StreamEvent,
)
from trait_lab.generation.generator import (
    HookedGenerator,
)
from trait_lab.generation.precision import (
    PRECISIONS,
    Agreement,
    Precision,
    agreement,
    at_precision,
    native_bf16,
    precision_of,
)
from trait_lab.generation.protocol import (
    Backend,
)
from trait_lab.generation.step_hooks import (
    StepHooks,
)
from trait_lab.generation.vllm import (
    VLLMBackend,
    sampling_config,
)

__all__ = [
    "PRECISIONS",
    "STEERING_MODES",
    "Agreement",
    "Backend",
    "CaptureConfig",
    "CaptureResult",
    "CaptureSpec",
    "GenerationConfig",
    "GenerationResult",
    "HookedGenerator",
    "LayerActivations",
    "LocalBackend",
    "Precision",
    "ProjectionSpec",
    "SamplingConfig",
    "SteeringConfig",
    "SteeringMode",
    "SteeringSpec",
    "StepHooks",
    "StreamEvent",
    "StreamToken",
    "VLLMBackend",
    "agreement",
    "at_precision",
    "get_backend",
    "native_bf16",
    "precision_of",
    "sampling_config",
]
