"""Capture hooks: record hidden states at one or many hook points.

Repeated forward calls inside one context (a KV-cached generation: prefill, then one token at a
time) are concatenated along the sequence axis, so ``get()`` lines up with the full sequence.

Example:
    >>> import torch
    >>> from trait_lab.testing import tiny_model, tiny_batch
    >>> model = tiny_model("llama")
    >>> with MultiLayerCapture(model) as cap:
    ...     _ = model(**tiny_batch(2, 5))
    >>> cap.get(2).shape
    torch.Size([2, 5, 32])
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from trait_lab.hooks.base import HookContext, Target, register_tensor_hook, resolve_target
from trait_lab.models.architectures import COMPONENTS, n_layers, resolve_layers


class _Recorder:
    """Collects the tensors one hook point produced, one entry per forward call."""

    def __init__(self, where: str, to_cpu: bool, dtype: torch.dtype | None) -> None:
        self.where = where
        self.to_cpu = to_cpu
        self.dtype = dtype
        self.calls: list[torch.Tensor] = []

    def __call__(self, h: torch.Tensor) -> None:
        t = h.detach()
        if self.dtype is not None:
            t = t.to(self.dtype)
        if self.to_cpu:
            t = t.to("cpu")
        elif t is h:
            t = t.clone()  # never alias a buffer the model may reuse
        self.calls.append(t)

    def get(self) -> torch.Tensor:
        if not self.calls:
            raise RuntimeError(
                f"nothing was captured at {self.where!r}: run a forward pass inside the "
                "`with` block (the hook fires only while it is registered)"
            )
        if len(self.calls) == 1:
            return self.calls[0]
        return torch.cat(self.calls, dim=-2)


class CaptureHook(HookContext):
    """Capture the hidden states at one layer+component or module path.

    Args:
        model: any torch module (an HF causal LM for layer indices).
        target: a layer index (with ``component``) or a module path such as ``"model.layers.3"``
            (``":input"`` suffix for a module's input).
        component: one of ``trait_lab.models.architectures.COMPONENTS`` when ``target`` is an int.
        to_cpu: move captures to CPU as they arrive (default keeps them where they were made:
            the model's device, or under a ``device_map`` each block's own device).
        dtype: cast captures to this dtype (e.g. ``torch.float32`` for a bf16 model).

    Example:
        >>> from trait_lab.testing import tiny_model, tiny_batch
        >>> model = tiny_model("llama")
        >>> with CaptureHook(model, 1) as hook:
        ...     _ = model(**tiny_batch(1, 4))
        >>> hook.get().shape
        torch.Size([1, 4, 32])
    """

    def __init__(
        self,
        model: nn.Module,
        target: Target,
        component: str = "residual",
        *,
        to_cpu: bool = False,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(model)
        self.path = resolve_target(model, target, component)
        self._recorder = _Recorder(self.path, to_cpu, dtype)

    def _attach(self) -> None:
        self._add(register_tensor_hook(self.model, self.path, self._recorder))

    @property
    def calls(self) -> list[torch.Tensor]:
        """One tensor per forward call, as captured."""
        return self._recorder.calls

    def get(self) -> torch.Tensor:
        """``[batch, seq, hidden]``: every forward call so far, concatenated along ``seq``."""
        return self._recorder.get()

    def clear(self) -> None:
        """Forget what was captured; the hook stays registered."""
        self._recorder.calls.clear()


class MultiLayerCapture(HookContext):
    """Capture several layers (``layers=None`` means all) and components in one pass.

    Example:
        >>> from trait_lab.testing import tiny_model, tiny_batch
        >>> model = tiny_model("gemma2")
        >>> with MultiLayerCapture(model, [0, 2], components=["residual", "mlp_contribution"]) as c:
        ...     _ = model(**tiny_batch(1, 3))
        >>> sorted(c.get_all("mlp_contribution"))
        [0, 2]
    """

    def __init__(
        self,
        model: nn.Module,
        layers: int | Iterable[int] | None = None,
        component: str = "residual",
        *,
        components: Iterable[str] | None = None,
        to_cpu: bool = False,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(model)
        self.layers = resolve_layers(model, layers)
        self.components = list(components) if components is not None else [component]
        if not self.components:
            raise ValueError(f"components is empty; choose from {', '.join(COMPONENTS)}")
        self._recorders: dict[tuple[int, str], _Recorder] = {}
        for layer in self.layers:
            for comp in self.components:
                path = resolve_target(model, layer, comp)
                self._recorders[(layer, comp)] = _Recorder(path, to_cpu, dtype)

    def _attach(self) -> None:
        for recorder in self._recorders.values():
            self._add(register_tensor_hook(self.model, recorder.where, recorder))

    def _component(self, component: str | None) -> str:
        if component is None:
            if len(self.components) > 1:
                raise ValueError(
                    f"this capture holds several components {self.components}; pass component=..."
                )
            return self.components[0]
        if component not in self.components:
            raise KeyError(f"component {component!r} was not captured; captured: {self.components}")
        return component

    def get(self, layer: int, component: str | None = None) -> torch.Tensor:
        """``[batch, seq, hidden]`` for one layer (and component)."""
        comp = self._component(component)
        if isinstance(layer, int) and layer < 0:
            layer = layer % n_layers(self.model)
        recorder = self._recorders.get((layer, comp))
        if recorder is None:
            raise KeyError(f"layer {layer} was not captured; captured layers: {self.layers}")
        return recorder.get()

    def get_all(self, component: str | None = None) -> dict[int, torch.Tensor]:
        """``{layer: [batch, seq, hidden]}`` for every captured layer."""
        comp = self._component(component)
        return {layer: self._recorders[(layer, comp)].get() for layer in self.layers}

    def clear(self) -> None:
        """Forget what was captured; the hooks stay registered."""
        for recorder in self._recorders.values():
            recorder.calls.clear()
