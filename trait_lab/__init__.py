"""trait_lab: trait vectors for language models — extract, measure, steer, watch, compare.

The public names below are importable from the top level and load their module on first use,
so ``import trait_lab`` stays cheap and ``python -m trait_lab.models`` runs cleanly.

Example:
    >>> import trait_lab
    >>> trait_lab.SteeringHook.__name__
    'SteeringHook'
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # hooks
    "AblationHook": "trait_lab.hooks",
    "ActivationCappingHook": "trait_lab.hooks",
    "CaptureHook": "trait_lab.hooks",
    "MultiLayerCapture": "trait_lab.hooks",
    "MultiLayerProjection": "trait_lab.hooks",
    "MultiLayerSteering": "trait_lab.hooks",
    "PerPositionSteeringHook": "trait_lab.hooks",
    "PerSampleSteering": "trait_lab.hooks",
    "ProjectionHook": "trait_lab.hooks",
    "SteeringHook": "trait_lab.hooks",
    # architectures
    "get_hook_path": "trait_lab.architectures",
    "detect_contribution_paths": "trait_lab.architectures",
    # generation
    "HookedGenerator": "trait_lab.generation",
    "CaptureConfig": "trait_lab.generation",
    "SteeringConfig": "trait_lab.generation",
    "ProjectionSpec": "trait_lab.generation",
    "SamplingConfig": "trait_lab.generation",
    "GenerationResult": "trait_lab.generation",
    # store
    "ActivationStore": "trait_lab.store",
    "extract_representations": "trait_lab.store",
    "save_activations": "trait_lab.activation_io",
    "load_activations": "trait_lab.activation_io",
    "ActivationWriter": "trait_lab.activation_io",
    "ActivationReader": "trait_lab.activation_io",
    # models, positions, capture
    "load_model": "trait_lab.models",
    "capture_at_position": "trait_lab.capture",
    "Position": "trait_lab.positions",
    "format_prompt": "trait_lab.prompts",
    # vector files
    "save_vector": "trait_lab.vectors",
    "load_vector": "trait_lab.vectors",
    # backends and experiments
    "LocalBackend": "trait_lab.backends",
    "VLLMBackend": "trait_lab.backends",
    "get_backend": "trait_lab.backends",
    "GenerationConfig": "trait_lab.backends",
    "SteeringSpec": "trait_lab.backends",
    "CaptureSpec": "trait_lab.backends",
    "get_model_variant": "trait_lab.experiments",
    # traits, extraction, selection
    "list_traits": "trait_lab.traits",
    "load_trait": "trait_lab.traits",
    "validate_trait": "trait_lab.traits",
    "run_extraction": "trait_lab.extraction",
    "extract_trait": "trait_lab.extraction",
    "select_vector": "trait_lab.selection",
    "load_vector_grid": "trait_lab.vector_sets",
    "VectorGrid": "trait_lab.vector_sets",
    "select_vectors": "trait_lab.selection",
    "typical_norms": "trait_lab.scale",
    # extraction methods
    "get_method": "trait_lab.methods",
    "METHODS": "trait_lab.methods",
    # math and metrics
    "projection": "trait_lab.math",
    "cosine_similarity": "trait_lab.math",
    "batch_cosine_similarity": "trait_lab.math",
    "orthogonalize": "trait_lab.math",
    "pairwise_cosine_matrix": "trait_lab.math",
    "pca": "trait_lab.math",
    "project_out_subspace": "trait_lab.math",
    "grand_mean_center": "trait_lab.math",
    "compute_top_pcs_by_variance": "trait_lab.math",
    "denoise_with_pcs": "trait_lab.math",
    "trait_clusters": "trait_lab.math",
    "representational_similarity": "trait_lab.math",
    "pca_norm_correlation": "trait_lab.math",
    "vector_set_comparison": "trait_lab.math",
    "accuracy": "trait_lab.math",
    "effect_size": "trait_lab.math",
    "polarity_correct": "trait_lab.math",
    "pearson_correlation": "trait_lab.math",
    # types
    "VectorSpec": "trait_lab.types",
    "ProjectionConfig": "trait_lab.types",
    "VectorResult": "trait_lab.types",
    "JudgeResult": "trait_lab.types",
    "ModelVariant": "trait_lab.types",
    "ActivationMetadata": "trait_lab.types",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'trait_lab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
