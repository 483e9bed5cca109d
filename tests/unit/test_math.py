"""Vector math and geometry, checked against numpy, scipy and sklearn computed in the test."""

from __future__ import annotations

import doctest
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from scipy.stats import pearsonr, spearmanr
from sklearn.decomposition import PCA
from sklearn.metrics.pairwise import cosine_similarity as sk_cosine

import trait_lab.math.checks
import trait_lab.math.geometry
import trait_lab.math.linalg
import trait_lab.math.metrics
from trait_lab.math import (
    batch_cosine_similarity,
    compute_top_pcs_by_variance,
    cosine_similarity,
    denoise_with_pcs,
    grand_mean_center,
    orthogonalize,
    pairwise_cosine_matrix,
    pca,
    pca_norm_correlation,
    project_out_subspace,
    projection,
    representational_similarity,
    trait_clusters,
    vector_set_comparison,
)

A = np.array


def untyped(value: Any) -> Any:
    """Pass a deliberately wrong type past the type checker."""
    return value


def randn(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def close(actual: torch.Tensor | float, expected: Any, atol: float = 1e-5) -> None:
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), expected, atol=atol)


class TestProjectionAndCosine:
    def test_projection_matches_numpy(self) -> None:
        acts, v = randn(7, 5), randn(5, seed=1)
        close(projection(torch.tensor(acts), torch.tensor(v)), acts @ v / np.linalg.norm(v))
        close(projection(acts, v), acts @ v / np.linalg.norm(v))  # numpy in
        one = projection(torch.tensor(acts[0]), torch.tensor(v))
        assert one.shape == () and abs(float(one) - acts[0] @ v / np.linalg.norm(v)) < 1e-9

    def test_cosines_match_sklearn(self) -> None:
        acts, v = randn(9, 6), randn(6, seed=1)
        expected = sk_cosine(acts, v[None])[:, 0]
        close(batch_cosine_similarity(torch.tensor(acts, dtype=torch.float32), v), expected)
        close(cosine_similarity(acts[0], v), expected[0], atol=1e-12)
        assert float(cosine_similarity(v, 3 * v)) == 1.0 == -float(cosine_similarity(v, -v))

    def test_cosine_similarity_is_a_0_dim_tensor(self) -> None:
        a, b = randn(6), randn(6, seed=1)
        expected = sk_cosine(a[None], b[None])[0, 0]
        got = cosine_similarity(torch.tensor(a, dtype=torch.float32), b.astype(np.float32))
        assert isinstance(got, torch.Tensor) and got.shape == () and got.dtype == torch.float32
        assert cosine_similarity(a, b).dtype == torch.float64
        assert f"{got:.3f}" == f"{float(got):.3f}" and abs(float(got) - expected) < 1e-6

    @pytest.mark.parametrize("shape", [(6,), (4, 6), (2, 3, 6), (2, 1, 3, 6)])
    def test_any_leading_dims_match_numpy_and_sklearn(self, shape: tuple[int, ...]) -> None:
        acts, v = randn(*shape), randn(6, seed=1)
        proj, cos = projection(acts, v), batch_cosine_similarity(acts, v)
        assert proj.shape == cos.shape == shape[:-1] and proj.dtype == torch.float64
        close(proj, np.einsum("...d,d->...", acts, v) / np.linalg.norm(v), atol=1e-12)
        flat = sk_cosine(acts.reshape(-1, 6), v[None])[:, 0]
        close(cos, flat.reshape(shape[:-1]), atol=1e-12)

    def test_zero_activation_rows_score_zero_as_in_sklearn(self) -> None:
        acts = randn(3, 4, 5)
        acts[0, 1], acts[2, :] = 0.0, 0.0
        v = randn(5, seed=1)
        for dtype in (torch.float32, torch.float64):
            vt = torch.tensor(v, dtype=dtype)
            cos = batch_cosine_similarity(torch.tensor(acts, dtype=dtype), vt)
            assert not bool(cos.isnan().any()) and cos.dtype == dtype
            close(cos, sk_cosine(acts.reshape(-1, 5), v[None]).reshape(3, 4), atol=1e-6)
            assert float(cos[0, 1]) == 0.0 and bool((cos[2] == 0).all())
            assert projection(torch.tensor(acts, dtype=dtype), vt)[2].tolist() == [0.0] * 4
        tiny = torch.tensor([[1e-30, 0.0], [0.0, -2.0]])  # norm under the float32 zero floor
        got = batch_cosine_similarity(tiny, torch.tensor([1.0, 0.0]))
        assert got.abs().max() < 1e-20  # sklearn's rule: divided by 1, not by its tiny norm

    def test_orthogonalize_keeps_zero_rows_zero(self) -> None:
        v, against = randn(4, 6), randn(6, seed=1)
        v[1] = 0.0
        out = orthogonalize(v, against)
        assert not bool(out.isnan().any()) and out[1].tolist() == [0.0] * 6
        close(out, v - np.outer(v @ against, against) / (against @ against), atol=1e-12)

    def test_pairwise_matches_sklearn_and_keeps_dict_order(self) -> None:
        vecs = randn(6, 8)
        sim = pairwise_cosine_matrix(torch.tensor(vecs, dtype=torch.float32))
        close(sim, sk_cosine(vecs))
        assert torch.equal(sim, sim.T) and torch.all(sim.diagonal() == 1.0)
        named = {name: torch.tensor(vecs[i]) for i, name in enumerate("fedcba")}
        close(pairwise_cosine_matrix(named), sk_cosine(vecs), atol=1e-12)


