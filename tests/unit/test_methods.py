"""Extraction methods against independent ground truth: planted directions, numpy and sklearn
recomputations, a closed-form shrunk Fisher direction, and a brute-force autograd RFM."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterator, Mapping

import numpy as np
import pytest
import torch
from sklearn.covariance import ledoit_wolf_shrinkage as sklearn_lw
from sklearn.linear_model import LogisticRegression

from trait_lab.extraction.methods import METHODS, MethodResult, get_method, ledoit_wolf_shrinkage
from trait_lab.extraction.rfm import _fit_candidate

ORIENTED = ("mean_diff", "probe", "gradient", "rfm")


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """These tensors are tiny; on shared cores thread hand-offs cost more than the maths."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def planted(
    n: int = 120, hidden: int = 64, gap: float = 4.0, seed: int = 1234, fp16: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gaussian clouds offset by ±gap/2 along a random unit u, around a large shared base."""
    g = torch.Generator().manual_seed(seed)
    u = torch.nn.functional.normalize(torch.randn(hidden, generator=g), dim=0)
    base = 20 * torch.randn(hidden, generator=g)  # model-like scale and offset
    pos = base + torch.randn(n, hidden, generator=g) + gap / 2 * u
    neg = base + torch.randn(n, hidden, generator=g) - gap / 2 * u
    return (pos.half(), neg.half(), u) if fp16 else (pos, neg, u)


def anisotropic(n: int = 200, hidden: int = 32, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Signal on u; a bigger class offset on w hidden under huge variance along w.

    mean_diff points mostly at w (cos(u) ≈ 0.3); a variance-aware method finds u.
    """
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(hidden, hidden, generator=g))
    u, w = q[:, 0], q[:, 1]

    def cloud(sign: float) -> torch.Tensor:
        z = torch.randn(n, 1, generator=g)
        noise = 0.5 * torch.randn(n, hidden, generator=g)
        return noise + sign * u + (3 * sign + 10 * z) * w

    return cloud(1.0).half(), cloud(-1.0).half(), u


@pytest.fixture(scope="module")
def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return planted()


@pytest.fixture(scope="module")
def results(data: tuple[torch.Tensor, ...]) -> dict[str, MethodResult]:
    pos, neg, _ = data
    return {name: get_method(name).extract(pos, neg) for name in METHODS}


class TestRegistry:
    def test_every_name_resolves(self) -> None:
        assert METHODS == ("mean_diff", "probe", "gradient", "random_baseline", "rfm")
        for name in METHODS:
            assert get_method(name).name == name

    @pytest.mark.parametrize(("typo", "guess"), [("mean_dif", "mean_diff"), ("Probe", "probe")])
    def test_unknown_name_lists_valid_and_suggests(self, typo: str, guess: str) -> None:
        with pytest.raises(ValueError, match=f"did you mean '{guess}'") as err:
            get_method(typo)
        assert f"unknown extraction method '{typo}'" in str(err.value)
        assert "mean_diff, probe, gradient, random_baseline, rfm" in str(err.value)


#: diagnostics each method documents (a subset: methods may record more)
DOCUMENTED = {
    "mean_diff": {"raw_norm", "flipped"},
    "probe": {"C", "train_accuracy", "converged", "flipped"},
    "gradient": {"initial_objective", "final_objective", "shrinkage", "flipped"},
    "random_baseline": {"seed"},
    "rfm": {"bandwidth", "center_grads", "val_auc", "n_train", "n_val", "flipped"},
}


