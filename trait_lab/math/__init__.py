"""Vector math, geometry and metrics on trait vectors (torch in, torch out)."""

from __future__ import annotations

from trait_lab.math.checks import (
    TensorLike,
    VectorSet,
    check_same_hidden,
    common_dtype,
    nonzero_norm,
    row_norms,
    stack_named,
    tensor_arg,
    unit_rows,
    zero_floor,
)
from trait_lab.math.geometry import (
    SetComparison,
    pca_norm_correlation,
    representational_similarity,
    trait_clusters,
    vector_set_comparison,
)
from trait_lab.math.linalg import (
    batch_cosine_similarity,
    compute_top_pcs_by_variance,
    cosine_similarity,
    denoise_with_pcs,
    grand_mean_center,
    orthogonalize,
    pairwise_cosine_matrix,
    pca,
    project_out_subspace,
    projection,
)
from trait_lab.math.massive import check_dims, remove_massive_dims
from trait_lab.math.metrics import (
    Scores,
    accuracy,
    effect_size,
    pearson_correlation,
    pearson_named,
    polarity_correct,
)

__all__ = [
    "Scores",
    "SetComparison",
    "TensorLike",
    "VectorSet",
    "accuracy",
    "batch_cosine_similarity",
    "check_dims",
    "check_same_hidden",
    "common_dtype",
    "compute_top_pcs_by_variance",
    "cosine_similarity",
    "denoise_with_pcs",
    "effect_size",
    "grand_mean_center",
    "nonzero_norm",
    "orthogonalize",
    "pairwise_cosine_matrix",
    "pca",
    "pca_norm_correlation",
    "pearson_correlation",
    "pearson_named",
    "polarity_correct",
    "project_out_subspace",
    "projection",
    "remove_massive_dims",
    "representational_similarity",
    "row_norms",
    "stack_named",
    "tensor_arg",
    "trait_clusters",
    "unit_rows",
    "vector_set_comparison",
    "zero_floor",
]
