"""Generation with hooks: configs, the KV-cached HookedGenerator, backends."""

from __future__ import annotations

from trait_lab.generation.backends import (
    CaptureResult,
    CaptureSpec,
    GenerationConfig,
    LocalBackend,
    SteeringSpec,
    StreamToken,
    get_backend,
)
from trait_lab.generation.configs import (
    STEERING_MODES,
    Activations,
    CaptureConfig,
    GenerationResult,
    ProjectionSpec,
    SamplingConfig,
    SteeringConfig,
    SteeringMode,
    StreamEvent,
)
from trait_lab.generation.generator import (
    HookedGenerator,
)
from trait_lab.generation.step_hooks import (
    StepHooks,
)
from trait_lab.generation.vllm import (
    VLLMBackend,
)

__all__ = [
    "STEERING_MODES",
    "Activations",
    "CaptureConfig",
    "CaptureResult",
    "CaptureSpec",
    "GenerationConfig",
    "GenerationResult",
    "HookedGenerator",
    "LocalBackend",
    "ProjectionSpec",
    "SamplingConfig",
    "SteeringConfig",
    "SteeringMode",
    "SteeringSpec",
    "StepHooks",
    "StreamEvent",
    "StreamToken",
    "VLLMBackend",
    "get_backend",
]
