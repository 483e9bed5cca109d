"""Cleaning, modes, smoothing and centring against brute-force numpy recomputes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trait_lab.dynamics.cleaning import (
    CLEAN_LABELS,
    CLEAN_OPTIONS,
    apply_mode,
    center,
    check_clean_option,
    clean_norms,
    clean_projection,
    dims_to_clean,
    smooth,
)

HIDDEN = 64
MASSIVE = (3, 17, 40)


def _calibration() -> dict:
    # dims 3 and 17 are top-5 at 4 layers, 40 at 2 layers only; 40 and 55 are candidates.
    layers = [
        {"top_dims": [3, 17, 9, 10, 11, 12]},
        {"top_dims": [17, 3, 40, 20, 21]},
        {"top_dims": [3, 40, 17, 30, 31]},
        {"top_dims": [17, 3, 50, 51, 52, 40]},
    ]
    return {"layers": layers, "candidates": [3, 17, 40, 55]}


@pytest.fixture()
def planted() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    h = rng.normal(size=(25, HIDDEN))
    h[:, list(MASSIVE)] *= 1000.0
    v = rng.normal(size=HIDDEN)
    return h, v / np.linalg.norm(v)


class TestDimsToClean:
    def test_options(self) -> None:
        # The same dims the UI labels "No cleaning", "Top 5, 3+ layers", "All candidates" gave.
        cal = _calibration()
        assert dims_to_clean(cal, "none") == []
        assert dims_to_clean(cal, "top5") == [3, 17]
        assert dims_to_clean(cal, "all") == [3, 17, 40, 55]

    def test_keys_and_labels_are_the_spec_ones(self) -> None:
        assert CLEAN_OPTIONS == ("none", "top5", "all")
        assert CLEAN_LABELS == {
            "none": "No cleaning",
            "top5": "Top 5, 3+ layers",
            "all": "All candidates",
        }

    @pytest.mark.parametrize(("key", "label"), list(CLEAN_LABELS.items()))
    def test_a_label_names_the_key_to_pass(self, key: str, label: str) -> None:
        with pytest.raises(ValueError) as info:
            dims_to_clean(_calibration(), label)
        message = str(info.value)
        assert repr(label) in message
        assert str(list(CLEAN_OPTIONS)) in message
        assert f"pass clean option {key!r} instead" in message

    def test_unknown_option_lists_the_keys(self) -> None:
        with pytest.raises(ValueError, match=r"unknown clean option 'Top5'; choose one of") as info:
            check_clean_option("Top5")
        assert "['none', 'top5', 'all']" in str(info.value)
        assert "instead" not in str(info.value)
        assert check_clean_option("top5") == "top5"


class TestBruteForce:
    @pytest.mark.parametrize("option", CLEAN_OPTIONS)
    def test_projection_and_norm_equal_zeroed_recompute(self, planted, option) -> None:
        h, v = planted
        dims = dims_to_clean(_calibration(), option)
        zeroed = h.copy()
        zeroed[:, dims] = 0.0
        scores, norms = h @ v, np.linalg.norm(h, axis=-1)
        got = clean_projection(scores, h[:, dims], v, dims)
        np.testing.assert_allclose(got, zeroed @ v, atol=1e-5, rtol=0)
        got_n = clean_norms(norms, h[:, dims], dims)
        np.testing.assert_allclose(got_n, np.linalg.norm(zeroed, axis=-1), atol=1e-5, rtol=0)

    def test_torch_in_torch_out_and_unnormalized_vector(self, planted) -> None:
        h, v = planted
        dims = [3, 17]
        t = torch.tensor(h, dtype=torch.float64)
        scores = t @ torch.tensor(v)
        got = clean_projection(scores, t[:, dims], torch.tensor(v * 7.0), dims)
        assert isinstance(got, torch.Tensor)
        zeroed = h.copy()
        zeroed[:, dims] = 0
        np.testing.assert_allclose(got.numpy(), zeroed @ v, atol=1e-5)

    def test_batched(self, planted) -> None:
        h, v = planted
        hb = np.stack([h, h[::-1]])
        dims = [40]
        zeroed = hb.copy()
        zeroed[..., dims] = 0
        got = clean_projection(hb @ v, hb[..., dims], v, dims)
        np.testing.assert_allclose(got, zeroed @ v, atol=1e-5)

    def test_norm_clamped_at_zero(self) -> None:
        assert clean_norms(np.array([1.0]), np.array([[1.0000001]]), [0]).tolist() == [0.0]


class TestErrors:
    def test_shape_mismatch(self, planted) -> None:
        h, v = planted
        with pytest.raises(ValueError, match="does not match scores shape"):
            clean_projection(h @ v, h[:-1, [3]], v, [3])
        with pytest.raises(ValueError, match="2 dims were given"):
            clean_projection(h @ v, h[:, [3]], v, [3, 4])
        with pytest.raises(ValueError, match="does not match norms shape"):
            clean_norms(np.ones(3), np.ones((4, 1)), [0])

    def test_dim_out_of_range(self, planted) -> None:
        h, v = planted
        with pytest.raises(IndexError, match=r"\[64\] are out of range"):
            clean_projection(h @ v, h[:, [3]], v, [64])

    def test_duplicate_dims(self, planted) -> None:
        h, v = planted
        with pytest.raises(ValueError, match="duplicates"):
            clean_projection(h @ v, h[:, [3, 3]], v, [3, 3])

    def test_bad_mode(self) -> None:
        with pytest.raises(ValueError, match="'raw', 'normalized', 'cosine'"):
            apply_mode(np.ones(3), np.ones(3), "zscore")


class TestModes:
    def test_against_numpy(self) -> None:
        rng = np.random.default_rng(1)
        s, n = rng.normal(size=10), rng.uniform(1, 5, size=10)
        mask = np.arange(10) >= 4
        np.testing.assert_allclose(apply_mode(s, n, "raw"), s)
        np.testing.assert_allclose(apply_mode(s, n, "cosine"), s / n)
        np.testing.assert_allclose(apply_mode(s, n, "normalized", mask), s / n[4:].mean())
        np.testing.assert_allclose(apply_mode(s, n, "normalized"), s / n.mean())

    def test_cosine_equals_true_cosine(self, planted) -> None:
        h, v = planted
        got = apply_mode(h @ v, np.linalg.norm(h, axis=-1), "cosine")
        want = (h @ v) / np.linalg.norm(h, axis=-1)
        np.testing.assert_allclose(got, want, atol=1e-12)

    def test_empty_mask_rejected(self) -> None:
        with pytest.raises(ValueError, match="selects no tokens"):
            apply_mode(np.ones(3), np.ones(3), "normalized", np.zeros(3, bool))

    def test_center(self) -> None:
        x = np.array([1.0, 2.0, 3.0, 10.0])
        np.testing.assert_allclose(center(x), x - x.mean())
        mask = np.array([False, True, True, True])
        np.testing.assert_allclose(center(x, mask), x - x[1:].mean())
        t = center(torch.tensor(x, dtype=torch.float32))
        assert t.dtype == torch.float32


class TestSmooth:
    def test_never_crosses_boundary(self) -> None:
        x = np.array([0.0] * 6 + [100.0] * 5)
        got = smooth(x, 5, boundary=6)
        np.testing.assert_array_equal(got, x)
        assert not np.array_equal(smooth(x, 5), x)

    def test_against_direct_average(self) -> None:
        rng = np.random.default_rng(2)
        x = rng.normal(size=12)
        got = smooth(x, 3, boundary=5)
        for t in range(12):
            lo, hi = (0, 5) if t < 5 else (5, 12)
            window = x[max(t - 1, lo) : min(t + 2, hi)]
            assert got[t] == pytest.approx(window.mean())

    def test_window_one_is_identity_and_bad_windows(self) -> None:
        x = np.arange(5.0)
        np.testing.assert_array_equal(smooth(x, 1, 2), x)
        with pytest.raises(ValueError, match="positive odd"):
            smooth(x, 4)
        with pytest.raises(ValueError, match="outside"):
            smooth(x, 3, boundary=9)
