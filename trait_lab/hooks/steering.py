"""Steering hooks: add ``coefficient * vector`` to the hidden states.

Every variant works under the KV cache: a decode step knows its absolute position from the
cache length, so per-position steering covers the prompt and each generated token alike.

Example:
    >>> import torch
    >>> from trait_lab.testing import tiny_model, tiny_batch
    >>> model = tiny_model("llama")
    >>> with SteeringHook(model, torch.ones(32), 1, coefficient=2.0):
    ...     _ = model(**tiny_batch(1, 4))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from trait_lab.hooks.base import (
    DeviceVector,
    HookContext,
    PositionTracker,
    Target,
    expected_width,
    fp32_apply,
    register_tensor_hook,
    resolve_target,
)
from trait_lab.hooks.edits import apply_edit
from trait_lab.hooks.values import VectorLike, as_coefficient, as_vector, check_width


class SteeringHook(HookContext):
    """Add ``coefficient * vector`` at every position of one hook point.

    The vector is used as given (extraction methods return unit vectors, so the coefficient is
    in units of the residual stream). ``coefficient`` may be changed while registered, e.g.
    from a slider. Coefficient 0 leaves the model's outputs bit-identical.

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> hook = SteeringHook(tiny_model("qwen2"), [0.0] * 32, 2, coefficient=1.5)
        >>> hook.path
        'model.layers.2'
    """

    def __init__(
        self,
        model: nn.Module,
        vector: VectorLike,
        target: Target,
        coefficient: float = 1.0,
        component: str = "residual",
    ) -> None:
        super().__init__(model)
        self.path = resolve_target(model, target, component, edits=True)
        self.vector = DeviceVector(as_vector(vector, width=expected_width(model, self.path)))
        self.coefficient = coefficient

    @property
    def coefficient(self) -> float:
        return self._coefficient

    @coefficient.setter
    def coefficient(self, value: float) -> None:
        self._coefficient = as_coefficient(value)

    def _attach(self) -> None:
        self._add(register_tensor_hook(self.model, self.path, self._edit, edits=True))

    def _edit(self, h: torch.Tensor) -> torch.Tensor:
        v = self.vector.on(h.device)
        check_width(h, v, self.path)
        c = self._coefficient
        return fp32_apply(h, lambda x: apply_edit("add", x, v, c))


TokenRange = tuple[int, "int | None"]


def _check_range(token_range: Sequence[int | None], where: str) -> tuple[int, int | None]:
    if len(token_range) != 2:
        raise ValueError(f"{where} must be (start, end), got {token_range!r}")
    start, end = token_range
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ValueError(
            f"{where} start must be an int >= 0 (absolute token index), got {start!r}; "
            "negative indices are not allowed because the final length is unknown while "
            "generating"
        )
    if end is not None and (isinstance(end, bool) or not isinstance(end, int) or end < start):
        raise ValueError(f"{where} end must be None or an int >= start ({start}), got {end!r}")
    return start, end


class PerPositionSteeringHook(SteeringHook):
    """Steer only tokens whose absolute index lies in ``[start, end)``.

    Indices count positions in the (padded) input tensor and continue through generated tokens
    (``end=None`` means "to the end"). Pass one range per batch sample to steer each sample at
    its own positions (e.g. after a different amount of left padding).

    Example:
        >>> import torch
        >>> from trait_lab.testing import tiny_model
        >>> hook = PerPositionSteeringHook(tiny_model(), torch.ones(32), 1, 2.0, token_range=(3, 6))
        >>> hook.ranges
        [(3, 6)]
    """

    def __init__(
        self,
        model: nn.Module,
        vector: VectorLike,
        target: Target,
        coefficient: float = 1.0,
        token_range: Sequence[int | None] | Sequence[Sequence[int | None]] = (0, None),
        component: str = "residual",
    ) -> None:
        super().__init__(model, vector, target, coefficient, component)
        if token_range and isinstance(token_range[0], (tuple, list)):
            self.ranges = [
                _check_range(r, f"token_range[{i}]")  # type: ignore[arg-type]
                for i, r in enumerate(token_range)
            ]
            self.per_sample = True
        else:
            self.ranges = [_check_range(token_range, "token_range")]  # type: ignore[arg-type]
            self.per_sample = False
        self._tracker = PositionTracker(model)

    def _attach(self) -> None:
        self._add(self._tracker.attach())
        super()._attach()

    def _mask(self, h: torch.Tensor) -> torch.Tensor:
        pos = self._tracker.positions(h.shape[-2], h.device)
        if not self.per_sample:
            start, end = self.ranges[0]
            keep = pos >= start
            if end is not None:
                keep &= pos < end
            return keep
        if h.dim() != 3 or h.shape[0] != len(self.ranges):
            raise ValueError(
                f"{len(self.ranges)} per-sample token ranges were given but the batch at "
                f"{self.path!r} has shape {tuple(h.shape)}; pass one range per sample"
            )
        starts = torch.tensor([r[0] for r in self.ranges], device=h.device)
        ends = torch.tensor(
            [r[1] if r[1] is not None else 2**62 for r in self.ranges], device=h.device
        )
        return (pos[None, :] >= starts[:, None]) & (pos[None, :] < ends[:, None])

    def _edit(self, h: torch.Tensor) -> torch.Tensor:
        v = self.vector.on(h.device)
        check_width(h, v, self.path)
        c = self._coefficient
        mask = self._mask(h)
        return fp32_apply(h, lambda x: apply_edit("add", x, v, c, mask.to(x.dtype)))


class PerSampleSteering(HookContext):
    """Different vector and coefficient per batch slice, in one forward pass.

    ``configs`` holds ``(layer, vector, coefficient, (start, end))`` tuples: samples
    ``start..end-1`` of the batch get ``coefficient * vector`` at ``layer``. Slices may overlap
    (their contributions add) and samples in no slice are left alone. This runs N coefficients
    as one batch instead of N generations.

    Example:
        >>> import torch
        >>> from trait_lab.testing import tiny_model
        >>> v = torch.ones(32)
        >>> hook = PerSampleSteering(tiny_model(), [(1, v, 0.0, (0, 1)), (1, v, 4.0, (1, 2))])
    """

    def __init__(
        self,
        model: nn.Module,
        configs: Iterable[tuple[Target, VectorLike, float, tuple[int, int]]],
        component: str = "residual",
    ) -> None:
        super().__init__(model)
        self._by_path: dict[str, list[tuple[DeviceVector, float, int, int]]] = {}
        for i, config in enumerate(configs):
            if len(config) != 4:
                raise ValueError(
                    f"configs[{i}] must be (layer, vector, coefficient, (start, end)), "
                    f"got {len(config)} items"
                )
            target, vector, coefficient, batch_slice = config
            path = resolve_target(model, target, component, edits=True)
            start, end = _check_range(batch_slice, f"configs[{i}] batch slice")
            if end is None:
                raise ValueError(f"configs[{i}] batch slice needs an explicit end")
            vec = as_vector(vector, name=f"configs[{i}] vector", width=expected_width(model, path))
            self._by_path.setdefault(path, []).append(
                (DeviceVector(vec), as_coefficient(coefficient), start, end)
            )
        if not self._by_path:
            raise ValueError("PerSampleSteering needs at least one config")

    def _attach(self) -> None:
        for path, entries in self._by_path.items():
            self._add(
                register_tensor_hook(self.model, path, self._editor(path, entries), edits=True)
            )

    @staticmethod
    def _editor(path: str, entries: list[tuple[DeviceVector, float, int, int]]):
        needed = max(end for *_, end in entries)

        def edit(h: torch.Tensor) -> torch.Tensor:
            if h.dim() != 3 or h.shape[0] < needed:
                raise ValueError(
                    f"per-sample steering at {path!r} covers samples up to {needed} but the "
                    f"batch has shape {tuple(h.shape)}; make the batch at least {needed} long"
                )

            def steer(x: torch.Tensor) -> torch.Tensor:
                for vector, coefficient, start, end in entries:
                    v = vector.on(h.device)
                    check_width(h, v, path)
                    rows = torch.zeros(h.shape[0], 1, dtype=x.dtype, device=x.device)
                    rows[start:end] = 1.0
                    x = apply_edit("add", x, v, coefficient, rows)
                return x

            return fp32_apply(h, steer)

        return edit


class CompositeHook(HookContext):
    """Several hooks that register and unregister together."""

    def __init__(self, model: nn.Module, hooks: Sequence[HookContext]) -> None:
        super().__init__(model)
        self.hooks = list(hooks)

    def _attach(self) -> None:
        for hook in self.hooks:
            hook.register()

    @property
    def active(self) -> bool:
        return any(hook.active for hook in self.hooks)

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()
        super().remove()


class MultiLayerSteering(CompositeHook):
    """Steer at several layers at once: ``configs`` holds ``(layer, vector, coefficient)``.

    Example:
        >>> import torch
        >>> from trait_lab.testing import tiny_model
        >>> model = tiny_model()
        >>> hook = MultiLayerSteering(model, [(0, torch.ones(32), 1.0), (2, torch.ones(32), -1.0)])
        >>> [h.path for h in hook.hooks]
        ['model.layers.0', 'model.layers.2']
    """

    def __init__(
        self,
        model: nn.Module,
        configs: Iterable[tuple[Target, VectorLike, float]],
        component: str = "residual",
    ) -> None:
        hooks = []
        for i, config in enumerate(configs):
            if len(config) != 3:
                raise ValueError(
                    f"configs[{i}] must be (layer, vector, coefficient), got {len(config)} items"
                )
            target, vector, coefficient = config
            hooks.append(SteeringHook(model, vector, target, coefficient, component))
        if not hooks:
            raise ValueError("MultiLayerSteering needs at least one (layer, vector, coefficient)")
        super().__init__(model, hooks)
