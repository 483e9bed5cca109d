"""Projection hooks: score hidden states against trait vectors inside the hook.

Only ``[batch, seq]`` scores and per-token norms leave the hook, computed on the model's
device in fp32, so nothing of hidden size is copied to the host.

Example:
    >>> import torch
    >>> from trait_lab.testing import tiny_model, tiny_batch
    >>> model = tiny_model("llama")
    >>> with ProjectionHook(model, torch.randn(32), 1) as hook:
    ...     _ = model(**tiny_batch(2, 5))
    >>> hook.get().shape, hook.get_norms().shape
    (torch.Size([2, 5]), torch.Size([2, 5]))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import nn

from trait_lab.hooks.base import (
    DeviceVector,
    HookContext,
    Target,
    expected_width,
    register_tensor_hook,
    resolve_target,
)
from trait_lab.hooks.values import VectorLike, as_vector, check_width
from trait_lab.models.architectures import n_layers


def unit_matrix(vectors: VectorLike | Iterable[VectorLike], width: int | None) -> torch.Tensor:
    """Unit rows, ``[K, hidden]``; a single vector gives ``[1, hidden]``."""
    if isinstance(vectors, (torch.Tensor, np.ndarray)) and vectors.ndim == 2:
        rows = list(vectors)
    elif isinstance(vectors, (torch.Tensor, np.ndarray)) or (
        isinstance(vectors, (list, tuple)) and vectors and not hasattr(vectors[0], "__len__")
    ):
        rows = [vectors]
    else:
        rows = list(vectors)
    if not rows:
        raise ValueError("no vectors to project on")
    return torch.stack(
        [as_vector(r, name=f"vector {i}", width=width, direction=True) for i, r in enumerate(rows)]
    )


class _Projector:
    def __init__(self, where: str, matrix: torch.Tensor, squeeze: bool, to_cpu: bool) -> None:
        self.where = where
        self.matrix = DeviceVector(matrix)
        self.squeeze = squeeze
        self.to_cpu = to_cpu
        self.scores: list[torch.Tensor] = []
        self.norms: list[torch.Tensor] = []

    def __call__(self, h: torch.Tensor) -> None:
        m = self.matrix.on(h.device)
        check_width(h, m, self.where)
        with torch.no_grad():
            x = h.detach().float()
            scores = x @ m.T
            if self.squeeze:
                scores = scores.squeeze(-1)
            norms = x.norm(dim=-1)
        if self.to_cpu:
            scores, norms = scores.cpu(), norms.cpu()
        self.scores.append(scores)
        self.norms.append(norms)

    def _cat(self, parts: list[torch.Tensor], axis: int) -> torch.Tensor:
        if not parts:
            raise RuntimeError(
                f"nothing was projected at {self.where!r}: run a forward pass inside the "
                "`with` block"
            )
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=axis)

    def get(self) -> torch.Tensor:
        return self._cat(self.scores, -1 if self.squeeze else -2)

    def get_norms(self) -> torch.Tensor:
        return self._cat(self.norms, -1)

    def clear(self) -> None:
        self.scores.clear()
        self.norms.clear()


class ProjectionHook(HookContext):
    """Project hidden states on one unit vector (``[batch, seq]``) or K (``[batch, seq, K]``).

    Scores are ``h · v̂`` (vectors are normalised); ``get_norms()`` gives ``‖h‖`` per token,
    so cosine scores are ``get() / get_norms()``. Calls accumulate along the sequence.

    Example:
        >>> import torch
        >>> from trait_lab.testing import tiny_model
        >>> hook = ProjectionHook(tiny_model(), torch.randn(5, 32), "model.layers.0")
    """

    def __init__(
        self,
        model: nn.Module,
        vector: VectorLike | Iterable[VectorLike],
        target: Target,
        component: str = "residual",
        *,
        to_cpu: bool = False,
    ) -> None:
        super().__init__(model)
        self.path = resolve_target(model, target, component)
        matrix = unit_matrix(vector, expected_width(model, self.path))
        squeeze = is_single_vector(vector)
        self._projector = _Projector(self.path, matrix, squeeze, to_cpu)

    def _attach(self) -> None:
        self._add(register_tensor_hook(self.model, self.path, self._projector))

    def get(self) -> torch.Tensor:
        """Scores, ``[batch, seq]`` (one vector) or ``[batch, seq, K]``."""
        return self._projector.get()

    def get_norms(self) -> torch.Tensor:
        """Per-token L2 norms of the hidden states, ``[batch, seq]``."""
        return self._projector.get_norms()

    def clear(self) -> None:
        self._projector.clear()


def is_single_vector(vector: object) -> bool:
    if isinstance(vector, (torch.Tensor, np.ndarray)):
        return vector.ndim == 1
    return isinstance(vector, (list, tuple)) and bool(vector) and not hasattr(vector[0], "__len__")


class MultiLayerProjection(HookContext):
    """Project at several layers: ``vectors_by_layer = {layer: vector or [K, hidden] matrix}``.

    Example:
        >>> import torch
        >>> from trait_lab.testing import tiny_model, tiny_batch
        >>> model = tiny_model()
        >>> with MultiLayerProjection(model, {0: torch.randn(32), 2: torch.randn(3, 32)}) as p:
        ...     _ = model(**tiny_batch(1, 4))
        >>> p.get(0).shape, p.get(2).shape
        (torch.Size([1, 4]), torch.Size([1, 4, 3]))
    """

    def __init__(
        self,
        model: nn.Module,
        vectors_by_layer: Mapping[int, VectorLike | Iterable[VectorLike]],
        component: str = "residual",
        *,
        to_cpu: bool = False,
    ) -> None:
        super().__init__(model)
        if not vectors_by_layer:
            raise ValueError("vectors_by_layer is empty; give {layer: vector}")
        count = n_layers(model)
        self._projectors: dict[int, _Projector] = {}
        for layer, vectors in vectors_by_layer.items():
            path = resolve_target(model, layer, component)
            matrix = unit_matrix(vectors, expected_width(model, path))
            self._projectors[int(layer) % count] = _Projector(
                path, matrix, is_single_vector(vectors), to_cpu
            )

    def _attach(self) -> None:
        for projector in self._projectors.values():
            self._add(register_tensor_hook(self.model, projector.where, projector))

    def _get(self, layer: int) -> _Projector:
        key = layer % n_layers(self.model)
        if key not in self._projectors:
            raise KeyError(f"layer {layer} has no vectors; layers: {sorted(self._projectors)}")
        return self._projectors[key]

    @property
    def layers(self) -> list[int]:
        return sorted(self._projectors)

    def get(self, layer: int) -> torch.Tensor:
        """Scores at one layer."""
        return self._get(layer).get()

    def get_norms(self, layer: int) -> torch.Tensor:
        """Per-token norms at one layer."""
        return self._get(layer).get_norms()

    def get_all(self) -> dict[int, torch.Tensor]:
        return {layer: p.get() for layer, p in sorted(self._projectors.items())}

    def clear(self) -> None:
        for projector in self._projectors.values():
            projector.clear()
