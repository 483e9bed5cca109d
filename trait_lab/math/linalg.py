"""Vector math for trait vectors: projections, cosines, orthogonalisation, PCA and subspaces.

Every function takes torch tensors or numpy arrays, never modifies them, and returns float32
tensors whatever the input dtype (float16 and bfloat16 activations are upcast first), or
float64 when an input is float64; SVDs run in float64. Errors name the argument, its shape and
the fix. ``trait_lab.math`` also serves the geometry analyses (:mod:`trait_lab.math.geometry`)
and the metrics on projection scores (:mod:`trait_lab.math.metrics`).

Example:
    >>> import torch
    >>> orthogonalize(torch.tensor([1.0, 1.0]), torch.tensor([2.0, 0.0]))
    tensor([0., 1.])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import overload

import numpy as np
import torch

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
)


def _orthonormal_rows(basis: torch.Tensor, name: str) -> torch.Tensor:
    """Orthonormal rows spanning the row space of ``basis`` [k, d] (QR; SVD if dependent)."""
    nonzero_norm(basis, name)  # all zeros or rounding noise: no direction to remove
    b = basis.to(torch.float64)
    eps = torch.finfo(basis.dtype).eps * max(b.shape)
    q, r = torch.linalg.qr(b.T)  # q: [d, min(d, k)]
    diag = r.diagonal().abs()
    if b.shape[0] <= b.shape[1] and bool((diag > eps * diag.max()).all()):
        return q.T.to(basis.dtype)
    _, s, vh = torch.linalg.svd(b, full_matrices=False)  # dependent rows: keep the row space
    return vh[: int((s > eps * s[0]).sum())].to(basis.dtype)


# ---------------------------------------------------------------- projections and cosines


def _scoring_inputs(activations: object, vector: object) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked activations ``[..., d]`` and the unit ``vector`` ``[d]``, one dtype and device."""
    acts = tensor_arg(activations, "activations", None, "[..., d] (any leading dims)")
    acts, vec = common_dtype(acts, tensor_arg(vector, "vector", (1,), "[d]"))
    check_same_hidden(acts, "activations", vec, "vector")
    return acts, (vec / nonzero_norm(vec, "vector")).to(acts.device)


def projection(activations: TensorLike, vector: TensorLike) -> torch.Tensor:
    """Scalar projection of each activation onto the direction of ``vector``: ``a · v/|v|``.

    Only the vector is normalised, so scores keep the activations' scale. ``activations`` has
    any leading dims: ``[..., d]`` gives ``[...]`` (``[batch, seq, d]`` → ``[batch, seq]``,
    ``[d]`` → a 0-dim tensor). An all-zero activation row scores 0; a zero ``vector`` (or one
    too small to have a direction) is an error.

    Example:
        >>> projection(torch.tensor([[3.0, 4.0], [0.0, 0.0]]), torch.tensor([0.0, 2.0]))
        tensor([4., 0.])
    """
    acts, unit = _scoring_inputs(activations, vector)
    return acts @ unit


def cosine_similarity(a: TensorLike, b: TensorLike) -> torch.Tensor:
    """Cosine of the angle between two ``[d]`` vectors: a 0-dim tensor in ``[-1, 1]``
    (computed in float64, returned in float32 unless an input is float64). A zero vector has
    no direction, so either being zero is an error; use ``float(...)`` for a Python number.

    Example:
        >>> cosine_similarity(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]))
        tensor(0.7071)
    """
    va, vb = common_dtype(tensor_arg(a, "a", (1,), "[d]"), tensor_arg(b, "b", (1,), "[d]"))
    check_same_hidden(va, "a", vb, "b")
    nonzero_norm(va, "a")  # a zero vector has no direction: a clear error, not NaN
    nonzero_norm(vb, "b")
    a64, b64 = va.double(), vb.double().to(va.device)
    cos = (a64 @ b64) / (torch.linalg.vector_norm(a64) * torch.linalg.vector_norm(b64))
    return cos.clamp(-1.0, 1.0).to(va.dtype)