class TestSubspaces:
    def test_orthogonalize_then_cosine_is_zero(self) -> None:
        v, against = randn(16), randn(16, seed=1)
        out = orthogonalize(torch.tensor(v, dtype=torch.float32), against)
        assert abs(float(cosine_similarity(out, against))) < 1e-6
        close(out, v - (v @ against) / (against @ against) * against)

    def test_orthogonalize_against_rows_removes_their_span(self) -> None:
        v, rows = randn(10), randn(3, 10, seed=1)
        out = orthogonalize(v, rows)
        assert all(abs(float(cosine_similarity(out, r))) < 1e-10 for r in rows)

    @settings(max_examples=40, deadline=None)
    @given(
        n=st.integers(1, 5),
        d=st.integers(1, 12),
        k=st.integers(1, 14),
        one_vector=st.booleans(),
        seed=st.integers(0, 2**16),
        double=st.booleans(),
    )
    def test_result_is_orthogonal_to_every_basis_row(
        self, n: int, d: int, k: int, one_vector: bool, seed: int, double: bool
    ) -> None:
        vecs = randn(d, seed=seed) if one_vector else randn(n, d, seed=seed)
        basis = randn(k, d, seed=seed + 1)
        dtype = torch.float64 if double else torch.float32
        out = project_out_subspace(
            torch.tensor(vecs, dtype=dtype), torch.tensor(basis, dtype=dtype)
        )
        assert out.shape == vecs.shape and out.dtype == dtype
        tol = 1e-10 if double else 1e-5
        dots = np.atleast_2d(out.numpy()) @ basis.T
        scale = np.linalg.norm(np.atleast_2d(vecs), axis=1)[:, None] * np.linalg.norm(basis, axis=1)
        assert np.all(np.abs(dots) <= tol * scale + 1e-12)
        # the independent reference: remove the row space found by numpy's SVD
        _, s, vh = np.linalg.svd(basis, full_matrices=False)
        q = vh[: int((s > s[0] * 1e-10).sum())]
        close(out, vecs - (vecs @ q.T) @ q, atol=1e-4)

    def test_dependent_basis_rows_remove_only_their_span(self) -> None:
        e = np.eye(5, dtype=np.float32)
        basis = torch.tensor(np.stack([e[0], e[0] + e[1], e[1], 2 * e[0]]))
        out = project_out_subspace(torch.tensor(e[:3] + e[4]), basis)
        close(out, np.stack([e[4], e[4], e[2] + e[4]]), atol=1e-6)

    def test_denoise_dict_and_tensor(self) -> None:
        vecs, basis = randn(4, 7), randn(2, 7, seed=1)
        named = {f"t{i}": torch.tensor(v) for i, v in enumerate(vecs)}
        as_dict = denoise_with_pcs(named, basis)
        as_tensor = denoise_with_pcs(torch.tensor(vecs), basis)
        assert list(as_dict) == list(named)
        close(torch.stack(list(as_dict.values())), as_tensor.numpy(), atol=1e-12)
        close(as_tensor, project_out_subspace(vecs, basis), atol=1e-12)

    def test_grand_mean_center(self) -> None:
        vecs = randn(5, 6)
        centred, mean = grand_mean_center({str(i): torch.tensor(v) for i, v in enumerate(vecs)})
        close(mean, vecs.mean(0), atol=1e-12)
        close(torch.stack(list(centred.values())), vecs - vecs.mean(0), atol=1e-12)


