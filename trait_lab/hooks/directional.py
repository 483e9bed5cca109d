"""Hooks that act along a direction: ablation (at one layer or several) and activation capping.

Example:
    >>> import torch
    >>> from trait_lab.testing import tiny_model, tiny_batch
    >>> model = tiny_model("llama")
    >>> with AblationHook(model, torch.randn(32), 1):
    ...     _ = model(**tiny_batch(1, 4))
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from trait_lab.hooks.base import (
    DeviceVector,
    HookContext,
    Target,
    expected_width,
    fp32_apply,
    register_tensor_hook,
    resolve_target,
)
from trait_lab.hooks.edits import apply_edit
from trait_lab.hooks.steering import CompositeHook
from trait_lab.hooks.values import VectorLike, as_coefficient, as_vector, check_width


class _DirectionHook(HookContext):
    def __init__(
        self, model: nn.Module, direction: VectorLike, target: Target, component: str
    ) -> None:
        super().__init__(model)
        self.path = resolve_target(model, target, component, edits=True)
        width = expected_width(model, self.path)
        self.direction = DeviceVector(
            as_vector(direction, name="direction", width=width, direction=True)
        )

    def _attach(self) -> None:
        self._add(register_tensor_hook(self.model, self.path, self._edit, edits=True))

    def _edit(self, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class AblationHook(_DirectionHook):
    """Remove a direction: ``h ← h − c·(h·r̂) r̂`` at every position.

    ``coefficient`` is the strength: 1 (the default) removes the whole direction, 0 is a
    no-op, 0.5 halves the component — the same meaning as ``SteeringConfig(mode="ablate")``
    (both call :func:`trait_lab.hooks.edits.apply_edit`).

    Example:
        >>> import torch
        >>> from trait_lab.testing import tiny_model
        >>> hook = AblationHook(tiny_model(), torch.ones(32), "model.layers.1")
        >>> hook.coefficient
        1.0
    """

    def __init__(
        self,
        model: nn.Module,
        direction: VectorLike,
        target: Target,
        component: str = "residual",
        coefficient: float = 1.0,
    ) -> None:
        super().__init__(model, direction, target, component)
        self.coefficient = as_coefficient(coefficient)

    def _edit(self, h: torch.Tensor) -> torch.Tensor:
        r = self.direction.on(h.device)
        check_width(h, r, self.path, "direction")
        c = self.coefficient
        return fp32_apply(h, lambda x: apply_edit("ablate", x, r, c))


class ActivationCappingHook(_DirectionHook):
    """Clamp the projection on a direction between a floor and/or a ceiling.

    Floor ``τ``: ``h ← h + max(0, τ − ⟨h,v̂⟩)·v̂``. Ceiling ``κ``: ``h ← h − max(0, ⟨h,v̂⟩ − κ)·v̂``.
    ``threshold`` is the floor (the name used by traitinterp).

    Example:
        >>> import torch
        >>> from trait_lab.testing import tiny_model
        >>> hook = ActivationCappingHook(tiny_model(), torch.ones(32), 1, threshold=0.5)
        >>> hook.floor, hook.ceiling
        (0.5, None)
    """

    def __init__(
        self,
        model: nn.Module,
        vector: VectorLike,
        target: Target,
        threshold: float | None = None,
        *,
        ceiling: float | None = None,
        component: str = "residual",
    ) -> None:
        super().__init__(model, vector, target, component)
        floor = None if threshold is None else as_coefficient(threshold, "threshold")
        top = None if ceiling is None else as_coefficient(ceiling, "ceiling")
        if floor is None and top is None:
            raise ValueError("ActivationCappingHook needs threshold= (a floor), ceiling=, or both")
        if floor is not None and top is not None and floor > top:
            raise ValueError(f"threshold (floor) {threshold} is above ceiling {ceiling}")
        self.floor = floor
        self.ceiling = top

    def _edit(self, h: torch.Tensor) -> torch.Tensor:
        v = self.direction.on(h.device)
        check_width(h, v, self.path, "direction")

        def cap(x: torch.Tensor) -> torch.Tensor:
            if self.floor is not None:
                x = apply_edit("cap", x, v, self.floor)
            if self.ceiling is not None:
                x = apply_edit("ceiling", x, v, self.ceiling)
            return x

        return fp32_apply(h, cap)


class MultiLayerAblation(CompositeHook):
    """Ablate at several layers at once: ``configs`` holds ``(layer, direction)`` pairs.

    The ablation twin of :class:`~trait_lab.hooks.steering.MultiLayerSteering`: one
    :class:`AblationHook` per entry, registered and removed together. An optional third item
    is the strength (1 removes the whole direction, as in ``AblationHook``). Each layer may
    appear once: two directions ablated one after the other at one layer do not both end up
    removed unless they are orthogonal, so a repeat is refused rather than half-applied.

    Example:
        >>> import torch
        >>> from trait_lab.testing import tiny_model
        >>> hook = MultiLayerAblation(tiny_model(), [(0, torch.ones(32)), (2, torch.ones(32))])
        >>> [h.path for h in hook.hooks]
        ['model.layers.0', 'model.layers.2']
    """

    def __init__(
        self,
        model: nn.Module,
        configs: Iterable[tuple[Target, VectorLike] | tuple[Target, VectorLike, float]],
        component: str = "residual",
    ) -> None:
        hooks: list[AblationHook] = []
        first: dict[str, int] = {}
        for i, config in enumerate(configs):
            if not isinstance(config, (tuple, list)) or len(config) not in (2, 3):
                raise ValueError(
                    f"configs[{i}] must be (layer, direction) or (layer, direction, strength), "
                    f"got {config!r}"
                )
            target, direction, *rest = config
            try:
                hook = AblationHook(model, direction, target, component, *rest)
            except (TypeError, ValueError) as err:
                raise type(err)(f"configs[{i}] (layer {target!r}): {err}") from err
            if hook.path in first:
                raise ValueError(
                    f"configs[{first[hook.path]}] and configs[{i}] both ablate at {hook.path!r}; "
                    "two directions ablated in turn at one layer are not both removed unless "
                    "they are orthogonal. Give each layer once; to remove a subspace, "
                    "orthonormalize the directions (torch.linalg.qr) and nest one AblationHook "
                    "per direction."
                )
            first[hook.path] = i
            hooks.append(hook)
        if not hooks:
            raise ValueError("MultiLayerAblation needs at least one (layer, direction)")
        super().__init__(model, hooks)