def batch_cosine_similarity(activations: TensorLike, vector: TensorLike) -> torch.Tensor:
    """Cosine between each activation row and ``vector``: ``[..., d]`` → ``[...]`` in ``[-1, 1]``
    (``[batch, seq, d]`` → ``[batch, seq]``, ``[d]`` → a 0-dim tensor).

    Both sides are normalised, so scores ignore the activations' scale. An all-zero activation
    row has no direction and scores 0.0 (sklearn's ``cosine_similarity`` rule), never NaN; a
    zero ``vector`` (or one too small to have a direction) is an error.

    Example:
        >>> acts = torch.tensor([[2.0, 0.0], [0.0, 0.0], [-1.0, 1.0]])
        >>> batch_cosine_similarity(acts, torch.tensor([1.0, 0.0]))
        tensor([ 1.0000,  0.0000, -0.7071])
    """
    acts, unit = _scoring_inputs(activations, vector)
    return ((acts @ unit) / row_norms(acts)).clamp(-1.0, 1.0)


def pairwise_cosine_matrix(vectors: VectorSet) -> torch.Tensor:
    """``[N, N]`` cosine matrix of ``N`` vectors (a ``[N, d]`` matrix or a ``{name: [d]}`` dict,
    rows in dict order); the diagonal is exactly 1 and zero vectors are an error.

    Example:
        >>> pairwise_cosine_matrix({"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([0.0, 3.0])})
        tensor([[1., 0.],
                [0., 1.]])
    """
    matrix, labels = stack_named(vectors, "vectors")
    unit = unit_rows(matrix, "vectors", labels)
    sim = (unit @ unit.T).clamp(-1.0, 1.0)
    return sim.fill_diagonal_(1.0)


def project_out_subspace(vectors: TensorLike, basis: TensorLike) -> torch.Tensor:
    """Remove from ``vectors`` ([n, d] or [d]) their component in the span of ``basis``.

    ``basis`` ([k, d] or [d]) need not be orthonormal or even independent: it is
    orthonormalised by QR (SVD when rows are dependent) and its whole row space is removed, so
    the result is orthogonal to every basis row. An all-zero basis is an error.

    Example:
        >>> project_out_subspace(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([[1.0, 1.0, 0.0]]))
        tensor([-0.5000,  0.5000,  3.0000])
    """
    return _project_out(vectors, basis, "vectors", "basis")


def _project_out(vectors: object, basis: object, v_name: str, b_name: str) -> torch.Tensor:
    vecs = tensor_arg(vectors, v_name, (1, 2), "[n, d] or [d]")
    vecs, base = common_dtype(vecs, tensor_arg(basis, b_name, (1, 2), "[k, d] or [d]"))
    check_same_hidden(vecs, v_name, base, b_name)
    q = _orthonormal_rows(base.reshape(-1, base.shape[-1]), b_name)  # [r, d]
    return vecs - (vecs @ q.T) @ q


def orthogonalize(v: TensorLike, against: TensorLike) -> torch.Tensor:
    """``v`` minus its component along ``against`` (a [d] vector, or [k, d] rows whose whole
    span is removed); the result has zero cosine with every row of ``against``. All-zero rows
    of ``v`` come back as zero rows; an all-zero ``against`` (or one too small to have a
    direction) is an error.

    Example:
        >>> orthogonalize(torch.tensor([3.0, 4.0]), torch.tensor([0.0, -1.0]))
        tensor([3., 0.])
    """
    return _project_out(v, against, "v", "against")


# ---------------------------------------------------------------- PCA and denoising


