"""What a hook is given, checked: steering vectors, coefficients, and their width at run time.

Every steering entry point (the hooks, ``SteeringConfig``, ``ProjectionSpec``) goes through
these, so a bad value gets the same error wherever it is passed.

Example:
    >>> as_vector([3.0, 4.0], direction=True).tolist()
    [0.6000000238418579, 0.800000011920929]
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np
import torch

from trait_lab.math.checks import check_real

VectorLike = torch.Tensor | np.ndarray | Sequence[float]


def as_coefficient(value: object, name: str = "coefficient") -> float:
    """``value`` as a finite Python float: a Python or numpy number, or a 0-d tensor/array.

    Bools, strings, complex numbers and tensors with more than one value are refused.

    Example:
        >>> as_coefficient(np.float32(2.5)), as_coefficient(torch.tensor(-1.0))
        (2.5, -1.0)
    """
    number = value
    if isinstance(number, (torch.Tensor, np.ndarray)):
        if number.ndim != 0:
            raise TypeError(
                f"{name} must be one number, got a {type(value).__name__} of shape "
                f"{tuple(number.shape)}; pass float(x) (or a list for one value per row where "
                "that is allowed)"
            )
        number = number.item()
    if isinstance(number, bool) or not isinstance(number, numbers.Real):
        raise TypeError(
            f"{name} must be a real number (int, float, numpy scalar or 0-d tensor), got "
            f"{type(value).__name__}: {value!r}"
        )
    result = float(number)
    if not math.isfinite(result):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return result


def as_vector(
    vector: VectorLike,
    *,
    name: str = "vector",
    width: int | None = None,
    direction: bool = False,
) -> torch.Tensor:
    """Validate and return a 1-D fp32 CPU copy of ``vector``.

    ``direction=True`` also rejects zero-norm vectors (a direction must have one) and returns
    the unit vector.

    Example:
        >>> as_vector([3.0, 4.0], direction=True).tolist()
        [0.6000000238418579, 0.800000011920929]
    """
    if isinstance(vector, torch.Tensor):
        tensor = vector.detach()
    else:
        try:
            array = np.asarray(vector)
            if array.dtype.kind == "O":  # e.g. a list of 0-d tensors
                array = np.asarray(vector, dtype=np.float64)
            if array.dtype.kind not in "biufc":
                raise TypeError(f"not numbers: dtype {array.dtype}")
            tensor = torch.as_tensor(array)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"{name} must be a 1-D tensor, array or list of floats, got {type(vector).__name__}"
            ) from exc
    if tensor.is_complex():
        check_real(tensor, name)
    if tensor.dim() != 1:
        raise ValueError(
            f"{name} must be 1-D [hidden], got shape {tuple(tensor.shape)}. "
            "Pass one vector per hook (index it, e.g. vectors[layer]), or use a multi-vector hook."
        )
    if not tensor.is_floating_point():
        tensor = tensor.double()
    tensor = tensor.to(device="cpu", dtype=torch.float32).clone()
    if width is not None and tensor.shape[0] != width:
        raise ValueError(
            f"{name} has length {tensor.shape[0]} but the hooked activations are {width} wide. "
            "Use a vector extracted from this model at this component."
        )
    if not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"{name} contains {bad} NaN/inf values; it must be finite")
    if direction:
        norm = float(tensor.norm())
        if norm < 1e-8 or not math.isfinite(norm):
            raise ValueError(
                f"{name} is a zero vector (norm {norm:.3g}); a direction needs a nonzero norm"
            )
        tensor = tensor / norm
    return tensor


def check_width(h: torch.Tensor, vector: torch.Tensor, where: str, name: str = "vector") -> None:
    """Fail with a clear message when activations and vector widths differ at forward time."""
    if h.shape[-1] != vector.shape[-1]:
        raise ValueError(
            f"{name} has length {vector.shape[-1]} but the activations at {where!r} are "
            f"{h.shape[-1]} wide; use a vector extracted from this model at this component"
        )
