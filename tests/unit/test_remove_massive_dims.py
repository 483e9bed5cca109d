"""remove_massive_dims and check_dims (trait_lab.math.massive) against numpy, and their errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import trait_lab
from trait_lab.dynamics.cleaning import clean_norms, clean_projection
from trait_lab.math import check_dims, remove_massive_dims

HIDDEN = 48
DIMS = [3, 17, 40]


@pytest.fixture()
def h() -> np.ndarray:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 9, HIDDEN))
    x[..., DIMS] *= 1000.0
    return x


def _numpy_zeroed(x: np.ndarray, dims: list[int]) -> np.ndarray:
    out = x.copy()
    out[..., dims] = 0.0
    return out


class TestAgainstNumpy:
    @pytest.mark.parametrize("dims", [DIMS, [40, 3], [0, HIDDEN - 1], []])
    def test_zeroes_exactly_the_dims(self, h, dims) -> None:
        t = torch.tensor(h)
        got = remove_massive_dims(t, dims)
        np.testing.assert_array_equal(got.numpy(), _numpy_zeroed(h, dims))
        np.testing.assert_array_equal(t.numpy(), h)  # input untouched
        assert got.data_ptr() != t.data_ptr()

    def test_vector_numpy_input_and_dtype_kept(self, h) -> None:
        v = h[0, 0].astype(np.float32)
        got = remove_massive_dims(v, np.array([3, 17]))
        assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
        np.testing.assert_array_equal(got.numpy(), _numpy_zeroed(v, [3, 17]))
        assert v[3] != 0  # the array was copied, not zeroed in place
        half = remove_massive_dims(torch.tensor(h, dtype=torch.bfloat16), DIMS)
        assert half.dtype == torch.bfloat16 and bool((half[..., DIMS] == 0).all())

    def test_equals_clean_projection_and_clean_norms(self, h) -> None:
        rng = np.random.default_rng(2)
        v = rng.normal(size=HIDDEN)
        zeroed = remove_massive_dims(h, DIMS).numpy()
        unit = v / np.linalg.norm(v)
        scores = clean_projection(h @ unit, h[..., DIMS], v, DIMS)
        np.testing.assert_allclose(zeroed @ unit, scores, atol=1e-6)
        norms = clean_norms(np.linalg.norm(h, axis=-1), h[..., DIMS], DIMS)
        np.testing.assert_allclose(np.linalg.norm(zeroed, axis=-1), norms, rtol=1e-6)

    def test_gradient_flows_to_the_kept_dims(self) -> None:
        x = torch.randn(4, 6, requires_grad=True)
        remove_massive_dims(x, [1, 4]).sum().backward()
        want = torch.ones(4, 6)
        want[:, [1, 4]] = 0
        assert x.grad is not None and torch.equal(x.grad, want)

    def test_served_by_the_facade(self) -> None:
        assert trait_lab.remove_massive_dims is remove_massive_dims


class TestErrors:
    @pytest.mark.parametrize(
        ("dims", "error", "match"),
        [
            ([3, HIDDEN], IndexError, rf"dims \[{HIDDEN}\] are out of range .* width {HIDDEN}"),
            ([-1], IndexError, r"dims \[-1\] are out of range.*allowed dims are 0\.\.47"),
            ([3, 17, 3], ValueError, r"dims has duplicates \[3\] in \[3, 17, 3\]"),
            ([3, 1.0], TypeError, r"dims\[1\] is 1\.0 \(float\); dims must be ints"),
            ([True], TypeError, r"dims\[0\] is True \(bool\)"),
            (["3"], TypeError, r"dims\[0\] is '3' \(str\)"),
            (3, TypeError, "dims must be a list of ints.*got int 3"),
            ("3", TypeError, "dims must be a list of ints.*got str"),
            (torch.tensor([1.5]), TypeError, r"dims\[0\] is 1\.5"),
        ],
    )
    def test_bad_dims(self, h, dims, error, match) -> None:
        t = torch.tensor(h)
        with pytest.raises(error, match=match):
            remove_massive_dims(t, dims)
        np.testing.assert_array_equal(t.numpy(), h)

    def test_bad_activations(self) -> None:
        with pytest.raises(ValueError, match="activations is a scalar"):
            remove_massive_dims(torch.tensor(1.0), [0])
        with pytest.raises(TypeError, match=r"dtype torch\.bool"):
            remove_massive_dims(torch.ones(3, dtype=torch.bool), [0])
        with pytest.raises(TypeError, match="torch tensor or numpy array of numbers, got dict"):
            remove_massive_dims({"h": 1}, [0])

    def test_check_dims_keeps_order_and_accepts_numpy_ints(self) -> None:
        assert check_dims(np.array([9, 2], dtype=np.int64), width=10) == [9, 2]
        assert check_dims((5, 1)) == [5, 1] and check_dims([]) == []

    def test_cleaning_shares_the_check(self) -> None:
        with pytest.raises(TypeError, match=r"dims\[0\] is 1\.0 \(float\)"):
            clean_norms(np.ones(2), np.ones((2, 1)), [1.0])
