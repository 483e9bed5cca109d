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
    "STEERING_MODES",
    "Backend",
    "CaptureConfig",
    "CaptureResult",
    "CaptureSpec",
    "GenerationConfig",
    "GenerationResult",
    "HookedGenerator",
    "LayerActivations",
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
    "sampling_config",
]
