"""Argument checks shared by the math modules: tensors in, clear errors out.

Each helper names the argument it checks, its shape and the fix. One rule decides what counts
as zero (:func:`zero_floor`): a *direction* (a trait vector, a confound, a basis) that small is
an error, while an *activation row* that small simply has no direction and scores 0.

Example:
    >>> import torch
    >>> unit_rows(torch.tensor([[3.0, 4.0]]), "v").tolist()
    [[0.6000000238418579, 0.800000011920929]]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeAlias

import numpy as np
import torch

TensorLike: TypeAlias = "torch.Tensor | np.ndarray"
VectorSet: TypeAlias = "torch.Tensor | np.ndarray | Mapping[str, torch.Tensor | np.ndarray]"


def tensor_arg(x: object, name: str, ndims: tuple[int, ...] | None, shape: str) -> torch.Tensor:
    """``x`` as a checked float tensor: float64 stays float64, every other dtype is float32.

    ``ndims`` lists the allowed numbers of dimensions; ``None`` allows any number from 1 up.
    """
    try:
        t = torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(
            f"{name} must be a torch tensor or numpy array of numbers, got {type(x).__name__}"
        ) from err
    check_real(t, name)
    if (t.dim() < 1) if ndims is None else (t.dim() not in ndims):
        raise ValueError(f"{name} must have shape {shape}, got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(t.shape)}); pass at least one value")
    t = t.to(torch.float64 if t.dtype == torch.float64 else torch.float32)
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(
            f"{name} contains {bad} NaN or inf value(s) out of {t.numel()}; "
            "drop or mask those entries first"
        )
    return t


def check_real(t: torch.Tensor, name: str) -> None:
    """Refuse a complex tensor: every trait_lab vector and activation is real.

    Example:
        >>> check_real(torch.ones(2), "vector")
    """
    if t.is_complex():
        raise TypeError(
            f"{name} is complex ({t.dtype}); pass real values (e.g. x.real, if the imaginary "
            "part is known to be zero)"
        )


def common_dtype(*tensors: torch.Tensor) -> list[torch.Tensor]:
    """Cast to one dtype: float64 if any input is float64, else float32."""
    dtype = torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
    return [t.to(dtype) for t in tensors]


def check_same_hidden(a: torch.Tensor, a_name: str, b: torch.Tensor, b_name: str) -> None:
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(
            f"{a_name} has shape {tuple(a.shape)} but {b_name} has shape {tuple(b.shape)}: "
            "their last dimension (the hidden size) must match; check both come from the "
            "same model and layer"
        )


def zero_floor(dtype: torch.dtype) -> float:
    """Norms at or below this count as zero: ``sqrt(tiny)`` of ``dtype``, where squares underflow.

    Example:
        >>> f"{zero_floor(torch.float32):.2g}"
        '1.1e-19'
    """
    return float(torch.finfo(dtype).tiny) ** 0.5


def nonzero_norm(v: torch.Tensor, name: str) -> torch.Tensor:
    """The norm of the whole of ``v`` (in ``v``'s dtype); an error if ``v`` has no direction.

    All zeros, a norm at or below :func:`zero_floor` (rounding noise, not a direction) and a
    norm that overflows are each a ``ValueError`` naming ``name``.

    Example:
        >>> nonzero_norm(torch.tensor([3.0, 4.0]), "vector")
        tensor(5.)
    """
    norm = torch.linalg.vector_norm(v.double())
    out = norm.to(v.dtype)
    if not bool(torch.isfinite(out)):
        raise ValueError(
            f"{name} has norm {float(norm):.3g}, not a finite {v.dtype}; pass finite values "
            "of ordinary scale (drop NaN/inf entries, or rescale it)"
        )
    if not bool(norm > 0):
        raise ValueError(f"{name} is all zeros, so it has no direction; pass a non-zero vector")
    floor = zero_floor(v.dtype)
    if not bool(norm > floor):
        raise ValueError(
            f"{name} has norm {float(norm):.3g}, at or below {floor:.3g} where {v.dtype} "
            "rounds it to zero, so its direction is noise; pass a non-zero vector of ordinary "
            "scale (rescale it, or check how it was computed)"
        )
    return out


def row_norms(x: torch.Tensor) -> torch.Tensor:
    """Norms of the rows of ``x`` ``[..., d]`` → ``[...]``, a zero row's (at or below
    :func:`zero_floor`) replaced by 1 as sklearn does, so dividing by it leaves a zero row's
    scores at 0 instead of NaN.

    Example:
        >>> row_norms(torch.tensor([[3.0, 4.0], [0.0, 0.0]]))
        tensor([5., 1.])
    """
    norms = torch.linalg.vector_norm(x, dim=-1)
    return torch.where(norms <= zero_floor(x.dtype), 1.0, norms)


def stack_named(vectors: object, name: str) -> tuple[torch.Tensor, list[str] | None]:
    """A ``[N, d]`` matrix from a matrix or a ``{name: [d]}`` dict (rows in dict order)."""
    if not isinstance(vectors, Mapping):
        return tensor_arg(vectors, name, (2,), "[N, d] (or a dict of [d] vectors)"), None
    if not vectors:
        raise ValueError(f"{name} is an empty dict; pass at least one named vector")
    rows = [tensor_arg(v, f"{name}[{k!r}]", (1,), "[d]") for k, v in vectors.items()]
    keys = [str(k) for k in vectors]
    for key, row in zip(keys, rows, strict=True):
        check_same_hidden(row, f"{name}[{key!r}]", rows[0], f"{name}[{keys[0]!r}]")
    return torch.stack(common_dtype(*rows)), keys


def unit_rows(matrix: torch.Tensor, name: str, labels: list[str] | None = None) -> torch.Tensor:
    """Rows scaled to unit length; a zero row (see :func:`zero_floor`) is an error naming it."""
    norms = torch.linalg.vector_norm(matrix, dim=-1, keepdim=True)
    zero = (norms[:, 0] <= zero_floor(matrix.dtype)).nonzero().flatten().tolist()
    if zero:
        which = [labels[i] for i in zero] if labels else zero
        raise ValueError(
            f"{name} has all-zero vector(s) at {which}: a zero vector has no direction; "
            "drop them or pass non-zero vectors"
        )
    return matrix / norms