class TestResult:
    def test_frozen_and_dict_access(self, results: dict[str, MethodResult]) -> None:
        res = results["mean_diff"]
        assert res["vector"] is res.vector and res["method"] == "mean_diff"
        with pytest.raises(dataclasses.FrozenInstanceError):
            res.method = "probe"  # type: ignore[misc]
        msg = r"'vec' is not a key of this mean_diff result; its keys are \['vector', 'method', "
        with pytest.raises(KeyError, match=msg):
            res["vec"]
        with pytest.raises(KeyError, match="'diagnostics' is not a key"):
            res["diagnostics"]  # the dict is res.diagnostics; its entries are keys themselves

    @pytest.mark.parametrize("name", METHODS)
    def test_reads_as_the_documented_dict(
        self, name: str, results: dict[str, MethodResult]
    ) -> None:
        res = results[name]
        assert isinstance(res, Mapping)
        keys = ["vector", "method", *res.diagnostics]
        assert list(res) == keys and list(res.keys()) == keys and len(res) == len(keys)
        assert DOCUMENTED[name] <= set(res) and "vector" in res and "nope" not in res
        as_dict = dict(res)
        assert as_dict["vector"] is res.vector and as_dict["method"] == name
        assert {k: as_dict[k] for k in res.diagnostics} == res.diagnostics
        assert [k for k, _ in res.items()] == keys and res.get("nope") is None
        assert res.get("nope", 3) == 3 and res.get("vector") is res.vector
        norm = np.linalg.norm(res["vector"].numpy().astype(np.float64))  # numpy, not torch
        assert norm == pytest.approx(1.0, abs=1e-5)
        same = results[name]
        assert res == same and res != dict(res) and {res: 1}[same] == 1  # identity, hashable

    def test_diagnostics_may_not_shadow_the_fields(self) -> None:
        with pytest.raises(ValueError, match=r"reserved key\(s\) \['vector'\]"):
            MethodResult(torch.ones(2), "mean_diff", {"vector": 1.0})

    @pytest.mark.parametrize("name", METHODS)
    def test_unit_fp32_cpu_and_json_diagnostics(
        self, name: str, results: dict[str, MethodResult], data: tuple[torch.Tensor, ...]
    ) -> None:
        res = results[name]
        assert res.method == name
        assert res.vector.dtype == torch.float32 and res.vector.device.type == "cpu"
        assert res.vector.shape == (data[0].shape[1],)
        assert abs(float(res.vector.norm()) - 1.0) < 1e-5
        json.dumps(res.diagnostics)
        assert all(isinstance(v, (bool, int, float, str)) for v in res.diagnostics.values())


class TestPlantedDirection:
    @pytest.mark.parametrize(
        ("name", "min_cos"), [("mean_diff", 0.9), ("probe", 0.9), ("gradient", 0.9), ("rfm", 0.8)]
    )
    def test_recovers_u_and_orients(
        self,
        name: str,
        min_cos: float,
        results: dict[str, MethodResult],
        data: tuple[torch.Tensor, ...],
    ) -> None:
        pos, neg, u = data
        vec = results[name].vector
        assert float(vec @ u) > min_cos
        assert float((pos.float() @ vec).mean()) > float((neg.float() @ vec).mean())
        assert results[name].diagnostics["flipped"] is False

    @pytest.mark.parametrize("name", ORIENTED)
    def test_swapping_classes_flips_the_vector(
        self, name: str, results: dict[str, MethodResult], data: tuple[torch.Tensor, ...]
    ) -> None:
        pos, neg, _ = data
        swapped = get_method(name).extract(neg, pos).vector
        assert float(swapped @ results[name].vector) < -0.95

    def test_random_baseline_is_near_chance(self) -> None:
        pos, neg, u = planted(n=200, hidden=512)
        train_p, test_p, train_n, test_n = pos[:100], pos[100:], neg[:100], neg[100:]
        vectors = []
        for seed in range(5):
            res = get_method("random_baseline").extract(train_p, train_n, seed=seed)
            vec = res.vector
            assert "flipped" not in res.diagnostics and res.diagnostics["seed"] == seed
            assert abs(float(vec @ u)) < 0.2
            cut = ((train_p.float() @ vec).mean() + (train_n.float() @ vec).mean()) / 2
            hits = int((test_p.float() @ vec > cut).sum() + (test_n.float() @ vec <= cut).sum())
            assert 0.3 < hits / 200 < 0.7
            vectors.append(vec)
        assert all(float(a @ b) < 0.5 for a, b in itertools.pairwise(vectors))


