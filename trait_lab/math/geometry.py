"""Geometry of a set of trait vectors: clusters, cross-layer RSA, PCs against human norms, and
comparisons between two named vector sets.

Inputs are torch tensors or numpy arrays (any float dtype) or ``{name: [d]}`` dicts; statistics
are computed in float64 and tensors come back in float32 (float64 when an input is float64).
Everything here is re-exported by :mod:`trait_lab.math.linalg`.

Example:
    >>> import torch
    >>> labels, centroids, inertia = trait_clusters(torch.tensor([[1.0, 0], [2, 0], [0, 1]]), k=2)
    >>> bool(labels[0] == labels[1] != labels[2]), round(inertia, 6)
    (True, 0.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypedDict

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn.cluster import KMeans

from trait_lab.math.checks import (
    TensorLike,
    VectorSet,
    check_same_hidden,
    common_dtype,
    stack_named,
    tensor_arg,
    unit_rows,
)
from trait_lab.math.metrics import pearson_named


def trait_clusters(
    vectors: VectorSet, k: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """K-means (sklearn, ``n_init=10``, ``random_state=seed``) on the unit-normalised vectors
    ([N, d] or a ``{name: [d]}`` dict, rows in dict order), so clusters group directions, not
    magnitudes: ``(labels [N] int64, centroids [k, d] in the unit-vector space, inertia)``,
    where inertia is the sum of squared distances from each unit vector to its centroid.

    Example:
        >>> labels, _, _ = trait_clusters({"joy": torch.tensor([1.0, 0.1]),
        ...     "calm": torch.tensor([5.0, 0.0]), "rage": torch.tensor([0.0, -2.0])}, k=2)
        >>> labels.tolist() in ([0, 0, 1], [1, 1, 0])
        True
    """

    matrix, names = stack_named(vectors, "vectors")
    n = matrix.shape[0]
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= n:
        raise ValueError(
            f"k={k!r} clusters is not possible for {n} vectors: k must be an int between 1 "
            f"and {n}; lower k or pass more vectors"
        )
    unit = unit_rows(matrix.double(), "vectors", names)
    km = KMeans(n_clusters=int(k), n_init=10, random_state=seed).fit(unit.cpu().numpy())
    labels = torch.from_numpy(km.labels_.astype(np.int64))
    return labels, torch.from_numpy(km.cluster_centers_).to(matrix.dtype), float(km.inertia_)


def representational_similarity(
    vectors_by_layer: Mapping[int, VectorSet],
) -> tuple[torch.Tensor, list[int]]:
    """Cross-layer RSA: for each layer the N×N cosine matrix of the same N vectors ([N, d],
    N ≥ 3; d may differ by layer); entry (i, j) of the ``[L, L]`` result is the Spearman
    correlation between the upper triangles (diagonal excluded) of layers i and j. Layers are
    returned sorted ascending; ties in cosine get average ranks.

    Example:
        >>> base = torch.tensor([[1.0, 0, 0], [1, 1, 0], [0, 1, 1], [0, 0, 1]])
        >>> rsa, layers = representational_similarity({12: base * 3, 4: base, 8: base.flip(0)})
        >>> rsa, layers
        (tensor([[1., 1., 1.],
                [1., 1., 1.],
                [1., 1., 1.]]), [4, 8, 12])
    """

    if not isinstance(vectors_by_layer, Mapping) or not vectors_by_layer:
        raise ValueError("vectors_by_layer must be a non-empty dict of layer -> [N, d] vectors")
    layers = sorted(vectors_by_layer)
    stacked = [stack_named(vectors_by_layer[layer], f"layer {layer}") for layer in layers]
    first_n, first_names = stacked[0][0].shape[0], stacked[0][1]
    if first_n < 3:
        raise ValueError(f"RSA needs at least 3 vectors per layer (3 pairs), got {first_n}")
    ranked = []
    for layer, (matrix, names) in zip(layers, stacked, strict=True):
        if matrix.shape[0] != first_n or names != first_names:
            raise ValueError(
                f"layer {layer} has {matrix.shape[0]} vectors {names or ''} but layer "
                f"{layers[0]} has {first_n} {first_names or ''}: every layer needs the same "
                "vectors in the same order"
            )
        unit = unit_rows(matrix.double(), f"layer {layer}", names)
        upper = (unit @ unit.T).cpu().numpy()[np.triu_indices(first_n, k=1)]
        ranks = rankdata(upper)
        ranks = ranks - ranks.mean()
        if not np.any(ranks):
            raise ValueError(
                f"layer {layer}: every pair of vectors has the same cosine, so the ranking is "
                "undefined; RSA needs similarities that vary"
            )
        ranked.append(ranks / np.linalg.norm(ranks))
    z = np.stack(ranked)
    rsa = torch.from_numpy(np.clip(z @ z.T, -1.0, 1.0)).fill_diagonal_(1.0)
    double = any(matrix.dtype == torch.float64 for matrix, _ in stacked)
    return rsa.to(torch.float64 if double else torch.float32), layers


def pca_norm_correlation(
    projections: TensorLike,
    names: Sequence[str],
    norms: Mapping[str, Sequence[float]],
    norm_names: Sequence[str] = ("valence", "arousal"),
    min_overlap: int = 3,
) -> dict[str, float]:
    """Pearson correlation of each principal-component score with each human norm dimension.

    ``projections`` is [n, k] (or [n] for one PC), row i belonging to ``names[i]`` (e.g. the
    projections from :func:`trait_lab.math.linalg.pca`); ``norms`` maps a name to its m ratings, m =
    ``len(norm_names)`` (default valence, arousal). Only names present in ``norms`` are used
    (at least ``min_overlap`` of them). Returns ``{"pc{p}_vs_{dim}": r}`` for p = 1..k and
    every norm dimension, in that order (PC-major).

    Example:
        >>> proj = torch.tensor([[2.0, 0.1], [1.0, -0.3], [-1.0, 0.2], [0.0, 0.0]])
        >>> norms = {"joy": (0.9, 0.5), "calm": (0.5, 0.1), "fear": (-0.6, 0.9)}
        >>> corr = pca_norm_correlation(proj, ["joy", "calm", "fear", "meh"], norms)
        >>> list(corr), round(corr["pc1_vs_valence"], 3)
        (['pc1_vs_valence', 'pc1_vs_arousal', 'pc2_vs_valence', 'pc2_vs_arousal'], 0.997)
    """

    proj = tensor_arg(projections, "projections", (1, 2), "[n, k] or [n]").double()
    proj = proj[:, None] if proj.dim() == 1 else proj
    labels = [names] if isinstance(names, str) else list(names)
    if len(labels) != proj.shape[0]:
        raise ValueError(
            f"projections has {proj.shape[0]} rows but names has {len(labels)} entries; "
            "pass one name per projection row"
        )
    if len(set(labels)) != len(labels):
        raise ValueError("names has duplicates; each projection row needs a distinct name")
    dims = [norm_names] if isinstance(norm_names, str) else list(norm_names)
    matched = [i for i, name in enumerate(labels) if name in norms]
    if len(matched) < max(min_overlap, 2):
        raise ValueError(
            f"only {len(matched)} of {len(labels)} names have norms; need at least "
            f"{max(min_overlap, 2)} (lower min_overlap or add norms for more names)"
        )
    ratings = []
    for i in matched:
        row = np.atleast_1d(np.asarray(norms[labels[i]], dtype=np.float64))
        if row.shape != (len(dims),):
            raise ValueError(
                f"norms[{labels[i]!r}] has {row.size} value(s) but norm_names={dims} has "
                f"{len(dims)}; pass norm_names that name each norm dimension"
            )
        ratings.append(row)
    table = np.stack(ratings)
    scores = proj[matched].cpu().numpy()
    return {
        f"pc{p + 1}_vs_{dim}": pearson_named(scores[:, p], table[:, j], f"PC{p + 1} scores", dim)
        for p in range(scores.shape[1])
        for j, dim in enumerate(dims)
    }


class SetComparison(TypedDict):
    """What :func:`vector_set_comparison` returns."""

    names_a: list[str]
    names_b: list[str]
    cross_cosine: torch.Tensor
    matched_names: list[str]
    matched_cosine: dict[str, float]
    mean_matched_cosine: float
    retained_norm: dict[str, float]
    orthogonalized_cross_cosine: torch.Tensor


def vector_set_comparison(
    set_a: Mapping[str, TensorLike], set_b: Mapping[str, TensorLike]
) -> SetComparison:
    """Compare two named vector sets (e.g. the same traits from two models, layers or methods).

    Keys: ``names_a``/``names_b`` (dict order); ``cross_cosine`` [len(a), len(b)], cos(a_i,
    b_j); ``matched_names``, the names in both sets (in set_a's order, at least one);
    ``matched_cosine`` {name: cos(a[name], b[name])} and its ``mean_matched_cosine``; then each
    matched a-vector is orthogonalised against b[name]: ``retained_norm`` {name: |a⊥| / |a|}
    and ``orthogonalized_cross_cosine`` [len(matched), len(b)], cos(a⊥_i, b_j), whose matched
    entries are 0 (a fully explained a-vector, a⊥ = 0, gets a row of 0).

    Example:
        >>> a = {"joy": torch.tensor([1.0, 1.0]), "fear": torch.tensor([0.0, 1.0])}
        >>> out = vector_set_comparison(a, {"joy": torch.tensor([1.0, 0.0])})
        >>> out["matched_names"], round(out["matched_cosine"]["joy"], 4), out["cross_cosine"]
        (['joy'], 0.7071, tensor([[0.7071],
                [0.0000]]))
    """

    for name, group in (("set_a", set_a), ("set_b", set_b)):
        if not isinstance(group, Mapping):
            raise TypeError(f"{name} must be a dict of name -> [d] vector")
    mat_a, names_a = stack_named(set_a, "set_a")
    mat_b, names_b = stack_named(set_b, "set_b")
    check_same_hidden(mat_a, "set_a", mat_b, "set_b")
    names_a, names_b = names_a or [], names_b or []
    in_b = set(names_b)
    matched = [n for n in names_a if n in in_b]
    if not matched:
        raise ValueError(
            f"set_a {names_a} and set_b {names_b} share no names; the matched comparisons "
            "need vectors with the same name in both sets"
        )
    out_dtype = common_dtype(mat_a, mat_b)[0].dtype
    unit_a = unit_rows(mat_a.double(), "set_a", names_a)
    unit_b = unit_rows(mat_b.double(), "set_b", names_b)
    cross = (unit_a @ unit_b.T).clamp(-1.0, 1.0)
    ia = [names_a.index(n) for n in matched]
    ib = [names_b.index(n) for n in matched]
    a = mat_a.double()[ia]
    partner = unit_b[ib]
    resid = a - (a * partner).sum(dim=1, keepdim=True) * partner
    resid_norm = torch.linalg.vector_norm(resid, dim=1)
    retained = resid_norm / torch.linalg.vector_norm(a, dim=1)
    safe = resid_norm[:, None].clamp_min(torch.finfo(torch.float64).tiny)
    unit_resid = torch.where(resid_norm[:, None] > 0, resid / safe, 0.0)
    same = cross[ia, ib].tolist()
    return SetComparison(
        names_a=names_a,
        names_b=names_b,
        cross_cosine=cross.to(out_dtype),
        matched_names=matched,
        matched_cosine=dict(zip(matched, same, strict=True)),
        mean_matched_cosine=float(np.mean(same)),
        retained_norm=dict(zip(matched, retained.tolist(), strict=True)),
        orthogonalized_cross_cosine=(unit_resid @ unit_b.T).clamp(-1.0, 1.0).to(out_dtype),
    )
