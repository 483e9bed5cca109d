"""How large the residual stream is at each layer, for choosing steering coefficients.

A steering coefficient is in residual-stream units, and those grow with depth (on the default
model from ~40 at layer 0 to ~600 at layer 27). Worse, a few *massive* dimensions make the
first token's norm 100x the rest (~22,000 from layer 12 on), so a plain mean norm is useless.
``typical_norms`` takes the median per-token norm over ordinary tokens — padding and each
sequence's first token excluded — which is the scale a steering vector competes with.
Expressing a coefficient as a fraction of it (``0.3`` is a firm push on SmolLM2) makes one
setting carry over between layers and models.

Example:
    >>> from trait_lab.testing import tiny_model, tiny_batch
    >>> norms = typical_norms(tiny_model(), tiny_batch(2, 6))
    >>> sorted(norms)
    [0, 1, 2]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from trait_lab.hooks import MODES, MultiLayerCapture
from trait_lab.models.architectures import input_device


def typical_norms(
    model: nn.Module,
    batch: Mapping[str, torch.Tensor] | Sequence[str],
    layers: int | Iterable[int] | None = None,
    component: str = "residual",
    *,
    tokenizer: Any = None,
) -> dict[int, float]:
    """Median per-token L2 norm at each layer over real tokens, first tokens excluded.

    Args:
        model: the model.
        batch: tokenizer output with ``input_ids`` (and ``attention_mask`` when padded), or
            a list of texts together with ``tokenizer``.
        layers: which layers (``None`` means all).
        component: which component to measure.
        tokenizer: needed when ``batch`` is a list of texts.
    """
    acts, keep = _ordinary_tokens(model, batch, layers, component, tokenizer)
    return {
        layer: float(h.float().norm(dim=-1)[keep.to(h.device)].median())
        for layer, h in acts.items()
    }


def typical_cosines(
    model: nn.Module,
    batch: Mapping[str, torch.Tensor] | Sequence[str],
    vectors: Mapping[int, torch.Tensor],
    component: str = "residual",
    *,
    tokenizer: Any = None,
    quantile: float = 0.99,
) -> dict[int, float]:
    """The ``quantile`` of |cosine| between ordinary tokens and ``vectors[layer]``, per layer.

    Measured on the same tokens as :func:`typical_norms` (real tokens, first ones excluded):
    how far a trait's cosine reaches on everyday text — a fixed colour scale for it that does
    not depend on any one run.

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> batch = {"input_ids": torch.tensor([[1, 2, 3, 4]])}
        >>> scale = typical_cosines(tiny_model(), batch, {1: torch.ones(32)})
        >>> 0 < scale[1] <= 1
        True
    """
    if not vectors:
        raise ValueError("typical_cosines needs {layer: vector}; got no vectors")
    if not 0 < quantile <= 1:
        raise ValueError(f"quantile must be in (0, 1], got {quantile!r}; e.g. 0.99")
    acts, keep = _ordinary_tokens(model, batch, sorted(vectors), component, tokenizer)
    out = {}
    for layer, h in acts.items():
        v = vectors[layer].to(h.device, torch.float32)
        cos = torch.nn.functional.cosine_similarity(h.float(), v.expand_as(h.float()), dim=-1)
        out[layer] = float(cos.abs()[keep.to(h.device)].quantile(quantile))
    return out


def _ordinary_tokens(
    model: nn.Module,
    batch: Mapping[str, torch.Tensor] | Sequence[str],
    layers: int | Iterable[int] | None,
    component: str,
    tokenizer: Any,
) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
    """Each layer's ``[batch, seq, hidden]`` activations and the mask of ordinary tokens."""
    if isinstance(batch, Sequence) and not isinstance(batch, Mapping):
        if tokenizer is None:
            raise TypeError("pass tokenizer= to measure norms on a list of texts")
        batch = tokenizer(list(batch), return_tensors="pt", padding=True)
    assert isinstance(batch, Mapping)
    ids = batch["input_ids"]
    mask = batch.get("attention_mask")
    if mask is None:
        mask = torch.ones_like(ids)
    keep = mask.bool().clone()
    first = keep.float().argmax(dim=1)  # each row's first real token (left or right padding)
    keep[torch.arange(keep.shape[0]), first] = False
    if not bool(keep.any()):
        raise ValueError(
            "every sequence has a single token, and first tokens are excluded (massive "
            "activations live there); pass longer texts"
        )
    device = input_device(model)
    inputs = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
    with MultiLayerCapture(model, layers, component) as cap, torch.no_grad():
        model(**inputs)
    return cap.get_all(), keep


def coefficient_for(
    norms: Mapping[int, float], layer: int, fraction: float, mode: str = "add"
) -> float:
    """The steering coefficient a user-facing ``fraction`` stands for: the one rule.

    For ``add``, ``cap`` and ``ceiling`` it is ``fraction`` × the typical norm at ``layer``
    (a signed amount in residual-stream units); for ``ablate`` the fraction *is* the strength
    (1 removes the direction, see :mod:`trait_lab.hooks.edits`), so no norm is involved.

    Example:
        >>> coefficient_for({12: 150.0}, 12, -0.3)
        -45.0
        >>> coefficient_for({}, 12, 0.5, mode="ablate")
        0.5
    """
    if mode not in MODES:
        raise ValueError(f"unknown steering mode {mode!r}; choose one of {list(MODES)}")
    if mode == "ablate":
        return float(fraction)
    if layer not in norms:
        raise KeyError(
            f"no typical norm measured at layer {layer} (measured: {sorted(norms)}); measure it "
            "with typical_norms(model, texts, layers=[...], tokenizer=tokenizer)"
        )
    return float(fraction) * float(norms[layer])
