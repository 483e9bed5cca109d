"""Exactness or speed, chosen explicitly: the weights a backend computes with, and how far
its next-token choices stay from fp32's.

``"fp32"`` is the reference: the model as loaded. ``"bf16"`` computes with a bfloat16 copy of
the weights (half the bytes read per token); steering, capture and projection still compute
in float32 on the hooked activations (``hooks.base.fp32_apply``), but the activations they see
come from bf16 arithmetic, so tokens can differ from fp32's. Whether it is faster depends on
the CPU: with native bf16 (AVX-512 BF16 or AMX) the decode loop measured 1.6x (eager) on the
default model; without it, bf16 matrix products are emulated and batches get slower
(``bench/bench_decode.py``, ``docs/speed.md``). :func:`agreement` measures what the copy costs
in fidelity, on the prompts you care about.

Example:
    >>> from trait_lab.testing import tiny_model
    >>> model = tiny_model()
    >>> at_precision(model, "bf16").dtype, model.dtype  # a copy; the model is unchanged
    (torch.bfloat16, torch.float32)
"""

from __future__ import annotations

import copy
import logging
import weakref
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from trait_lab.generation.generator import HookedGenerator
from trait_lab.models import tokens
from trait_lab.models.architectures import input_device

__all__ = [
    "PRECISIONS",
    "Agreement",
    "Precision",
    "agreement",
    "at_precision",
    "check_precision",
    "native_bf16",
    "precision_of",
]

Precision = Literal["fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
logger = logging.getLogger(__name__)
_COPIES: weakref.WeakKeyDictionary[nn.Module, dict[str, nn.Module]] = weakref.WeakKeyDictionary()


def check_precision(precision: object) -> Precision:
    """``precision`` if it is one of :data:`PRECISIONS`, else a ``ValueError`` naming them."""
    if precision not in PRECISIONS:
        raise ValueError(
            f"precision={precision!r} is not one of {', '.join(map(repr, PRECISIONS))}; use "
            "'fp32' for the exact reference or 'bf16' for speed (see docs/speed.md)"
        )
    return precision  # type: ignore[return-value]


def native_bf16() -> bool:
    """Whether this machine computes bf16 natively (a CUDA device with bf16, or a CPU with
    AVX-512 BF16 / AMX); elsewhere bf16 is emulated and usually slower than fp32.

    Example:
        >>> isinstance(native_bf16(), bool)
        True
    """
    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            flags = info.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def precision_of(model: nn.Module) -> str:
    """What ``model`` computes in, as a short label (``fp32``, ``bf16``, ``fp16``): the truth
    a status line shows, whatever precision was asked for.

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> precision_of(tiny_model()), precision_of(tiny_model(dtype=torch.bfloat16))
        ('fp32', 'bf16')
    """
    dtype = next(iter(model.parameters())).dtype
    names = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
    return names.get(dtype, str(dtype).removeprefix("torch."))


def at_precision(model: nn.Module, precision: str) -> nn.Module:
    """The model to compute with at ``precision``: ``model`` itself for ``"fp32"`` (the
    reference: the model as loaded, never converted) or when its weights already are in that
    precision, else a converted copy (made once per model and kept while the model lives).

    Raises:
        ValueError: an unknown precision, or a model spread over devices (``device_map``):
            load that one in the dtype you want instead (``load_model(..., dtype=...)``).
    """
    dtype = _DTYPES[check_precision(precision)]
    if precision == "fp32" or model.dtype == dtype:
        return model
    if getattr(model, "hf_device_map", None):
        raise ValueError(
            f"precision={precision!r} would copy a model spread over devices (device_map); "
            f"load it in that precision instead: load_model(..., dtype=torch.{str(dtype)[6:]})"
        )
    copies = _COPIES.setdefault(model, {})
    if precision not in copies:
        if precision == "bf16" and not native_bf16():
            logger.warning(
                "precision='bf16': this machine has no native bf16 arithmetic (no AVX-512 BF16, "
                "AMX or CUDA bf16), so bf16 is emulated and may be slower than fp32, above all "
                "in batches; measure with bench/bench_decode.py or keep precision='fp32'"
            )
        copies[precision] = copy.deepcopy(model).to(dtype).eval()
    return copies[precision]


@dataclass(frozen=True)
class Agreement:
    """How a reduced-precision model's next-token choices compare with the fp32 reference's,
    teacher-forced on the reference's greedy continuations.

    ``top1``: share of positions with the same argmax; ``max_logit_diff``: the largest
    |logit difference| over all positions and the vocabulary; ``positions``: how many were
    compared; ``same_greedy``: rows whose own greedy continuation equals the reference's.
    """

    top1: float
    max_logit_diff: float
    positions: int
    same_greedy: int
    rows: int

    def __str__(self) -> str:
        return (
            f"top-1 agreement {self.top1:.3f} over {self.positions} positions, max |logit "
            f"difference| {self.max_logit_diff:.3g}, same greedy reply {self.same_greedy}/"
            f"{self.rows}"
        )


def agreement(
    reference: nn.Module,
    other: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int = 32,
    generator: HookedGenerator | None = None,
) -> Agreement:
    """Greedy-decode ``max_new_tokens`` with ``reference`` (EOS off), then compare both
    models' logits at every generated position (teacher-forced) and their greedy replies
    (``other``'s from ``generator`` when given, e.g. its compiled one; it must run ``other``).

    Example:
        >>> from trait_lab.testing import tiny_model, tiny_batch
        >>> model, batch = tiny_model(), tiny_batch(2, 5)
        >>> agreement(model, model, batch["input_ids"], batch["attention_mask"], 4).top1
        1.0
    """
    ids, mask = input_ids, attention_mask
    want = HookedGenerator(reference).generate(ids, mask, max_new_tokens, eos_token_id=[])
    if generator is not None and generator.model is not other:
        raise ValueError("agreement: generator= must generate with `other` (generator.model)")
    got = (generator or HookedGenerator(other)).generate(ids, mask, max_new_tokens, eos_token_id=[])
    new = torch.tensor([r.token_ids for r in want])
    seqs = torch.cat([ids, new], dim=1)
    full = torch.cat([mask, mask.new_ones(new.shape)], dim=1)
    logits = [_logits(m, seqs, full)[:, ids.shape[1] - 1 : -1] for m in (reference, other)]
    same = logits[0].argmax(-1) == logits[1].argmax(-1)
    return Agreement(
        top1=float(same.float().mean()),
        max_logit_diff=float((logits[0] - logits[1]).abs().max()),
        positions=int(same.numel()),
        same_greedy=sum(a.token_ids == b.token_ids for a, b in zip(want, got, strict=True)),
        rows=len(want),
    )


def _logits(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> Any:
    device = input_device(model)
    positions = tokens.padded_positions(mask)
    with torch.no_grad():
        out = model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=positions.to(device),
        )
    return out.logits.float().cpu()
