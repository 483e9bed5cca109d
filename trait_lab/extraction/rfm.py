"""Recursive Feature Machine (RFM) direction: the top eigenvector of a kernel machine's AGOP.

RFM (Radhakrishnan et al., 2024) fits kernel ridge regression with a Laplace kernel under a
learned Mahalanobis metric ``M``, sets ``M`` to the average gradient outer product (AGOP) of the
fitted predictor over the training points, and repeats. The AGOP's top eigenvector is the input
direction the predictor is most sensitive to, which is the trait direction we return.

``rfm_direction`` grid-searches the bandwidth (multiples of the median pairwise distance under
the current metric, so the activation scale never matters) and whether gradients are centred
before the outer product, and keeps the candidate whose projection has the best ROC AUC on a
seeded, stratified validation split (ties, common once AUC reaches 1.0, go to the larger
validation effect size), then refits that setting on all samples. Callers normally use
``get_method("rfm")`` from :mod:`trait_lab.extraction.methods`, which validates inputs first.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> u = torch.nn.functional.normalize(torch.randn(16, generator=g), dim=0)
    >>> pos = torch.randn(40, 16, generator=g) + 2 * u
    >>> neg = torch.randn(40, 16, generator=g) - 2 * u
    >>> vec, diag = rfm_direction(pos, neg)
    >>> bool(abs(vec @ u) > 0.8), diag["center_grads"] in (True, False)
    (True, True)

Memory and time: the metric is never formed as a ``[hidden, hidden]`` matrix. Every AGOP has
rank at most ``n_train``, so it is kept as a factor ``F`` with ``M = Fᵀ F`` (``F`` is
``[n_train, hidden]``); distances are taken between the projected points ``X Fᵀ``, and the
top eigenvector of ``Gᵀ G`` comes from ``torch.linalg.eigh`` of the ``[n, n]`` matrix ``G Gᵀ``.
The cost is ``O(n² · hidden)`` per iteration with no ``hidden³`` eigendecomposition, so
``hidden`` in the thousands is fine. This is exact, not an approximation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

DEFAULT_BANDWIDTHS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0)


def _split(n: int, val_fraction: float, generator: torch.Generator) -> tuple[Any, Any]:
    """Seeded permutation of ``range(n)`` cut into (train, val); both parts are non-empty."""
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    order = torch.randperm(n, generator=generator)
    return order[n_val:], order[:n_val]


def _auc(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> float:
    """ROC AUC as P(pos score > neg score), ties counting one half (Mann-Whitney)."""
    diff = pos_scores[:, None] - neg_scores[None, :]
    return float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())


def _gradients(
    x: torch.Tensor, factor: torch.Tensor | None, y: torch.Tensor, bw_mult: float, reg: float
) -> torch.Tensor:
    """Fit Laplace-kernel ridge regression under metric ``Fᵀ F``; return ∇f at each train point.

    The returned ``[n, hidden]`` gradients are taken with respect to the raw inputs.
    """
    z = x if factor is None else x @ factor.T  # coordinates in which the metric is Euclidean
    dist = torch.cdist(z, z)
    off_diag = dist[~torch.eye(len(z), dtype=torch.bool)]
    median = float(off_diag.median()) if off_diag.numel() else 0.0
    if median <= 0.0:
        median = 1.0  # all points coincide under this metric; any bandwidth is as good
    bandwidth = bw_mult * median
    kernel = torch.exp(-dist / bandwidth)
    alpha = torch.linalg.solve(kernel + reg * torch.eye(len(z), dtype=z.dtype), y)
    # f(x) = Σ_i α_i exp(-‖x - x_i‖_M / L), so at a train point x_j
    # ∇f(x_j) = -(1/L) Σ_i α_i K_ji (M (x_j - x_i)) / ‖x_j - x_i‖_M, with i = j (0/0) dropped.
    safe = torch.where(dist > 1e-12 * median, dist, torch.inf)
    weights = alpha[None, :] * kernel / safe  # [n, n]; zero on the diagonal
    grad_z = -(weights.sum(dim=1, keepdim=True) * z - weights @ z) / bandwidth
    return grad_z if factor is None else grad_z @ factor


def _fit_candidate(
    x: torch.Tensor, y: torch.Tensor, bw_mult: float, center: bool, iters: int, reg: float
) -> torch.Tensor:
    """Run ``iters`` RFM iterations; return the top AGOP eigenvector (unit, unoriented)."""
    factor: torch.Tensor | None = None
    grads = x.new_zeros(x.shape)
    for _ in range(iters):
        grads = _gradients(x, factor, y, bw_mult, reg)
        if center:
            grads = grads - grads.mean(dim=0, keepdim=True)
        factor = grads / len(x) ** 0.5  # AGOP = factorᵀ factor
    # Top eigenvector of the AGOP Gᵀ G via the [n, n] Gram matrix G Gᵀ: if G Gᵀ a = λ a then
    # Gᵀ G (Gᵀ a) = λ Gᵀ a, so Gᵀ a is the [hidden] eigenvector, with no hidden × hidden matrix.
    _, eigvecs = torch.linalg.eigh(grads @ grads.T)
    return torch.nn.functional.normalize(grads.T @ eigvecs[:, -1], dim=0)


def _effect_size(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> float:
    """(mean_pos - mean_neg) / pooled std; breaks AUC ties (AUC saturates at 1.0 easily)."""
    pooled = ((pos_scores.var(unbiased=False) + neg_scores.var(unbiased=False)) / 2).sqrt()
    return float((pos_scores.mean() - neg_scores.mean()) / (pooled + 1e-12))


def rfm_direction(
    pos: torch.Tensor,
    neg: torch.Tensor,
    *,
    bandwidths: Sequence[float] = DEFAULT_BANDWIDTHS,
    center_grads: Sequence[bool] = (True, False),
    iters: int = 3,
    reg: float = 1e-3,
    val_fraction: float = 0.25,
    refit: bool = True,
    seed: int = 0,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Grid-search RFM and return ``(unit fp32 vector oriented pos > neg, diagnostics)``.

    Args:
        pos: ``[n_pos, hidden]`` floating activations, at least 4 rows (1 kept for validation).
        neg: ``[n_neg, hidden]`` floating activations, at least 4 rows.
        bandwidths: Laplace bandwidths as multiples of the median pairwise distance.
        center_grads: which gradient-centring settings to try.
        iters: RFM iterations (kernel fit → AGOP → metric) per candidate.
        reg: ridge added to the kernel matrix.
        val_fraction: share of each class held out to choose the candidate.
        refit: refit the chosen setting on all samples (train + validation) for the returned
            vector; ``False`` returns the train-split fit whose ``val_auc`` is reported.
        seed: seeds the stratified split.

    Returns:
        The direction, oriented so positives project higher, and diagnostics: ``bandwidth``
        (multiplier), ``center_grads``, ``val_auc`` and ``val_effect_size`` of the chosen
        candidate (ties in AUC are broken by effect size), ``val_auc_worst`` over the grid,
        ``grid_size``, ``n_train``, ``n_val``, ``iters``, ``refit``.

    Example:
        >>> import torch
        >>> vec, diag = rfm_direction(torch.randn(8, 3) + 3, torch.randn(8, 3), iters=2)
        >>> vec.shape, diag["n_train"], diag["n_val"]
        (torch.Size([3]), 12, 4)
    """
    if not bandwidths or not center_grads:
        raise ValueError("rfm needs at least one bandwidth and one center_grads setting")
    if iters < 1:
        raise ValueError(f"rfm iters must be at least 1, got {iters}")
    generator = torch.Generator().manual_seed(seed)
    pos64, neg64 = pos.to(torch.float64), neg.to(torch.float64)
    shift = torch.cat([pos64, neg64]).mean(dim=0)  # the kernel is shift-invariant; fp64 hygiene
    pos64, neg64 = pos64 - shift, neg64 - shift
    pos_train, pos_val = _split(len(pos64), val_fraction, generator)
    neg_train, neg_val = _split(len(neg64), val_fraction, generator)

    def fit(p: torch.Tensor, n: torch.Tensor, mult: float, center: bool) -> torch.Tensor:
        x = torch.cat([p, n])
        y = torch.cat([torch.ones(len(p)), -torch.ones(len(n))]).double()
        vec = _fit_candidate(x, y, mult, center, iters, reg)
        return -vec if (p @ vec).mean() < (n @ vec).mean() else vec

    best: tuple[tuple[float, float], torch.Tensor, float, bool] | None = None
    aucs: list[float] = []
    for center in center_grads:
        for mult in bandwidths:
            vec = fit(pos64[pos_train], neg64[neg_train], float(mult), bool(center))
            val_pos, val_neg = pos64[pos_val] @ vec, neg64[neg_val] @ vec
            score = (_auc(val_pos, val_neg), _effect_size(val_pos, val_neg))
            aucs.append(score[0])
            if best is None or score > best[0]:
                best = (score, vec, float(mult), bool(center))
    assert best is not None
    (auc, effect), vec, mult, center = best
    if refit:
        vec = fit(pos64, neg64, mult, center)
    diagnostics: dict[str, Any] = {
        "bandwidth": mult,
        "center_grads": center,
        "val_auc": auc,
        "val_effect_size": effect,
        "val_auc_worst": min(aucs),
        "grid_size": len(aucs),
        "n_train": len(pos_train) + len(neg_train),
        "n_val": len(pos_val) + len(neg_val),
        "iters": iters,
        "refit": refit,
    }
    return vec.to(torch.float32), diagnostics
