"""Attention capture: each layer's attention probabilities ``[batch, heads, q, k]``.

SDPA and flash attention never build the probability matrix, so a hook on their output finds
nothing. ``AttentionCapture`` switches the model to transformers' eager attention for the length
of its ``with`` block (the public ``model.set_attn_implementation``, present since
transformers 4.57), records the weights each attention module returns (the tensors HF's
``output_attentions=True`` reports) and restores the original implementation on exit, also after
an exception. Eager computes the same function as SDPA, so logits agree to fp32 rounding. A model
without that switch (a plain torch model such as KempnerForge's ``Transformer``) is captured through
its ``F.scaled_dot_product_attention`` calls instead (:mod:`trait_lab.hooks.sdpa`): each attention
module must make exactly one per forward, or the capture raises; its outputs are unchanged.

The weights are post-softmax and after masking (padding and future keys get 0), and after
attention dropout, which eval mode turns off. Eager holds one ``[batch, heads, q, k]`` matrix per
layer, so keep batches small on long inputs (``to_cpu=True`` moves captures off the GPU).

Example:
    >>> from trait_lab.testing import tiny_model, tiny_batch
    >>> model = tiny_model("llama")
    >>> with AttentionCapture(model, layers=[0, 2]) as att:
    ...     _ = model(**tiny_batch(2, 5))
    >>> att.get(2).shape
    torch.Size([2, 4, 5, 5])
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from trait_lab.hooks.base import HookContext
from trait_lab.hooks.sdpa import SdpaTap, set_listener
from trait_lab.models.architectures import find_layers, get_module, resolve_layers

EAGER = "eager"


def _implementation(model: nn.Module) -> Any:
    """The attention implementation a transformers model runs now (its config records it)."""
    return getattr(getattr(model, "config", None), "_attn_implementation", None)


def _snapshot(model: nn.Module) -> Any:
    """What ``set_attn_implementation`` needs to restore the current implementation(s)."""
    config = model.config
    subs = {
        key: getattr(getattr(config, key), "_attn_implementation", None)
        for key in getattr(config, "sub_configs", {})
        if getattr(config, key, None) is not None
    }
    top = _implementation(model)
    if all(value == top for value in subs.values()):
        return top
    return {"": top, **subs}


def _attention_path(model: nn.Module, layer: int) -> str:
    """Path of the self-attention module of block ``layer`` (its class name ends in Attention)."""
    prefix, blocks = find_layers(model)
    children = list(blocks[layer].named_children())
    found = [
        name
        for name, child in children
        if type(child).__name__.endswith("Attention") and "cross" not in name
    ]
    if len(found) != 1:
        raise ValueError(
            f"cannot tell the self-attention module of block {prefix}.{layer}: expected one child "
            f"whose class ends in 'Attention', found {found or 'none'} among "
            f"{[f'{n} ({type(c).__name__})' for n, c in children]}. AttentionCapture supports "
            "transformers models whose attention modules return (output, weights)."
        )
    return f"{prefix}.{layer}.{found[0]}"


def _stitch(calls: list[torch.Tensor], where: str) -> torch.Tensor:
    """Join a KV-cached run (prefill, then decode steps) into one ``[batch, heads, q, k]`` matrix.

    Call ``i`` must attend to every key so far (its key count is the query count up to and
    including it); keys a call did not see yet (the future) get weight 0, as causal masking
    gives them.
    """
    total = sum(call.shape[-2] for call in calls)
    seen = 0
    for i, call in enumerate(calls):
        seen += call.shape[-2]
        if call.shape[-1] != seen or call.shape[:2] != calls[0].shape[:2]:
            raise RuntimeError(
                f"cannot join the {len(calls)} forward calls captured at {where!r} into one "
                f"attention matrix: call {i} has shape {tuple(call.shape)}, but after {seen} "
                f"queries it should attend to {seen} keys with batch and heads "
                f"{tuple(calls[0].shape[:2])} (unrelated batches, or a sliding-window cache). "
                "Read them one by one with .calls(layer), or clear() between batches."
            )
    return torch.cat([F.pad(call, (0, total - call.shape[-1])) for call in calls], dim=-2)


class _WeightRecorder:
    """Forward hook on one attention module: keeps the weights of every forward call."""

    def __init__(self, where: str, to_cpu: bool, dtype: torch.dtype | None) -> None:
        self.where = where
        self.to_cpu = to_cpu
        self.dtype = dtype
        self.calls: list[torch.Tensor] = []

    def __call__(self, module: nn.Module, args: tuple, output: Any) -> None:
        weights = output[1] if isinstance(output, (tuple, list)) and len(output) > 1 else None
        if not isinstance(weights, torch.Tensor) or weights.dim() != 4:
            got = type(weights).__name__ if weights is None else repr(getattr(weights, "shape", ""))
            raise RuntimeError(
                f"the attention module {self.where!r} ({type(module).__name__}) returned {got} "
                f"as its attention weights under implementation {EAGER!r}, not a "
                "[batch, heads, q, k] tensor, so AttentionCapture cannot report them. Another "
                "hook may replace its output, or the module does not return weights; remove that "
                "hook, or compute the weights with model(..., output_attentions=True)."
            )
        self.keep(weights)

    def keep(self, weights: torch.Tensor) -> None:
        t = weights.detach()
        if self.dtype is not None:
            t = t.to(self.dtype)
        if self.to_cpu:
            t = t.to("cpu")
        elif t is weights:
            t = t.clone()
        self.calls.append(t)

    def get(self) -> torch.Tensor:
        if not self.calls:
            raise RuntimeError(
                f"no attention weights were captured at {self.where!r}: run a forward pass "
                "inside the `with` block"
            )
        return self.calls[0] if len(self.calls) == 1 else _stitch(self.calls, self.where)


class _SdpaRecorder(_WeightRecorder):
    """Pre- and post-hook on one attention module: the weights of its one SDPA call per forward."""

    def __init__(self, where: str, to_cpu: bool, dtype: torch.dtype | None) -> None:
        super().__init__(where, to_cpu, dtype)
        self._seen = 0

    def pre(self, module: nn.Module, args: tuple) -> None:
        self._seen = 0
        set_listener(self.listen)

    def listen(self, weights: torch.Tensor, dropout_p: float) -> None:
        if dropout_p > 0:
            raise RuntimeError(
                f"{self.where!r} called scaled_dot_product_attention with dropout_p={dropout_p}, "
                "so the weights applied are random; call model.eval() before capturing"
            )
        self._seen += 1
        self.keep(weights)

    def __call__(self, module: nn.Module, args: tuple, output: Any) -> None:
        set_listener(None)
        if self._seen != 1:
            if self._seen:
                del self.calls[-self._seen :]
            raise RuntimeError(
                f"the attention module {self.where!r} ({type(module).__name__}) made {self._seen} "
                "calls to torch.nn.functional.scaled_dot_product_attention in one forward, not "
                "one, so AttentionCapture cannot tell its attention weights. It captures modules "
                "that call F.scaled_dot_product_attention(q, k, v, ...) once (through the "
                "torch.nn.functional module, not a name imported from it), or transformers models."
            )


class AttentionCapture(HookContext):
    """Capture attention probabilities per layer, whatever implementation the model loaded.

    Args:
        model: a transformers causal LM, or any model whose attention modules call
            ``torch.nn.functional.scaled_dot_product_attention`` (see ``via``).
        layers: layer indices (negatives count back); ``None`` means every layer.
        to_cpu: move captures to CPU as they arrive.
        dtype: cast captures to this dtype.
        via: ``"eager"`` (switch a transformers model to eager attention), ``"sdpa"`` (weights
            from each attention module's ``F.scaled_dot_product_attention`` call), or
            ``"auto"``: eager for a transformers model, sdpa for any other.

    Raises ``RuntimeError`` at forward time when an attention module returns no weights, rather
    than report wrong numbers. Calls of a KV-cached generation are joined along ``q`` by
    ``get`` (future keys 0); ``calls(layer)`` gives them one by one.

    Example:
        >>> from trait_lab.testing import tiny_model, tiny_batch
        >>> model = tiny_model("gemma3")
        >>> with AttentionCapture(model) as att:
        ...     _ = model(**tiny_batch(1, 3))
        >>> att.get(0).sum(-1).allclose(torch.ones(1, 4, 3))
        True
    """

    def __init__(
        self,
        model: nn.Module,
        layers: int | Iterable[int] | None = None,
        *,
        to_cpu: bool = False,
        dtype: torch.dtype | None = None,
        via: str = "auto",
    ) -> None:
        super().__init__(model)
        setter = getattr(model, "set_attn_implementation", None)
        transformers_model = callable(setter) and _implementation(model) is not None
        if via not in ("auto", EAGER, "sdpa"):
            raise ValueError(f"via={via!r}: use 'auto', 'eager' or 'sdpa'")
        if via == EAGER and not transformers_model:
            raise TypeError(
                "AttentionCapture(via='eager') needs a transformers model (one with "
                f"config._attn_implementation and set_attn_implementation), got "
                f"{type(model).__name__}; use via='auto' or 'sdpa' for a model whose attention "
                "calls torch.nn.functional.scaled_dot_product_attention"
            )
        self.via = (EAGER if transformers_model else "sdpa") if via == "auto" else via
        self.layers = resolve_layers(model, layers)
        kind = _WeightRecorder if self.via == EAGER else _SdpaRecorder
        self._recorders = {
            layer: kind(_attention_path(model, layer), to_cpu, dtype) for layer in self.layers
        }
        self._set_implementation: Callable[[Any], Any] | None = setter if callable(setter) else None
        self._original: Any = None
        self._tap: SdpaTap | None = None

    def _attach(self) -> None:
        if self.via == "sdpa":
            self._tap = SdpaTap().__enter__()
            for rec in self._recorders.values():
                module = get_module(self.model, rec.where)
                self._add(module.register_forward_pre_hook(cast(_SdpaRecorder, rec).pre))
                self._add(module.register_forward_hook(rec))
            return
        setter = cast("Callable[[Any], Any]", self._set_implementation)
        original = _snapshot(self.model)
        setter(EAGER)
        self._original = original
        now = _implementation(self.model)
        if now != EAGER:
            raise RuntimeError(
                f"could not switch {type(self.model).__name__} from attention implementation "
                f"{original!r} to {EAGER!r} (it is {now!r}), so its attention weights cannot be "
                f"captured. Load the model with attn_implementation={EAGER!r} and use "
                "model(..., output_attentions=True)."
            )
        for recorder in self._recorders.values():
            module = get_module(self.model, recorder.where)
            self._add(module.register_forward_hook(recorder))

    def remove(self) -> None:
        """Remove the hooks and restore the model's attention implementation (idempotent)."""
        super().remove()
        if self._tap is not None:
            self._tap.__exit__(None, None, None)
            self._tap = None
            set_listener(None)
        if self._original is None or self._set_implementation is None:
            return
        original, self._original = self._original, None
        self._set_implementation(original)
        if _snapshot(self.model) != original:
            warnings.warn(
                f"AttentionCapture could not restore attention implementation {original!r} "
                f"(the model now runs {_snapshot(self.model)!r}); call "
                f"model.set_attn_implementation({original!r})",
                RuntimeWarning,
                stacklevel=2,
            )

    def _recorder(self, layer: int) -> _WeightRecorder:
        index = resolve_layers(self.model, layer)[0]  # raises when out of range
        recorder = self._recorders.get(index)
        if recorder is None:
            raise KeyError(f"layer {layer} was not captured; captured layers: {self.layers}")
        return recorder

    def get(self, layer: int) -> torch.Tensor:
        """``[batch, heads, q, k]`` attention probabilities of one layer."""
        return self._recorder(layer).get()

    def get_all(self) -> dict[int, torch.Tensor]:
        """``{layer: [batch, heads, q, k]}`` for every captured layer."""
        return {layer: self._recorders[layer].get() for layer in self.layers}

    def calls(self, layer: int) -> list[torch.Tensor]:
        """One ``[batch, heads, q, k]`` tensor per forward call, as captured."""
        return list(self._recorder(layer).calls)

    def clear(self) -> None:
        """Forget what was captured; the hooks stay registered."""
        for recorder in self._recorders.values():
            recorder.calls.clear()
