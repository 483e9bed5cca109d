"""trait_lab: trait vectors for language models — extract, measure, steer, watch, compare.

The public names below are importable from the top level and load their module on first use,
so ``import trait_lab`` stays cheap; a ``TYPE_CHECKING`` block gives editors and mypy the types.

Example:
    >>> import trait_lab
    >>> trait_lab.SteeringHook.__name__
    'SteeringHook'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # editors and mypy see the real types; at run time names load lazily
    from trait_lab.activations import (
        ActivationStore as ActivationStore,
        capture_at_position as capture_at_position,
        coefficient_for as coefficient_for,
        extract_representations as extract_representations,
        typical_norms as typical_norms,
    )
    from trait_lab.core import (
        ActivationMetadata as ActivationMetadata,
        JudgeResult as JudgeResult,
        ModelConfig as ModelConfig,
        ModelVariant as ModelVariant,
        Profile as Profile,
        ProjectionConfig as ProjectionConfig,
        ProjectionEntry as ProjectionEntry,
        ResponseRecord as ResponseRecord,
        VectorResult as VectorResult,
        VectorSpec as VectorSpec,
        bandwidth_report as bandwidth_report,
        find_cuda_tensors as find_cuda_tensors,
        get_model_variant as get_model_variant,
        gpu_profile as gpu_profile,
        memory_stats as memory_stats,
        tensor_size_gb as tensor_size_gb,
    )
    from trait_lab.dynamics import (
        MassiveDimCollector as MassiveDimCollector,
        ProjectionRecord as ProjectionRecord,
        ensure_calibration as ensure_calibration,
        load_per_token as load_per_token,
        load_record as load_record,
        research_calibration as research_calibration,
        run_inference as run_inference,
        top_spans as top_spans,
        trait_correlation as trait_correlation,
        trait_matrix as trait_matrix,
        variant_difference as variant_difference,
        velocity as velocity,
    )
    from trait_lab.evaluation import (
        JudgeItem as JudgeItem,
        LocalLogprobJudge as LocalLogprobJudge,
        OpenAIJudge as OpenAIJudge,
        ProbeJudge as ProbeJudge,
        ResultsLog as ResultsLog,
        SearchSettings as SearchSettings,
        SteeringEntry as SteeringEntry,
        SteeringResults as SteeringResults,
        SteeringRunRecord as SteeringRunRecord,
        SteeringSummary as SteeringSummary,
        run_sync as run_sync,
        search_coefficients as search_coefficients,
        summarize_judge_scores as summarize_judge_scores,
    )
    from trait_lab.extraction import (
        METHODS as METHODS,
        extract_trait as extract_trait,
        get_method as get_method,
        run_extraction as run_extraction,
    )
    from trait_lab.generation import (
        Backend as Backend,
        CaptureConfig as CaptureConfig,
        CaptureSpec as CaptureSpec,
        GenerationConfig as GenerationConfig,
        GenerationResult as GenerationResult,
        HookedGenerator as HookedGenerator,
        LocalBackend as LocalBackend,
        ProjectionSpec as ProjectionSpec,
        SamplingConfig as SamplingConfig,
        SteeringConfig as SteeringConfig,
        SteeringSpec as SteeringSpec,
        StreamToken as StreamToken,
        VLLMBackend as VLLMBackend,
        get_backend as get_backend,
    )
    from trait_lab.hooks import (
        AblationHook as AblationHook,
        ActivationCappingHook as ActivationCappingHook,
        AttentionCapture as AttentionCapture,
        CaptureHook as CaptureHook,
        GradientCapture as GradientCapture,
        HookManager as HookManager,
        MultiLayerAblation as MultiLayerAblation,
        MultiLayerCapture as MultiLayerCapture,
        MultiLayerProjection as MultiLayerProjection,
        MultiLayerSteering as MultiLayerSteering,
        PerPositionSteeringHook as PerPositionSteeringHook,
        PerSampleSteering as PerSampleSteering,
        ProjectionHook as ProjectionHook,
        SteeringHook as SteeringHook,
        apply_edit as apply_edit,
    )
    from trait_lab.io import (
        ActivationReader as ActivationReader,
        ActivationWriter as ActivationWriter,
        load_activation_metadata as load_activation_metadata,
        load_activations as load_activations,
        load_vector as load_vector,
        save_activations as save_activations,
        save_vector as save_vector,
    )
    from trait_lab.math import (
        accuracy as accuracy,
        batch_cosine_similarity as batch_cosine_similarity,
        compute_top_pcs_by_variance as compute_top_pcs_by_variance,
        cosine_similarity as cosine_similarity,
        denoise_with_pcs as denoise_with_pcs,
        effect_size as effect_size,
        grand_mean_center as grand_mean_center,
        orthogonalize as orthogonalize,
        pairwise_cosine_matrix as pairwise_cosine_matrix,
        pca as pca,
        pca_norm_correlation as pca_norm_correlation,
        pearson_correlation as pearson_correlation,
        polarity_correct as polarity_correct,
        project_out_subspace as project_out_subspace,
        projection as projection,
        remove_massive_dims as remove_massive_dims,
        representational_similarity as representational_similarity,
        trait_clusters as trait_clusters,
        vector_set_comparison as vector_set_comparison,
    )
    from trait_lab.models import (
        cache_keyword as cache_keyword,
        detect_contribution_paths as detect_contribution_paths,
        forward_offset as forward_offset,
        get_hook_path as get_hook_path,
        load_model as load_model,
    )
    from trait_lab.prompts import (
        Position as Position,
        format_prompt as format_prompt,
        load_prompt_set as load_prompt_set,
    )
    from trait_lab.traits import (
        list_traits as list_traits,
        load_trait as load_trait,
        validate_trait as validate_trait,
    )
    from trait_lab.vectors import (
        VectorGrid as VectorGrid,
        load_selected as load_selected,
        load_vector_grid as load_vector_grid,
        run_evaluation as run_evaluation,
        select_vector as select_vector,
        select_vectors as select_vectors,
    )

_EXPORTS: dict[str, str] = {
    # core
    "get_model_variant": "trait_lab.core",
    "VectorSpec": "trait_lab.core",
    "ProjectionConfig": "trait_lab.core",
    "VectorResult": "trait_lab.core",
    "JudgeResult": "trait_lab.core",
    "ModelVariant": "trait_lab.core",
    "ActivationMetadata": "trait_lab.core",
    "ModelConfig": "trait_lab.core",
    "ResponseRecord": "trait_lab.core",
    "ProjectionEntry": "trait_lab.core",
    "gpu_profile": "trait_lab.core",
    "memory_stats": "trait_lab.core",
    "find_cuda_tensors": "trait_lab.core",
    "bandwidth_report": "trait_lab.core",
    "tensor_size_gb": "trait_lab.core",
    "Profile": "trait_lab.core",
    # math
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
    "remove_massive_dims": "trait_lab.math",
    # io
    "save_activations": "trait_lab.io",
    "load_activations": "trait_lab.io",
    "load_activation_metadata": "trait_lab.io",
    "ActivationWriter": "trait_lab.io",
    "ActivationReader": "trait_lab.io",
    "save_vector": "trait_lab.io",
    "load_vector": "trait_lab.io",
    # models
    "get_hook_path": "trait_lab.models",
    "detect_contribution_paths": "trait_lab.models",
    "load_model": "trait_lab.models",
    "cache_keyword": "trait_lab.models",
    "forward_offset": "trait_lab.models",
    # hooks
    "apply_edit": "trait_lab.hooks",
    "AblationHook": "trait_lab.hooks",
    "ActivationCappingHook": "trait_lab.hooks",
    "AttentionCapture": "trait_lab.hooks",
    "CaptureHook": "trait_lab.hooks",
    "GradientCapture": "trait_lab.hooks",
    "HookManager": "trait_lab.hooks",
    "MultiLayerAblation": "trait_lab.hooks",
    "MultiLayerCapture": "trait_lab.hooks",
    "MultiLayerProjection": "trait_lab.hooks",
    "MultiLayerSteering": "trait_lab.hooks",
    "PerPositionSteeringHook": "trait_lab.hooks",
    "PerSampleSteering": "trait_lab.hooks",
    "ProjectionHook": "trait_lab.hooks",
    "SteeringHook": "trait_lab.hooks",
    # prompts
    "Position": "trait_lab.prompts",
    "format_prompt": "trait_lab.prompts",
    "load_prompt_set": "trait_lab.prompts",
    # traits
    "list_traits": "trait_lab.traits",
    "load_trait": "trait_lab.traits",
    "validate_trait": "trait_lab.traits",
    # generation
    "HookedGenerator": "trait_lab.generation",
    "CaptureConfig": "trait_lab.generation",
    "SteeringConfig": "trait_lab.generation",
    "ProjectionSpec": "trait_lab.generation",
    "SamplingConfig": "trait_lab.generation",
    "GenerationResult": "trait_lab.generation",
    "LocalBackend": "trait_lab.generation",
    "Backend": "trait_lab.generation",
    "VLLMBackend": "trait_lab.generation",
    "get_backend": "trait_lab.generation",
    "GenerationConfig": "trait_lab.generation",
    "SteeringSpec": "trait_lab.generation",
    "CaptureSpec": "trait_lab.generation",
    "StreamToken": "trait_lab.generation",
    # activations
    "ActivationStore": "trait_lab.activations",
    "extract_representations": "trait_lab.activations",
    "capture_at_position": "trait_lab.activations",
    "typical_norms": "trait_lab.activations",
    "coefficient_for": "trait_lab.activations",
    # extraction
    "run_extraction": "trait_lab.extraction",
    "extract_trait": "trait_lab.extraction",
    "get_method": "trait_lab.extraction",
    "METHODS": "trait_lab.extraction",
    # evaluation
    "JudgeItem": "trait_lab.evaluation",
    "LocalLogprobJudge": "trait_lab.evaluation",
    "summarize_judge_scores": "trait_lab.evaluation",
    "run_sync": "trait_lab.evaluation",
    "search_coefficients": "trait_lab.evaluation",
    "SearchSettings": "trait_lab.evaluation",
    "SteeringRunRecord": "trait_lab.evaluation",
    "SteeringResults": "trait_lab.evaluation",
    "SteeringEntry": "trait_lab.evaluation",
    "SteeringSummary": "trait_lab.evaluation",
    "ProbeJudge": "trait_lab.evaluation",
    "OpenAIJudge": "trait_lab.evaluation",
    "ResultsLog": "trait_lab.evaluation",
    # vectors
    "select_vector": "trait_lab.vectors",
    "load_vector_grid": "trait_lab.vectors",
    "VectorGrid": "trait_lab.vectors",
    "select_vectors": "trait_lab.vectors",
    "load_selected": "trait_lab.vectors",
    "run_evaluation": "trait_lab.vectors",
    # dynamics
    "ensure_calibration": "trait_lab.dynamics",
    "trait_matrix": "trait_lab.dynamics",
    "run_inference": "trait_lab.dynamics",
    "load_record": "trait_lab.dynamics",
    "ProjectionRecord": "trait_lab.dynamics",
    "research_calibration": "trait_lab.dynamics",
    "MassiveDimCollector": "trait_lab.dynamics",
    "load_per_token": "trait_lab.dynamics",
    "top_spans": "trait_lab.dynamics",
    "trait_correlation": "trait_lab.dynamics",
    "variant_difference": "trait_lab.dynamics",
    "velocity": "trait_lab.dynamics",
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
