"""traitinterp's core/ quick reference, part 2: Extraction Methods and Math Functions.

Run as the page writes them, with ``from core import X`` turned into ``from trait_lab import X``
and ``from core.math import X`` into ``from trait_lab.math import X`` (part 1 and its notes on
substitutions: ``test_seed_traitinterp.py``). Ground truth: numpy, sklearn and scipy formulas.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics.pairwise import cosine_similarity as sk_cosine

from trait_lab import (
    accuracy,
    batch_cosine_similarity,
    cosine_similarity,
    effect_size,
    get_method,
    orthogonalize,
    pairwise_cosine_matrix,
    pca,
    polarity_correct,
    project_out_subspace,
    projection,
)
from trait_lab.math import (
    compute_top_pcs_by_variance,
    denoise_with_pcs,
    grand_mean_center,
    pca_norm_correlation,
    representational_similarity,
    trait_clusters,
    vector_set_comparison,
)

HIDDEN = 32


# ------------------------------------------------------------------------- Extraction Methods


@pytest.fixture(scope="module")
def pos_neg() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    shift = torch.zeros(HIDDEN)
    shift[3] = 2.0
    pos = torch.randn(40, HIDDEN, generator=gen) + shift
    neg = torch.randn(40, HIDDEN, generator=gen) - shift
    return pos.half(), neg.half()  # stored as float16, as the page says


@pytest.mark.parametrize("name", ["probe", "mean_diff", "gradient", "random_baseline", "rfm"])
def test_every_method_returns_a_unit_float32_vector(name, pos_neg) -> None:
    pos_acts, neg_acts = pos_neg
    method = get_method(name)
    result = method.extract(pos_acts, neg_acts)
    vector = result["vector"]
    assert "vector" in result and dict(result)["vector"] is vector
    assert vector.shape == (HIDDEN,) and vector.dtype == torch.float32  # upcast from float16
    assert float(vector.norm()) == pytest.approx(1.0, abs=1e-5)  # unit-normalized


def test_mean_diff_and_probe_match_their_formulas(pos_neg) -> None:
    pos, neg = (t.double().numpy() for t in pos_neg)
    diff = pos.mean(0) - neg.mean(0)
    got = get_method("mean_diff").extract(*pos_neg)["vector"].numpy()
    np.testing.assert_allclose(got, diff / np.linalg.norm(diff), atol=1e-5)
    x = np.concatenate([pos, neg])
    x = x / np.linalg.norm(x, axis=1, keepdims=True)  # row normalization
    clf = LogisticRegression(max_iter=1000).fit(x, np.r_[np.ones(40), np.zeros(40)])
    coef = clf.coef_[0] / np.linalg.norm(clf.coef_[0])
    got = get_method("probe").extract(*pos_neg)["vector"].numpy()
    assert float(got @ coef) == pytest.approx(1.0, abs=1e-4)


def test_get_method_rejects_unknown_names_and_bad_shapes(pos_neg) -> None:
    with pytest.raises(ValueError, match="mean_diff"):
        get_method("meandiff")
    with pytest.raises(ValueError, match=r"must be 2-D \[n_samples, hidden\]"):
        get_method("mean_diff").extract(pos_neg[0][None], pos_neg[1][None])


# ------------------------------------------------------------------------------ Math Functions


@pytest.fixture(scope="module")
def math_data() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    return {
        "activations": torch.randn(12, HIDDEN, generator=gen) * 4,
        "vector": torch.randn(HIDDEN, generator=gen),
        "other": torch.randn(HIDDEN, generator=gen),
        "vectors": torch.randn(20, HIDDEN, generator=gen),
        "basis": torch.randn(3, HIDDEN, generator=gen),
    }


def test_projections_and_cosines(math_data) -> None:
    activations, trait_vector = math_data["activations"], math_data["vector"]
    a, v = activations.double().numpy(), trait_vector.double().numpy()
    scores = projection(activations, trait_vector)  # [n_samples]
    np.testing.assert_allclose(scores.numpy(), a @ v / np.linalg.norm(v), rtol=1e-5, atol=1e-5)
    scores = batch_cosine_similarity(activations, trait_vector)  # [n_samples] in [-1, 1]
    np.testing.assert_allclose(scores.numpy(), sk_cosine(a, v[None])[:, 0], atol=1e-6)
    assert scores.shape == (12,) and bool((scores.abs() <= 1).all())
    refusal_vec, evil_vec = trait_vector, math_data["other"]
    similarity = cosine_similarity(refusal_vec, evil_vec)  # scalar in [-1, 1]
    assert similarity.dim() == 0
    expected = sk_cosine(v[None], evil_vec.double().numpy()[None])[0, 0]
    assert float(similarity) == pytest.approx(expected, abs=1e-6)
    # [batch, seq, hidden] -> [batch, seq]; an all-zero row scores 0, never NaN
    acts3 = activations.reshape(3, 4, HIDDEN).clone()
    acts3[0, 0] = 0.0
    assert projection(acts3, trait_vector).shape == (3, 4)
    assert float(batch_cosine_similarity(acts3, trait_vector)[0, 0]) == 0.0
    with pytest.raises(ValueError, match="vector"):
        projection(activations, torch.zeros(HIDDEN))


def test_orthogonalize_pairwise_pca_subspace(math_data) -> None:
    trait_vector, confound_vector = math_data["vector"], math_data["other"]
    clean_vec = orthogonalize(trait_vector, confound_vector)
    t, c = trait_vector.double().numpy(), confound_vector.double().numpy()
    np.testing.assert_allclose(clean_vec.numpy(), t - (t @ c) / (c @ c) * c, atol=1e-5)
    vectors = math_data["vectors"]
    sim_matrix = pairwise_cosine_matrix(vectors)  # [N, N]
    np.testing.assert_allclose(sim_matrix.numpy(), sk_cosine(vectors.numpy()), atol=1e-5)
    components, var_ratio, projections = pca(vectors, n_components=10)
    ref = PCA(n_components=10).fit(vectors.double().numpy())
    np.testing.assert_allclose(var_ratio.numpy(), ref.explained_variance_ratio_, rtol=1e-4)
    signs = np.sign((components.double().numpy() * ref.components_).sum(1))
    np.testing.assert_allclose(components.numpy() * signs[:, None], ref.components_, atol=1e-4)
    np.testing.assert_allclose(
        projections.numpy() * signs, ref.transform(vectors.double().numpy()), atol=1e-4
    )
    basis = math_data["basis"]  # basis: [K, hidden_dim]
    cleaned = project_out_subspace(vectors, basis)
    b = basis.double().numpy()
    x = vectors.double().numpy()
    expected = x - x @ b.T @ np.linalg.solve(b @ b.T, b)  # projection onto the row space of b
    np.testing.assert_allclose(cleaned.numpy(), expected, atol=1e-4)


def test_cross_trait_normalization(math_data) -> None:
    names = ["joy", "fear", "calm", "rage"]
    vectors_dict = dict(zip(names, math_data["vectors"][:4], strict=True))
    centered, grand_mean = grand_mean_center(vectors_dict)  # {name: tensor} -> {name: centered}
    torch.testing.assert_close(grand_mean, math_data["vectors"][:4].mean(0))
    torch.testing.assert_close(centered["joy"], vectors_dict["joy"] - grand_mean)
    neutral_acts = math_data["activations"]
    basis, var_ratio, n_pcs = compute_top_pcs_by_variance(neutral_acts, variance_threshold=0.5)
    ratio = PCA().fit(neutral_acts.double().numpy()).explained_variance_ratio_
    assert n_pcs == int(np.searchsorted(np.cumsum(ratio), 0.5) + 1) == basis.shape[0]
    np.testing.assert_allclose(var_ratio.numpy(), ratio[:n_pcs], rtol=1e-4)
    denoised = denoise_with_pcs(centered, basis)  # project out neutral PCs
    assert sorted(denoised) == sorted(names)
    assert float((basis @ denoised["joy"]).abs().max()) < 1e-4


def test_geometry_analysis(math_data) -> None:
    vectors = math_data["vectors"]
    labels, centroids, inertia = trait_clusters(vectors, k=10)
    unit = vectors.double().numpy() / np.linalg.norm(vectors.double().numpy(), axis=1)[:, None]
    expected = ((unit - centroids.double().numpy()[labels.numpy()]) ** 2).sum()
    assert labels.shape == (20,) and centroids.shape == (10, HIDDEN)
    assert inertia == pytest.approx(expected, rel=1e-4)
    gen = torch.Generator().manual_seed(1)
    vectors_by_layer = {layer: torch.randn(6, HIDDEN, generator=gen) for layer in (8, 4, 12)}
    rsa_matrix, layers = representational_similarity(vectors_by_layer)  # -> [L, L]
    assert layers == [4, 8, 12] and rsa_matrix.shape == (3, 3)
    iu = np.triu_indices(6, k=1)
    upper = {k: sk_cosine(v.numpy())[iu] for k, v in vectors_by_layer.items()}
    rho = spearmanr(upper[4], upper[12]).statistic
    assert float(rsa_matrix[0, 2]) == pytest.approx(rho, abs=1e-5)
    projections = torch.randn(5, 2, generator=gen)
    names = ["joy", "fear", "calm", "rage", "meh"]
    norms = {"joy": (0.9, 0.5), "fear": (-0.6, 0.9), "calm": (0.5, 0.1), "rage": (-0.8, 0.8)}
    corr = pca_norm_correlation(projections, names, norms)  # PC1/2 vs valence/arousal
    valence = [norms[n][0] for n in names[:4]]
    r = np.corrcoef(projections[:4, 0].double().numpy(), valence)[0, 1]
    assert corr["pc1_vs_valence"] == pytest.approx(r, abs=1e-6)
    vecs_a = dict(zip(names[:3], vectors[:3], strict=True))
    vecs_b = dict(zip(names[1:4], vectors[3:6], strict=True))
    comparison = vector_set_comparison(vecs_a, vecs_b)  # cross-set cosine + orthogonalization
    np.testing.assert_allclose(
        comparison["cross_cosine"].numpy(), sk_cosine(vectors[:3], vectors[3:6]), atol=1e-5
    )
    assert comparison["matched_names"] == ["fear", "calm"]


def test_metrics_on_projection_scores(pos_neg) -> None:
    pos_acts, neg_acts = (t.float() for t in pos_neg)
    vector = get_method("mean_diff").extract(pos_acts, neg_acts)["vector"]
    pos_proj = batch_cosine_similarity(pos_acts, vector)
    neg_proj = batch_cosine_similarity(neg_acts, vector)
    acc = accuracy(pos_proj, neg_proj)  # 0.0 to 1.0
    p, n = pos_proj.double().numpy(), neg_proj.double().numpy()
    cut = (p.mean() + n.mean()) / 2
    assert acc == ((p > cut).sum() + (n <= cut).sum()) / 80 and 0.0 <= acc <= 1.0
    d = effect_size(pos_proj, neg_proj)  # 0.2=small, 0.5=medium, 0.8=large
    pooled = np.sqrt((39 * p.var(ddof=1) + 39 * n.var(ddof=1)) / 78)
    assert d == pytest.approx(abs(p.mean() - n.mean()) / pooled, rel=1e-5)
    d = effect_size(neg_proj, pos_proj, signed=True)  # Preserve sign (pos > neg = positive)
    assert d < 0
    ok = polarity_correct(pos_proj, neg_proj)  # True if pos_mean > neg_mean
    assert ok is True and polarity_correct(neg_proj, pos_proj) is False
    with pytest.raises(ValueError, match="at least 2"):
        effect_size(pos_proj[:1], neg_proj)
