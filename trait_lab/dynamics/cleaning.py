"""Cleaning projections of massive dims, display modes, smoothing and centring (pure functions).

Massive dims (see :mod:`trait_lab.dynamics.massive`) add a fixed bias to every projection ``s =
h·v̂`` and dominate every norm ``‖h‖``. Given the per-token values ``h[dims]`` of the dims to
remove, :func:`clean_projection` returns ``(h with those dims zeroed)·v̂`` and :func:`clean_norms`
the norm of that zeroed ``h`` — without needing the full hidden states. With the full hidden
states at hand, :func:`trait_lab.math.remove_massive_dims` zeroes the dims themselves; both
check ``dims`` with :func:`trait_lab.math.check_dims`.

Every function takes numpy arrays or torch tensors (computed in float64) and returns the same
kind it got as ``scores``/``values``.

Example:
    >>> import numpy as np
    >>> h = np.array([[1.0, 100.0], [2.0, -50.0]]); v = np.array([0.6, 0.8])
    >>> clean_projection(h @ v, h[:, [1]], v, [1]).round(6).tolist()
    [0.6, 1.2]
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from trait_lab.math.massive import check_dims

__all__ = [
    "CLEAN_LABELS",
    "CLEAN_OPTIONS",
    "MODES",
    "apply_mode",
    "center",
    "check_clean_option",
    "clean_norms",
    "clean_projection",
    "dims_to_clean",
    "smooth",
]

CLEAN_OPTIONS: tuple[str, ...] = ("none", "top5", "all")
"""The keys of the "Clean" choices: ``"none"``, ``"top5"`` (recommended: dims among the 5 largest
of at least 3 layers) and ``"all"`` (every calibration candidate)."""

CLEAN_LABELS: dict[str, str] = {
    "none": "No cleaning",
    "top5": "Top 5, 3+ layers",
    "all": "All candidates",
}
"""Clean option key → the label the trait-dynamics view shows for it (only the view shows it)."""

MODES: tuple[str, ...] = ("raw", "normalized", "cosine")

ArrayT = TypeVar("ArrayT", bound="np.ndarray | torch.Tensor")


def _np(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"{name} must be a numeric array or tensor, got {type(x).__name__}"
        ) from exc


def _like(result: np.ndarray, ref: Any) -> Any:
    if isinstance(ref, torch.Tensor):
        dtype = ref.dtype if ref.is_floating_point() else torch.float64
        return torch.from_numpy(result).to(device=ref.device, dtype=dtype)
    return result


def check_clean_option(option: str) -> str:
    """``option`` if it is a key of :data:`CLEAN_OPTIONS`; else a ``ValueError`` that names it,
    the keys, and the key to pass when ``option`` is a UI label of :data:`CLEAN_LABELS`.

    Example:
        >>> check_clean_option("top5")
        'top5'
        >>> check_clean_option("All candidates")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: unknown clean option 'All candidates'; ... pass clean option 'all' instead)
    """
    if option in CLEAN_OPTIONS:
        return option
    message = f"unknown clean option {option!r}; choose one of {list(CLEAN_OPTIONS)}"
    key = next((k for k, label in CLEAN_LABELS.items() if label == option), None)
    if key is not None:
        message += f" ({option!r} is the label the view shows; pass clean option {key!r} instead)"
    raise ValueError(message)


def dims_to_clean(calibration: dict[str, Any], option: str) -> list[int]:
    """The dims to remove for a "Clean" option, from a
    :func:`~trait_lab.dynamics.massive.load_calibration` record.

    ``"top5"`` = dims among the 5 largest of at least 3 layers; ``"all"`` = the calibration's
    ``candidates``; ``"none"`` = none. Any other value raises (see :func:`check_clean_option`).

    Example:
        >>> cal = {"layers": [{"top_dims": [7, 1, 2, 3, 4]}] * 3, "candidates": [7, 9]}
        >>> dims_to_clean(cal, "top5"), dims_to_clean(cal, "all")
        ([1, 2, 3, 4, 7], [7, 9])
    """
    check_clean_option(option)
    if option == "none":
        return []
    if option == "all":
        return sorted(int(d) for d in calibration["candidates"])
    counts: dict[int, int] = {}
    for entry in calibration["layers"]:
        for d in entry["top_dims"][:5]:
            counts[int(d)] = counts.get(int(d), 0) + 1
    return sorted(d for d, n in counts.items() if n >= 3)


def _check_dims(dims: Sequence[int], width: int | None, n_values: int) -> list[int]:
    out = check_dims(dims, width)
    if len(out) != n_values:
        raise ValueError(
            f"dim_values has {n_values} columns but {len(out)} dims were given; pass "
            "dim_values = h[..., dims] with one column per dim"
        )
    return out


def clean_projection(scores: ArrayT, dim_values: Any, vector: Any, dims: Sequence[int]) -> ArrayT:
    """``s − Σ_{d∈dims} h_d v̂_d``: the projection with the massive dims' contribution removed.

    Args:
        scores: Raw projections ``h·v̂``, shape ``[..., tokens]``.
        dim_values: ``h[..., dims]``, shape ``[..., tokens, len(dims)]``.
        vector: The trait vector ``[hidden]`` (normalized here, so a unit vector is unchanged).
        dims: The removed dims, in the column order of ``dim_values``.

    Example:
        >>> clean_projection(np.array([5.0]), np.array([[3.0]]), np.array([1.0, 0.0]), [0])
        array([2.])
    """
    s, vals, v = _np(scores, "scores"), _np(dim_values, "dim_values"), _np(vector, "vector")
    if v.ndim != 1:
        raise ValueError(f"vector must be 1-D [hidden], got shape {v.shape}")
    norm = float(np.linalg.norm(v))
    if norm == 0 or not np.isfinite(norm):
        raise ValueError(f"vector has norm {norm}; a direction needs a finite nonzero norm")
    if vals.shape[:-1] != s.shape or vals.ndim != s.ndim + 1:
        raise ValueError(
            f"dim_values shape {vals.shape} does not match scores shape {s.shape}; expected "
            f"{(*s.shape, len(dims))}"
        )
    idx = _check_dims(dims, v.shape[0], vals.shape[-1])
    return _like(s - vals @ (v[idx] / norm), scores)


def clean_norms(norms: ArrayT, dim_values: Any, dims: Sequence[int]) -> ArrayT:
    """``sqrt(‖h‖² − Σ_{d∈dims} h_d²)``, clamped at 0: the norm with the dims removed.

    Example:
        >>> clean_norms(np.array([5.0]), np.array([[4.0]]), [3])
        array([3.])
    """
    n, vals = _np(norms, "norms"), _np(dim_values, "dim_values")
    if vals.shape[:-1] != n.shape or vals.ndim != n.ndim + 1:
        raise ValueError(
            f"dim_values shape {vals.shape} does not match norms shape {n.shape}; expected "
            f"{(*n.shape, len(dims))}"
        )
    _check_dims(dims, None, vals.shape[-1])
    return _like(np.sqrt(np.clip(n**2 - (vals**2).sum(-1), 0.0, None)), norms)


def _mask(mask: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    m = np.asarray(mask.detach().cpu() if isinstance(mask, torch.Tensor) else mask, dtype=bool)
    if m.shape != shape and m.shape != shape[-1:]:
        raise ValueError(f"{name} has shape {m.shape}; expected {shape} or {shape[-1:]}")
    m = np.broadcast_to(m, shape)
    if not m.any(axis=-1).all():
        raise ValueError(f"{name} selects no tokens (in some row); it must select at least one")
    return m


def apply_mode(scores: ArrayT, norms: Any, mode: str, response_mask: Any = None) -> ArrayT:
    """Scale projections: ``raw`` (h·v̂), ``normalized`` (÷ mean norm over response tokens),
    ``cosine`` (÷ each token's norm; a zero norm gives 0).

    ``response_mask`` (bool ``[..., tokens]`` or ``[tokens]``) picks the tokens averaged by
    ``normalized``; ``None`` means all tokens. Averages run over the last axis.

    Example:
        >>> apply_mode(np.array([2.0, 4.0]), np.array([1.0, 4.0]), "cosine").tolist()
        [2.0, 1.0]
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {list(MODES)}")
    s = _np(scores, "scores")
    if mode == "raw":
        return _like(s.copy(), scores)
    n = _np(norms, "norms")
    if n.shape != s.shape:
        raise ValueError(f"norms shape {n.shape} must equal scores shape {s.shape}")
    if mode == "cosine":
        safe = np.where(n > 0, n, 1.0)
        return _like(np.where(n > 0, s / safe, 0.0), scores)
    m = np.ones(s.shape, bool) if response_mask is None else _mask(response_mask, s.shape, "mask")
    mean = (n * m).sum(-1, keepdims=True) / m.sum(-1, keepdims=True)
    if not (mean > 0).all():
        raise ValueError("the mean response norm is zero; cannot normalize")
    return _like(s / mean, scores)


def smooth(values: ArrayT, window: int, boundary: int | None = None) -> ArrayT:
    """Centred moving average over the last axis that never crosses ``boundary``.

    Tokens ``[0, boundary)`` (prompt) and ``[boundary, T)`` (response) are smoothed separately;
    near a segment's edge the window shrinks to the tokens available. ``window`` must be odd.

    Example:
        >>> smooth(np.array([0.0, 0.0, 9.0, 9.0]), 3, boundary=2).tolist()
        [0.0, 0.0, 9.0, 9.0]
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 1 or window % 2 == 0:
        raise ValueError(f"window must be a positive odd int, got {window!r}")
    x = _np(values, "values")
    if x.ndim == 0:
        raise ValueError("values must have a token axis")
    total = x.shape[-1]
    if boundary is not None and not 0 <= boundary <= total:
        raise ValueError(f"boundary {boundary} is outside [0, {total}]")
    out = np.empty_like(x)
    half = window // 2
    cuts = [0, total] if boundary is None else [0, boundary, total]
    for start, stop in itertools.pairwise(cuts):
        if stop <= start:
            continue
        seg = x[..., start:stop]
        csum = np.concatenate([np.zeros((*seg.shape[:-1], 1)), np.cumsum(seg, -1)], -1)
        idx = np.arange(stop - start)
        lo, hi = np.maximum(idx - half, 0), np.minimum(idx + half + 1, stop - start)
        out[..., start:stop] = (csum[..., hi] - csum[..., lo]) / (hi - lo)
    return _like(out, values)


def center(values: ArrayT, mask: Any = None) -> ArrayT:
    """Subtract the mean over the last axis (over the ``mask``-selected tokens when given).

    Example:
        >>> center(np.array([1.0, 2.0, 6.0]), mask=[True, True, False]).tolist()
        [-0.5, 0.5, 4.5]
    """
    x = _np(values, "values")
    m = np.ones(x.shape, bool) if mask is None else _mask(mask, x.shape, "mask")
    mean = (x * m).sum(-1, keepdims=True) / m.sum(-1, keepdims=True)
    return _like(x - mean, values)