class TestPCA:
    @pytest.mark.parametrize("n,d,k", [(20, 6, 4), (5, 12, 4), (30, 3, 3)])
    def test_matches_sklearn(self, n: int, d: int, k: int) -> None:
        x = randn(n, d) * np.linspace(3, 0.5, d)
        comps, ratio, proj = pca(torch.tensor(x), n_components=k)
        ref = PCA(n_components=k, svd_solver="full").fit(x)
        close(ratio, ref.explained_variance_ratio_, atol=1e-10)
        signs = np.sign(np.sum(comps.numpy() * ref.components_, axis=1))
        close(comps, ref.components_ * signs[:, None], atol=1e-8)  # equal up to sign
        close(proj, ref.transform(x) * signs, atol=1e-8)
        peak = np.abs(comps.numpy()).argmax(axis=1)  # our convention: largest entry positive
        assert np.all(comps.numpy()[np.arange(k), peak] > 0)

    def test_float32_input_and_ratio_over_total_variance(self) -> None:
        x = torch.tensor(randn(40, 8), dtype=torch.float32)
        comps, ratio, proj = pca(x, n_components=2)
        assert comps.dtype == ratio.dtype == proj.dtype == torch.float32
        close(ratio, PCA(n_components=2).fit(x.numpy()).explained_variance_ratio_, atol=1e-5)
        _, ratio, _ = pca(x[:3], n_components=3)  # 3 centred rows have rank 2
        assert abs(float(ratio.sum()) - 1) < 1e-6 and float(ratio[2]) < 1e-6

    def test_top_pcs_by_variance_matches_cumulative_sklearn(self) -> None:
        x = randn(50, 10) * np.geomspace(4, 0.2, 10)
        cumulative = np.cumsum(PCA().fit(x).explained_variance_ratio_)
        for threshold in (0.1, 0.5, 0.9, 0.99):
            basis, ratio, k = compute_top_pcs_by_variance(x, variance_threshold=threshold)
            assert k == int(np.argmax(cumulative >= threshold)) + 1 == len(ratio) == len(basis)
            assert ratio.sum() >= threshold - 1e-9 > ratio[:-1].sum()
        assert compute_top_pcs_by_variance(x, 0.99, max_pcs=2)[2] == 2
        assert compute_top_pcs_by_variance(x, 1.0)[2] == 10


