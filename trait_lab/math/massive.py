"""Removing massive dims: zero a few hidden dims of activations or vectors.

Massive dims (Sun et al. 2024; found by :mod:`trait_lab.dynamics.massive`) carry values 100–1000×
the rest and put a fixed bias into every projection and norm. :func:`remove_massive_dims` zeroes
them in a new tensor; :func:`check_dims` is the one check of a list of dims (ints, each once,
inside the hidden width), also used by :mod:`trait_lab.dynamics.cleaning`.

Example:
    >>> import torch
    >>> remove_massive_dims(torch.tensor([[1.0, 900.0, 2.0]]), [1])
    tensor([[1., 0., 2.]])
"""

from __future__ import annotations

import numbers
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

__all__ = ["check_dims", "remove_massive_dims"]


def check_dims(dims: Iterable[int], width: int | None = None, name: str = "dims") -> list[int]:
    """``dims`` as a list of Python ints, in the order given; refuses non-ints and repeats,
    and (when ``width`` is given) dims outside ``[0, width)``.

    Raises ``TypeError`` for a non-int (a bool, float or string included), ``ValueError`` for a
    dim listed twice and ``IndexError`` for a dim out of range; each names the bad values.

    Example:
        >>> check_dims([507, 247], width=576)
        [507, 247]
        >>> check_dims([1, 1])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: dims has duplicates [1] in [1, 1]; list each dim once
    """
    items: Any = dims
    if isinstance(items, torch.Tensor | np.ndarray):
        items = items.tolist() if items.ndim == 1 else [items]  # 0-d or 2-d: refused below
    if isinstance(items, str | bytes) or not isinstance(items, Iterable):
        raise TypeError(
            f"{name} must be a list of ints (hidden-dim indices), got {type(items).__name__} "
            f"{items!r}; pass e.g. [507, 247]"
        )
    out: list[int] = []
    for i, d in enumerate(items):
        if isinstance(d, bool) or not isinstance(d, numbers.Integral):
            raise TypeError(
                f"{name}[{i}] is {d!r} ({type(d).__name__}); dims must be ints (hidden-dim "
                "indices), e.g. [507, 247]"
            )
        out.append(int(d))
    repeated = sorted(d for d, n in Counter(out).items() if n > 1)
    if repeated:
        raise ValueError(f"{name} has duplicates {repeated} in {out}; list each dim once")
    if width is not None:
        bad = [d for d in out if not 0 <= d < width]
        if bad:
            raise IndexError(
                f"{name} {bad} are out of range for vectors of width {width}: allowed dims are "
                f"0..{width - 1}; take the dims from a calibration of this model"
            )
    return out


def remove_massive_dims(
    activations: torch.Tensor | np.ndarray, dims: Iterable[int]
) -> torch.Tensor:
    """A copy of ``activations`` (``[..., hidden]``, or a ``[hidden]`` vector) with ``dims`` zeroed.

    The input is never modified; the result keeps its dtype and device (numpy arrays become
    tensors). ``dims`` index the last axis (see :func:`check_dims` for the errors); ``[]``
    returns an unchanged copy. Projecting the result on a unit vector gives what
    :func:`~trait_lab.dynamics.cleaning.clean_projection` computes from ``h[..., dims]`` alone.

    Example:
        >>> import torch
        >>> h = torch.tensor([[0.5, 300.0, -1.0], [2.0, -250.0, 1.0]])
        >>> remove_massive_dims(h, [1]).tolist()
        [[0.5, 0.0, -1.0], [2.0, 0.0, 1.0]]
    """
    if isinstance(activations, torch.Tensor):
        t = activations
    else:
        try:
            t = torch.as_tensor(activations)
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(
                "activations must be a torch tensor or numpy array of numbers, got "
                f"{type(activations).__name__}"
            ) from err
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"activations has dtype {t.dtype}; pass real-valued activations")
    if t.dim() == 0:
        raise ValueError(
            "activations is a scalar; pass [..., hidden] activations or a [hidden] vector"
        )
    idx = check_dims(dims, t.shape[-1])
    out = t.clone()
    if idx:
        out[..., idx] = 0
    return out