def _pca_svd(data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centred data, sign-fixed components and explained-variance ratios, all in float64."""
    if data.shape[0] < 2:
        raise ValueError(f"PCA needs at least 2 rows, got shape {tuple(data.shape)}")
    centred = data.double() - data.double().mean(dim=0)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    variance = s**2
    if not bool(variance.sum() > 0):
        raise ValueError("every row is identical, so there is no variance to decompose")
    peak = vh.abs().argmax(dim=1)
    signs = torch.sign(vh[torch.arange(vh.shape[0]), peak])
    components = vh * torch.where(signs == 0, 1.0, signs)[:, None].to(vh.dtype)
    return centred, components, variance / variance.sum()


def pca(x: TensorLike, n_components: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PCA by SVD of the column-centred data: ``(components [k, d], explained_variance_ratio
    [k], projections [n, k])``. Sign convention (sklearn's): in each component the entry of
    largest magnitude (the first one, on ties) is positive. Ratios are over the total variance.

    Example:
        >>> comps, ratio, proj = pca(torch.tensor([[0.0, 0.0], [2.0, 0.0], [4.0, 0.0]]), 1)
        >>> comps, ratio, proj[:, 0]
        (tensor([[1., 0.]]), tensor([1.]), tensor([-2.,  0.,  2.]))
    """
    data = tensor_arg(x, "x", (2,), "[n, d]")
    limit = min(data.shape)
    if isinstance(n_components, bool) or not isinstance(n_components, (int, np.integer)):
        raise TypeError(f"n_components must be an int, got {n_components!r}")
    if not 1 <= n_components <= limit:
        raise ValueError(
            f"n_components={n_components} is out of range for x of shape {tuple(data.shape)}: "
            f"it must be between 1 and min(n, d) = {limit}"
        )
    centred, components, ratio = _pca_svd(data)
    top = components[:n_components]
    out = data.dtype
    return top.to(out), ratio[:n_components].to(out), (centred @ top.T).to(out)


def grand_mean_center(
    vectors: Mapping[str, TensorLike],
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Subtract the mean of all vectors from each: ``({name: v - mean}, mean)``, so what is
    shared by every trait (a common "emotion" direction, say) drops out.

    Example:
        >>> vectors = {"a": torch.tensor([3.0, 1.0]), "b": torch.tensor([1.0, 1.0])}
        >>> out, mean = grand_mean_center(vectors)
        >>> out["a"], mean
        (tensor([1., 0.]), tensor([2., 1.]))
    """
    if not isinstance(vectors, Mapping):
        raise TypeError(
            f"vectors must be a dict of name -> [d] vector, got {type(vectors).__name__}"
        )
    matrix, labels = stack_named(vectors, "vectors")
    mean = matrix.mean(dim=0)
    return {name: row - mean for name, row in zip(labels or [], matrix, strict=True)}, mean


def compute_top_pcs_by_variance(
    acts: TensorLike, variance_threshold: float = 0.5, max_pcs: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The fewest principal components of ``acts`` [n, d] whose cumulative explained variance
    reaches ``variance_threshold`` (in (0, 1]), capped at ``max_pcs``: ``(basis [k, d],
    var_ratio [k], k)``. Components follow the :func:`pca` sign convention.

    Example:
        >>> acts = torch.tensor([[3.0, 0.0], [-3.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
        >>> basis, ratio, k = compute_top_pcs_by_variance(acts, variance_threshold=0.5)
        >>> basis, ratio, k
        (tensor([[1., 0.]]), tensor([0.9000]), 1)
    """
    if not 0 < variance_threshold <= 1:
        raise ValueError(f"variance_threshold={variance_threshold!r} must be in (0, 1]")
    if max_pcs is not None and (isinstance(max_pcs, bool) or max_pcs < 1):
        raise ValueError(f"max_pcs={max_pcs!r} must be None or an int >= 1")
    data = tensor_arg(acts, "acts", (2,), "[n, d]")
    _, components, ratio = _pca_svd(data)
    reached = (ratio.cumsum(0) >= variance_threshold - 1e-9).nonzero()
    k = int(reached[0]) + 1 if len(reached) else len(ratio)
    if max_pcs is not None:
        k = min(k, int(max_pcs))
    return components[:k].to(data.dtype), ratio[:k].to(data.dtype), k


@overload
def denoise_with_pcs(vectors: TensorLike, basis: TensorLike) -> torch.Tensor: ...
@overload
def denoise_with_pcs(
    vectors: Mapping[str, TensorLike], basis: TensorLike
) -> dict[str, torch.Tensor]: ...
def denoise_with_pcs(
    vectors: TensorLike | Mapping[str, TensorLike], basis: TensorLike
) -> torch.Tensor | dict[str, torch.Tensor]:
    """Project the span of ``basis`` [k, d] (for example neutral-prompt PCs from
    :func:`compute_top_pcs_by_variance`) out of a tensor [n, d] / [d] or a ``{name: [d]}`` dict;
    returns the same kind of container.

    Example:
        >>> denoise_with_pcs({"joy": torch.tensor([2.0, 5.0])}, torch.tensor([[0.0, 1.0]]))
        {'joy': tensor([2., 0.])}
    """
    if isinstance(vectors, Mapping):
        return {k: _project_out(v, basis, f"vectors[{k!r}]", "basis") for k, v in vectors.items()}
    return _project_out(vectors, basis, "vectors", "basis")