class TestGeometry:
    def test_clusters_inertia_recomputed_by_hand(self) -> None:
        centres = np.eye(6)[:3] * 5
        vecs = np.concatenate([c + 0.3 * randn(4, 6, seed=i) for i, c in enumerate(centres)])
        labels, centroids, inertia = trait_clusters(torch.tensor(vecs), k=3, seed=0)
        unit = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        by_hand = ((unit - centroids.numpy()[labels.numpy()]) ** 2).sum()
        assert abs(inertia - by_hand) < 1e-9 and labels.dtype == torch.int64
        assert len({tuple(labels[i : i + 4].tolist()) for i in (0, 4, 8)}) == 3
        assert all(len(set(labels[i : i + 4].tolist())) == 1 for i in (0, 4, 8))
        scaled = trait_clusters(torch.tensor(vecs * np.arange(1, 13)[:, None]), k=3, seed=0)
        assert torch.equal(scaled[0], labels)  # directions, not magnitudes

    def test_rsa_matches_scipy_spearman(self) -> None:
        layers = {layer: randn(7, 5 + layer, seed=layer) for layer in (9, 3, 6)}
        rsa, order = representational_similarity(
            {k: torch.tensor(v, dtype=torch.float32) for k, v in layers.items()}
        )
        assert order == [3, 6, 9] and rsa.dtype == torch.float32
        iu = np.triu_indices(7, k=1)
        tri = [sk_cosine(layers[layer])[iu] for layer in order]
        for i in range(3):
            for j in range(3):
                close(rsa[i, j], 1.0 if i == j else spearmanr(tri[i], tri[j])[0], atol=1e-6)

    def test_pca_norm_correlation_matches_scipy_pearson(self) -> None:
        proj = randn(8, 3)
        names = [f"e{i}" for i in range(8)]
        norms = {f"e{i}": tuple(randn(2, seed=10 + i)) for i in range(8) if i != 5}
        norms["unused"] = (0.0, 0.0)
        corr = pca_norm_correlation(torch.tensor(proj), names, norms)
        keep = [i for i in range(8) if i != 5]
        table = np.array([norms[f"e{i}"] for i in keep])
        assert len(corr) == 6
        for p in range(3):
            for j, dim in enumerate(("valence", "arousal")):
                expected = pearsonr(proj[keep, p], table[:, j])[0]
                assert abs(corr[f"pc{p + 1}_vs_{dim}"] - expected) < 1e-12
        one = pca_norm_correlation(proj[:, 0], names, {k: v[:1] for k, v in norms.items()}, ["v"])
        assert list(one) == ["pc1_vs_v"]

    def test_vector_set_comparison(self) -> None:
        a = {n: torch.tensor(randn(6, seed=i)) for i, n in enumerate(["joy", "fear", "awe"])}
        b = {n: torch.tensor(randn(6, seed=9 + i)) for i, n in enumerate(["fear", "joy"])}
        out = vector_set_comparison(a, b)
        mat_a, mat_b = np.stack([v.numpy() for v in a.values()]), np.stack(list(b.values()))
        close(out["cross_cosine"], sk_cosine(mat_a, mat_b), atol=1e-12)
        assert out["matched_names"] == ["joy", "fear"] and out["names_b"] == ["fear", "joy"]
        for name in out["matched_names"]:
            cos = float(cosine_similarity(a[name], b[name]))
            assert abs(out["matched_cosine"][name] - cos) < 1e-12
            assert abs(out["retained_norm"][name] - np.sqrt(1 - cos**2)) < 1e-12
        resid = np.stack([orthogonalize(a[n], b[n]).numpy() for n in out["matched_names"]])
        close(out["orthogonalized_cross_cosine"], sk_cosine(resid, mat_b), atol=1e-12)
        close(out["orthogonalized_cross_cosine"][[0, 1], [1, 0]], [0, 0], atol=1e-12)
        assert (
            abs(out["mean_matched_cosine"] - np.mean(list(out["matched_cosine"].values()))) < 1e-12
        )


LOW_PRECISION_CASES: list[tuple[str, Callable[[torch.Tensor], Any]]] = [
    ("projection", lambda x: projection(x, x[0])),
    ("batch_cosine", lambda x: batch_cosine_similarity(x, x[1])),
    ("pairwise", pairwise_cosine_matrix),
    ("orthogonalize", lambda x: orthogonalize(x[0], x[1])),
    ("project_out", lambda x: project_out_subspace(x, x[:2])),
    ("pca", lambda x: pca(x, 3)),
    ("top_pcs", lambda x: compute_top_pcs_by_variance(x, 0.8)),
    ("grand_mean", lambda x: grand_mean_center({str(i): r for i, r in enumerate(x)})),
    ("rsa", lambda x: representational_similarity({0: x, 1: x.flip(1)})),
    ("clusters", lambda x: trait_clusters(x, 2)[1:]),
    ("comparison", lambda x: vector_set_comparison({"a": x[0]}, {"a": x[1], "b": x[2]})),
]