class TestAgainstReferences:
    def test_mean_diff_matches_numpy(self, data: tuple[torch.Tensor, ...]) -> None:
        pos, neg, _ = data
        p, n = pos.numpy().astype(np.float32), neg.numpy().astype(np.float32)
        ref = p.mean(axis=0) - n.mean(axis=0)
        ref /= np.linalg.norm(ref)
        got = get_method("mean_diff").extract(pos, neg).vector.numpy()
        np.testing.assert_allclose(got, ref, atol=1e-6)

    @pytest.mark.parametrize("C", [1.0, 0.05])
    def test_probe_matches_sklearn(self, data: tuple[torch.Tensor, ...], C: float) -> None:
        pos, neg, _ = data
        x = np.concatenate([pos.numpy(), neg.numpy()]).astype(np.float64)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        clf = LogisticRegression(C=C, max_iter=1000).fit(x, y)
        ref = clf.coef_[0] / np.linalg.norm(clf.coef_[0])
        res = get_method("probe").extract(pos, neg, C=C)
        np.testing.assert_allclose(res.vector.numpy(), ref, atol=1e-5)
        assert res.diagnostics["train_accuracy"] == pytest.approx(clf.score(x, y))
        assert res.diagnostics["C"] == C

    def test_ledoit_wolf_matches_sklearn(self) -> None:
        g = torch.Generator().manual_seed(0)
        for n, d in ((50, 10), (30, 100)):
            x = torch.randn(n, d, generator=g, dtype=torch.float64) * torch.linspace(0.1, 3, d)
            x = x - x.mean(dim=0)
            expected = sklearn_lw(x.numpy(), assume_centered=True)
            assert ledoit_wolf_shrinkage(x) == pytest.approx(expected, rel=1e-9)

    def test_gradient_reaches_the_closed_form_shrunk_fisher_direction(self) -> None:
        pos, neg, _ = anisotropic(seed=1)
        p, n = pos.double(), neg.double()
        pc, nc = p - p.mean(dim=0), n - n.mean(dim=0)
        cov = pc.T @ pc / (len(p) - 1) + nc.T @ nc / (len(n) - 1)
        lam = 0.2
        shrunk = (1 - lam) * cov + lam * cov.trace() / cov.shape[0] * torch.eye(cov.shape[0])
        ref = torch.linalg.solve(shrunk, p.mean(dim=0) - n.mean(dim=0))
        ref = (ref / ref.norm()).float()
        res = get_method("gradient").extract(pos, neg, shrinkage=lam, steps=600)
        assert float(res.vector @ ref) > 0.999
        assert res.diagnostics["final_objective"] < res.diagnostics["initial_objective"]

    def test_gradient_auto_shrinkage_is_ledoit_wolf_and_one_is_mean_diff(
        self, data: tuple[torch.Tensor, ...], results: dict[str, MethodResult]
    ) -> None:
        pos, neg, _ = data
        p, n = pos.double(), neg.double()
        centred = torch.cat([p - p.mean(dim=0), n - n.mean(dim=0)]).numpy()
        expected = sklearn_lw(centred, assume_centered=True)
        assert results["gradient"].diagnostics["shrinkage"] == pytest.approx(expected, rel=1e-5)
        at_one = get_method("gradient").extract(pos, neg, shrinkage=1.0).vector
        assert float(at_one @ results["mean_diff"].vector) > 0.9999

    def test_rfm_agop_matches_brute_force_autograd(self) -> None:
        """Explicit d×d metric, per-point autograd gradients, eigh of the d×d AGOP."""
        g = torch.Generator().manual_seed(3)
        x = torch.randn(20, 6, generator=g, dtype=torch.float64)
        y = torch.sign(x[:, 0] + 0.5 * x[:, 1] ** 2 - 0.3)
        mult, reg, iters = 0.7, 1e-3, 3
        for center in (True, False):
            metric = torch.eye(6, dtype=torch.float64)
            for _ in range(iters):
                diff = x[:, None, :] - x[None, :, :]
                dist = torch.einsum("ijk,kl,ijl->ij", diff, metric, diff).clamp_min(0).sqrt()
                bw = mult * dist[~torch.eye(20, dtype=torch.bool)].median()
                alpha = torch.linalg.solve(torch.exp(-dist / bw) + reg * torch.eye(20), y)
                grads = []
                for j in range(20):
                    point = x[j].clone().requires_grad_(True)
                    others = torch.arange(20) != j  # the kernel has no gradient at distance 0
                    d_j = x[others] - point
                    kernel = torch.exp(-((d_j @ metric) * d_j).sum(dim=1).sqrt() / bw)
                    grads.append(torch.autograd.grad((alpha[others] * kernel).sum(), point)[0])
                grad_mat = torch.stack(grads)
                if center:
                    grad_mat = grad_mat - grad_mat.mean(dim=0)
                metric = grad_mat.T @ grad_mat / 20
            ref = torch.linalg.eigh(metric)[1][:, -1]
            got = _fit_candidate(x, y, mult, center, iters, reg)
            assert abs(float(got @ ref)) > 0.9999


