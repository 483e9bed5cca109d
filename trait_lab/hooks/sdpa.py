"""Attention weights of ``F.scaled_dot_product_attention`` calls, which SDPA never builds.

A plain torch model (KempnerForge's ``Transformer``, say) has no switch to eager attention, but
its attention modules call ``torch.nn.functional.scaled_dot_product_attention`` with their own
``q``, ``k``, mask, causal flag and scale. :func:`sdpa_weights` is the probability matrix that
call uses (``softmax(q·kᵀ·scale + mask)``, causal masking and grouped-query heads as torch
defines them); :class:`SdpaTap` wraps the torch function while it is open and hands each call's
weights to the listener of the running thread, then calls the real function, so outputs are
unchanged. A module that computes attention without calling it through
``torch.nn.functional`` (its own matmuls, or a name bound at import) is never seen — callers
must check that a call arrived.

Example:
    >>> q, k = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4)
    >>> w = sdpa_weights(q, k, is_causal=True)
    >>> tuple(w.shape), bool(w.sum(-1).allclose(torch.ones(1, 2, 3))), float(w[0, 0, 0, 2])
    ((1, 2, 3, 3), True, 0.0)
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["SdpaTap", "sdpa_weights", "set_listener"]

#: ``listener(weights, dropout_p)`` of the running thread, or None (calls pass through).
Listener = Callable[[torch.Tensor, float], None]
_LOCAL = threading.local()


def sdpa_weights(
    query: torch.Tensor,
    key: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> torch.Tensor:
    """The ``[..., heads, q, k]`` probabilities ``scaled_dot_product_attention`` applies to ``v``.

    Computed in float32 before dropout. A boolean ``attn_mask`` keeps the True entries, a float
    one is added to the scores; ``is_causal`` keeps ``j <= i`` (top-left aligned, as torch
    does). A query that may attend to no key gets all-zero weights instead of NaN.

    Example:
        >>> w = sdpa_weights(torch.ones(1, 1, 2, 2), torch.ones(1, 1, 2, 2))
        >>> w.tolist()
        [[[[0.5, 0.5], [0.5, 0.5]]]]
    """
    q, k = query.float(), key.float()
    if enable_gqa and k.size(-3) != q.size(-3):
        k = k.repeat_interleave(q.size(-3) // k.size(-3), dim=-3)
    factor = 1.0 / math.sqrt(q.size(-1)) if scale is None else float(scale)
    scores = (q @ k.transpose(-2, -1)) * factor
    if is_causal:
        keep = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attn_mask.to(q.device), float("-inf"))
        else:
            scores = scores + attn_mask.to(q.device, torch.float32)
    return torch.softmax(scores, dim=-1).nan_to_num(0.0)


def set_listener(listener: Listener | None) -> None:
    """Route this thread's tapped SDPA calls to ``listener`` (``None``: let them pass)."""
    _LOCAL.listener = listener


class SdpaTap:
    """Wrap ``torch.nn.functional.scaled_dot_product_attention`` while open (a context manager).

    Each call made while this thread has a listener (:func:`set_listener`) first hands the
    listener its weights (:func:`sdpa_weights`) and ``dropout_p``; every call then runs the real
    function with the same arguments. Closing restores the function (taps nest, last in first out).

    Example:
        >>> seen = []
        >>> with SdpaTap():
        ...     set_listener(lambda w, p: seen.append(tuple(w.shape)))
        ...     _ = F.scaled_dot_product_attention(*torch.randn(3, 1, 2, 4, 8))
        ...     set_listener(None)
        >>> seen
        [(1, 2, 4, 4)]
    """

    def __init__(self) -> None:
        self._original: Callable[..., torch.Tensor] | None = None
        self._wrapper: Callable[..., torch.Tensor] | None = None

    def __enter__(self) -> SdpaTap:
        original = F.scaled_dot_product_attention

        def tapped(
            query: torch.Tensor,
            key: torch.Tensor,
            value: torch.Tensor,
            attn_mask: torch.Tensor | None = None,
            dropout_p: float = 0.0,
            is_causal: bool = False,
            scale: float | None = None,
            **extra: Any,
        ) -> torch.Tensor:
            listener = getattr(_LOCAL, "listener", None)
            if listener is not None:
                gqa = bool(extra.get("enable_gqa", False))
                listener(sdpa_weights(query, key, attn_mask, is_causal, scale, gqa), dropout_p)
            return original(
                query,
                key,
                value,
                attn_mask=attn_mask,
                dropout_p=dropout_p,
                is_causal=is_causal,
                scale=scale,
                **extra,
            )

        self._original, self._wrapper = original, tapped
        F.scaled_dot_product_attention = tapped  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        if self._original is None:
            return
        if F.scaled_dot_product_attention is self._wrapper:
            F.scaled_dot_product_attention = self._original
        self._original = self._wrapper = None