def _tensors(result: Any) -> list[torch.Tensor]:
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, dict):
        return [t for v in result.values() for t in _tensors(v)]
    if isinstance(result, (tuple, list)):
        return [t for v in result for t in _tensors(v)]
    return []


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("name,fn", LOW_PRECISION_CASES, ids=[c[0] for c in LOW_PRECISION_CASES])
def test_low_precision_inputs_give_the_fp32_result(
    dtype: torch.dtype, name: str, fn: Callable[[torch.Tensor], Any]
) -> None:
    low = torch.tensor(randn(6, 8), dtype=torch.float32).to(dtype)
    snapshot = low.clone()
    got, want = _tensors(fn(low)), _tensors(fn(low.float()))
    assert got and all(t.dtype == torch.float32 for t in got)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    assert torch.equal(low, snapshot)  # inputs are never modified


def test_inputs_are_never_modified() -> None:
    x = torch.tensor(randn(6, 8), dtype=torch.float32)
    arr = x.numpy().copy()
    for _, fn in LOW_PRECISION_CASES:
        fn(x)
        fn(torch.from_numpy(arr))
    denoise_with_pcs({"a": x[0]}, x[:2])
    assert np.array_equal(x.numpy(), arr)


ERROR_CASES: list[tuple[Callable[[], Any], type[Exception], str]] = [
    (lambda: projection(torch.ones(3, 4), torch.ones(5)), ValueError, r"\(3, 4\).*\(5,\)"),
    (lambda: projection(torch.ones(3, 4), torch.zeros(4)), ValueError, "vector is all zeros"),
    (lambda: projection(torch.ones(0, 4), torch.ones(4)), ValueError, "activations is empty"),
    (
        lambda: projection(torch.ones(2, 5, 4), torch.ones(3)),
        ValueError,
        r"activations has shape \(2, 5, 4\) but vector has shape \(3,\).*hidden size",
    ),
    (
        lambda: batch_cosine_similarity(torch.ones(2, 5, 4), torch.ones(3)),
        ValueError,
        r"\(2, 5, 4\) but vector has shape \(3,\)",
    ),
    (lambda: projection(torch.tensor(1.0), torch.ones(2)), ValueError, r"\[\.\.\., d\].*\(\)"),
    (lambda: projection(torch.ones(3), torch.ones(1, 3)), ValueError, r"vector must .*\[d\]"),
    (lambda: batch_cosine_similarity(torch.ones(2, 3), torch.zeros(3)), ValueError, "all zeros"),
    (
        lambda: batch_cosine_similarity(torch.ones(2, 3), torch.full((3,), 1e-25)),
        ValueError,
        r"vector has norm 1.73e-25, at or below 1.08e-19 .*pass a non-zero vector",
    ),
    (
        lambda: projection(torch.ones(4), torch.full((4,), 1e308, dtype=torch.float64)),
        ValueError,
        r"vector has norm inf, not a finite torch.float64",
    ),
    (
        lambda: cosine_similarity(torch.tensor([1e-30, 0.0]), torch.tensor([1.0, 0.0])),
        ValueError,
        "a has norm 1e-30, at or below",
    ),
    (
        lambda: orthogonalize(torch.ones(3), torch.full((3,), 1e-30)),
        ValueError,
        "against has norm",
    ),
    (lambda: batch_cosine_similarity(A([[1.0, np.nan]]), A([1.0, 0])), ValueError, "1 NaN or inf"),
    (lambda: cosine_similarity(A([1.0, 2.0]), A([0.0, 0.0])), ValueError, "b is all zeros"),
    (
        lambda: cosine_similarity(A([1.0, np.inf]), A([1.0, 0])),
        ValueError,
        "a contains 1 NaN or inf",
    ),
    (
        lambda: cosine_similarity(A([1.0]), A([1.0, 2.0])),
        ValueError,
        r"\(1,\) but b has shape \(2,\)",
    ),
    (lambda: cosine_similarity(untyped(["x"]), A([1.0])), TypeError, "a must be a torch tensor"),
    (lambda: orthogonalize(torch.ones(3), torch.zeros(3)), ValueError, "against is all zeros"),
    (lambda: orthogonalize(torch.ones(3), torch.ones(2, 4)), ValueError, "against has shape"),
    (lambda: project_out_subspace(torch.ones(3), torch.zeros(2, 3)), ValueError, "basis is all"),
    (
        lambda: pairwise_cosine_matrix({"a": torch.ones(2), "b": torch.zeros(2)}),
        ValueError,
        r"all-zero vector\(s\) at \['b'\]",
    ),
    (
        lambda: pairwise_cosine_matrix({"a": torch.ones(2), "b": torch.ones(3)}),
        ValueError,
        r"vectors\['b'\] has shape \(3,\) but vectors\['a'\] has shape \(2,\)",
    ),
    (lambda: pairwise_cosine_matrix({}), ValueError, "empty dict"),
    (lambda: pca(torch.ones(4, 3), 1), ValueError, "every row is identical"),
    (lambda: pca(torch.randn(4, 3), 4), ValueError, r"between 1 and min\(n, d\) = 3"),
    (lambda: pca(torch.randn(1, 3), 1), ValueError, "at least 2 rows"),
    (lambda: pca(torch.randn(4, 3), untyped(1.5)), TypeError, "n_components must be an int"),
    (lambda: compute_top_pcs_by_variance(torch.randn(4, 3), 0), ValueError, r"in \(0, 1\]"),
    (lambda: compute_top_pcs_by_variance(torch.randn(4, 3), max_pcs=0), ValueError, "max_pcs"),
    (lambda: grand_mean_center(untyped(torch.ones(2, 3))), TypeError, "must be a dict"),
    (lambda: trait_clusters(torch.randn(3, 4), k=4), ValueError, "between 1 and 3"),
    (lambda: trait_clusters(torch.zeros(3, 4), k=2), ValueError, "all-zero vector"),
    (lambda: representational_similarity({}), ValueError, "non-empty dict"),
    (lambda: representational_similarity({0: torch.randn(2, 3)}), ValueError, "at least 3"),
    (
        lambda: representational_similarity({0: torch.randn(4, 3), 1: torch.randn(5, 3)}),
        ValueError,
        "layer 1 has 5 vectors",
    ),
    (lambda: representational_similarity({0: torch.eye(3)}), ValueError, "same cosine"),
    (
        lambda: pca_norm_correlation(torch.randn(4, 2), ["a", "b"], {}),
        ValueError,
        "4 rows but names has 2",
    ),
    (
        lambda: pca_norm_correlation(torch.randn(3, 2), list("abc"), {"a": (1, 2)}),
        ValueError,
        "only 1 of 3 names have norms",
    ),
    (
        lambda: pca_norm_correlation(torch.randn(3), list("abc"), dict.fromkeys("abc", (1, 2, 3))),
        ValueError,
        "3 value",
    ),
    (lambda: pca_norm_correlation(torch.randn(3), list("aab"), {}), ValueError, "duplicates"),
    (
        lambda: pca_norm_correlation(torch.arange(3.0), list("abc"), dict.fromkeys("abc", (1, 2))),
        ValueError,
        "valence is constant",
    ),
    (
        lambda: vector_set_comparison({"a": torch.ones(2)}, {"b": torch.ones(2)}),
        ValueError,
        "share no names",
    ),
    (
        lambda: vector_set_comparison({"a": torch.ones(2)}, {"a": torch.ones(3)}),
        ValueError,
        "set_a has shape",
    ),
]


@pytest.mark.parametrize(("call", "error", "message"), ERROR_CASES)
def test_errors_name_the_problem(call: Callable[[], Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize(
    "module",
    [trait_lab.math.checks, trait_lab.math.linalg, trait_lab.math.geometry, trait_lab.math.metrics],
)
def test_docstring_examples(module: Any) -> None:
    failed, attempted = doctest.testmod(module)
    assert attempted > 0 and failed == 0


def test_math_package_serves_linalg_geometry_and_metrics() -> None:
    for name in trait_lab.math.__all__:
        assert getattr(trait_lab.math, name) is not None
    assert trait_lab.math.effect_size is trait_lab.math.metrics.effect_size
    assert trait_lab.math.trait_clusters is trait_lab.math.geometry.trait_clusters
    assert trait_lab.math.projection is trait_lab.math.linalg.projection