class TestPrecision:
    @pytest.mark.parametrize("name", ORIENTED)
    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    def test_low_precision_storage_gives_the_fp32_vector(
        self, name: str, dtype: torch.dtype
    ) -> None:
        pos32, neg32, _ = planted(fp16=False)
        pos_lo, neg_lo = pos32.to(dtype), neg32.to(dtype)
        method = get_method(name)
        low = method.extract(pos_lo, neg_lo).vector
        # Same stored values upcast by the caller: identical maths, so (near-)identical vectors.
        upcast = method.extract(pos_lo.float(), neg_lo.float()).vector
        assert torch.allclose(low, upcast, atol=1e-5)
        # Against the unrounded fp32 data: only the storage rounding separates them.
        exact = method.extract(pos32, neg32).vector
        assert float(low @ exact) > (0.9999 if dtype == torch.float16 else 0.999)

    def test_numpy_input_matches_torch(self, data: tuple[torch.Tensor, ...]) -> None:
        pos, neg, _ = data
        for name in ("mean_diff", "probe"):
            a = get_method(name).extract(pos.numpy(), neg.numpy()).vector
            assert torch.allclose(a, get_method(name).extract(pos, neg).vector, atol=1e-6)


class TestAnisotropicNoise:
    def test_variance_aware_methods_beat_mean_diff(self) -> None:
        pos, neg, u = anisotropic()
        cos = {m: float(get_method(m).extract(pos, neg).vector @ u) for m in ORIENTED}
        assert cos["mean_diff"] < 0.5
        assert cos["probe"] > 0.9 and cos["gradient"] > 0.9 and cos["rfm"] > 0.8


class TestRFM:
    def test_diagnostics_and_stratified_split(self, results: dict[str, MethodResult]) -> None:
        diag = results["rfm"].diagnostics
        assert diag["bandwidth"] in (0.25, 0.5, 1.0, 2.0)
        assert isinstance(diag["center_grads"], bool)
        assert 0.5 < diag["val_auc"] <= 1.0 and diag["val_auc_worst"] <= diag["val_auc"]
        assert (diag["n_train"], diag["n_val"], diag["grid_size"]) == (180, 60, 8)

    def test_minimum_size_and_single_settings(self) -> None:
        pos, neg, _ = planted(n=4, hidden=8)
        res = get_method("rfm").extract(pos, neg, center_grads=False, bandwidths=1.0)
        assert res.diagnostics["center_grads"] is False and res.diagnostics["bandwidth"] == 1.0
        assert (res.diagnostics["n_train"], res.diagnostics["n_val"]) == (6, 2)


