"""Gradient capture: the gradient of a scalar with respect to chosen layer activations.

A forward hook on each chosen hook point keeps the activation and registers a tensor hook on
it; ``loss.backward()`` inside the ``with`` block then records ``d loss / d activation``, shaped
like the activation, so attribution (gradient x activation) is one line. Gradients of several
backward passes add up, as ``.grad`` does; ``clear()`` forgets them.

When no parameter requires grad (a frozen model fed token ids) the activation would not be part
of any graph, so the hook marks it ``requires_grad`` (it becomes a leaf, like an input). A model
that later edits that tensor in place then fails with torch's leaf error; enable
``requires_grad`` on the parameters in that case. Under ``torch.no_grad()`` or
``torch.inference_mode()`` nothing can flow back, and the forward pass raises.

Example:
    >>> from trait_lab.testing import tiny_model, tiny_batch
    >>> model = tiny_model("llama")
    >>> with GradientCapture(model, layers=[0, 1]) as grads:
    ...     model(**tiny_batch(1, 4)).logits[0, -1, 5].backward()
    >>> (grads.get(1) * grads.activation(1)).shape
    torch.Size([1, 4, 32])
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from trait_lab.hooks.base import HookContext, register_tensor_hook, resolve_target
from trait_lab.models.architectures import resolve_layers


class _GradRecorder:
    """Keeps the activation of every forward call at one hook point and, after backward, its
    gradient."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.activations: list[torch.Tensor] = []
        self.grads: list[torch.Tensor | None] = []
        self.handles: list[RemovableHandle] = []

    def __call__(self, h: torch.Tensor) -> None:
        if not torch.is_grad_enabled():
            raise RuntimeError(
                f"GradientCapture at {self.where!r} saw a forward pass with gradients disabled "
                "(torch.no_grad() or torch.inference_mode()), so no gradient can reach it. Run "
                "the forward pass and loss.backward() with gradients enabled inside the `with` "
                "block."
            )
        if not h.requires_grad:
            h.requires_grad_(True)  # a frozen model: make the activation a leaf of the graph
        self.activations.append(h.detach())
        self.grads.append(None)
        self.handles.append(h.register_hook(partial(self._on_grad, len(self.grads) - 1)))

    def _on_grad(self, index: int, grad: torch.Tensor) -> None:
        old = self.grads[index]
        # clone: autograd may reuse this buffer for .grad and add into it on a later backward
        self.grads[index] = grad.detach().clone() if old is None else old + grad.detach()

    def release(self) -> None:
        while self.handles:
            self.handles.pop().remove()

    def activation(self) -> torch.Tensor:
        if not self.activations:
            raise RuntimeError(
                f"nothing was captured at {self.where!r}: run a forward pass inside the `with` "
                "block (the hook fires only while it is registered)"
            )
        return self._join(self.activations)

    def grad(self) -> torch.Tensor:
        self.activation()  # the same error when no forward pass ran
        missing = [i for i, g in enumerate(self.grads) if g is None]
        if missing:
            raise RuntimeError(
                f"no gradient reached {self.where!r} (forward call(s) {missing} of "
                f"{len(self.grads)}): call loss.backward() inside the `with` block, after the "
                "forward pass, on a loss that depends on this activation"
            )
        return self._join([g for g in self.grads if g is not None])

    @staticmethod
    def _join(tensors: list[torch.Tensor]) -> torch.Tensor:
        return tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim=-2)

    def clear(self) -> None:
        self.release()
        self.activations.clear()
        self.grads.clear()


class GradientCapture(HookContext):
    """Capture ``d loss / d activation`` at chosen layers (and the activations themselves).

    Args:
        model: any torch module (an HF causal LM for layer indices).
        layers: layer indices (negatives count back); ``None`` means every layer.
        component: one of ``trait_lab.models.architectures.COMPONENTS``.

    Gradient hooks live as long as the context: a backward pass after ``with`` exits records
    nothing. Several forward calls are joined along ``seq``, as in ``MultiLayerCapture``.

    Example:
        >>> from trait_lab.testing import tiny_model, tiny_batch
        >>> model = tiny_model("gpt2").requires_grad_(False)
        >>> with GradientCapture(model, 2) as grads:
        ...     model(**tiny_batch(2, 3)).logits[:, -1].sum().backward()
        >>> grads.get(2).shape == grads.activation(2).shape
        True
    """

    def __init__(
        self,
        model: nn.Module,
        layers: int | Iterable[int] | None,
        component: str = "residual",
    ) -> None:
        super().__init__(model)
        self.layers = resolve_layers(model, layers)
        self.component = component
        self._recorders = {
            layer: _GradRecorder(resolve_target(model, layer, component)) for layer in self.layers
        }

    def _attach(self) -> None:
        for recorder in self._recorders.values():
            self._add(register_tensor_hook(self.model, recorder.where, recorder))

    def remove(self) -> None:
        """Remove the forward hooks and every gradient hook (idempotent); captures are kept."""
        super().remove()
        for recorder in self._recorders.values():
            recorder.release()

    def _recorder(self, layer: int) -> _GradRecorder:
        index = resolve_layers(self.model, layer)[0]  # raises when out of range
        recorder = self._recorders.get(index)
        if recorder is None:
            raise KeyError(f"layer {layer} was not captured; captured layers: {self.layers}")
        return recorder

    def get(self, layer: int) -> torch.Tensor:
        """``d loss / d activation`` at ``layer``, shaped like the activation."""
        return self._recorder(layer).grad()

    def activation(self, layer: int) -> torch.Tensor:
        """The activation at ``layer`` (detached), for gradient x activation attribution."""
        return self._recorder(layer).activation()

    def clear(self) -> None:
        """Forget activations and gradients; the forward hooks stay registered."""
        for recorder in self._recorders.values():
            recorder.clear()