class TestDeterminism:
    @pytest.mark.parametrize("name", ["gradient", "rfm", "random_baseline"])
    def test_same_seed_same_vector(self, name: str, data: tuple[torch.Tensor, ...]) -> None:
        pos, neg, _ = data
        first = get_method(name).extract(pos, neg, seed=7).vector
        assert torch.equal(first, get_method(name).extract(pos, neg, seed=7).vector)

    def test_random_baseline_seeds_differ(self, data: tuple[torch.Tensor, ...]) -> None:
        pos, neg, _ = data
        a = get_method("random_baseline").extract(pos, neg, seed=0).vector
        assert not torch.equal(a, get_method("random_baseline").extract(pos, neg, seed=1).vector)


class TestValidation:
    @pytest.mark.parametrize("shape", [(8,), (2, 3, 8), (4, 0)])
    def test_not_2d(self, shape: tuple[int, ...]) -> None:
        with pytest.raises(ValueError, match=r"pos_acts must be 2-D \[n_samples, hidden\]"):
            get_method("mean_diff").extract(torch.ones(shape), torch.ones(4, 8))

    def test_width_mismatch_names_both(self) -> None:
        with pytest.raises(ValueError, match="pos_acts has hidden size 8 but neg_acts has 6"):
            get_method("probe").extract(torch.ones(4, 8), torch.zeros(4, 6))

    def test_nan_and_inf_are_counted_per_set(self) -> None:
        bad = torch.zeros(5, 4, dtype=torch.float16)
        bad[0, 0], bad[0, 1], bad[3, 2] = float("nan"), float("inf"), float("-inf")
        with pytest.raises(ValueError, match=r"neg_acts has 1 NaN and 2 inf values \(in 2 of 5"):
            get_method("mean_diff").extract(torch.ones(5, 4), bad)

    @pytest.mark.parametrize(
        ("name", "n_pos", "need"),
        [("mean_diff", 0, 1), ("probe", 1, 2), ("gradient", 1, 2), ("rfm", 3, 4)],
    )
    def test_too_few_samples(self, name: str, n_pos: int, need: int) -> None:
        pos, neg = torch.randn(n_pos, 4), torch.randn(10, 4)
        msg = f"{name} needs at least {need} sample\\(s\\) per class.*got {n_pos} positive and 10"
        with pytest.raises(ValueError, match=msg) as err:
            get_method(name).extract(pos, neg)
        assert ("validation split" in str(err.value)) == (name == "rfm")

    @pytest.mark.parametrize("name", ["mean_diff", "gradient"])
    def test_identical_classes(self, name: str) -> None:
        acts = torch.randn(6, 4)
        with pytest.raises(ValueError, match=r"mean\(pos_acts\) equals mean\(neg_acts\) exactly"):
            get_method(name).extract(acts, acts.clone())

    def test_types_dtypes_and_options(self) -> None:
        ok = torch.randn(6, 4)
        with pytest.raises(TypeError, match="pos_acts must be a torch tensor or numpy array"):
            get_method("mean_diff").extract([[1.0, 2.0]], ok)
        with pytest.raises(TypeError, match=r"neg_acts has dtype torch\.int64; pass floating"):
            get_method("mean_diff").extract(ok, torch.ones(6, 4, dtype=torch.long))
        with pytest.raises(TypeError, match="pos_acts has dtype int32; pass floating"):
            get_method("mean_diff").extract(np.ones((6, 4), dtype=np.int32), ok)
        with pytest.raises(ValueError, match=r"probe got unknown option\(s\) \['c'\]; valid .*'C'"):
            get_method("probe").extract(ok + 1, ok, c=2.0)
        with pytest.raises(ValueError, match="init must be 'mean_diff' or 'random', got 'pca'"):
            get_method("gradient").extract(ok + 1, ok, init="pca")
        with pytest.raises(ValueError, match="shrinkage must be 'auto' or in \\[0, 1\\], got 2"):
            get_method("gradient").extract(ok + 1, ok, shrinkage=2)
        with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\), got 1.5"):
            get_method("rfm").extract(ok + 1, ok, val_fraction=1.5)
