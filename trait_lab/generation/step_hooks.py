"""The hooks HookedGenerator registers for one generation: steering editors and observers.

The generator tells them where each forward's tokens sit in the padded sequence
(``state.offset``), so steering by position and per row is exact under the KV cache.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import nn

from trait_lab.generation.configs import CaptureConfig, ProjectionSpec, SteeringConfig
from trait_lab.hooks.base import (
    DeviceVector,
    HookContext,
    as_vector,
    check_width,
    expected_width,
    fp32_apply,
    register_tensor_hook,
    resolve_target,
)
from trait_lab.hooks.edits import apply_edit
from trait_lab.hooks.projection import is_single_vector, unit_matrix
from trait_lab.models.architectures import resolve_layers


class _Offset(Protocol):
    offset: int


class _SteerEntry:
    def __init__(
        self, config: SteeringConfig, index: int, path: str, model: nn.Module, batch: int
    ) -> None:
        where = f"steering[{index}]"
        self.mode = config.mode
        self.vector = DeviceVector(
            as_vector(
                config.vector,
                name=f"{where}.vector",
                width=expected_width(model, path),
                direction=config.mode != "add",
            )
        )
        if isinstance(config.coefficient, (int, float)):
            coefs = [float(config.coefficient)] * batch
        else:
            coefs = [float(c) for c in config.coefficient]
            if len(coefs) != batch:
                raise ValueError(
                    f"{where}.coefficient has {len(coefs)} values but the batch has {batch} "
                    "rows; give one number, or one per row"
                )
        rows = set(range(batch))
        if config.rows is not None:
            rows = set(config.rows)
            bad = [r for r in rows if not 0 <= r < batch]
            if bad:
                raise ValueError(f"{where}.rows {bad} are outside the batch (0..{batch - 1})")
            coefs = [c if i in rows else 0.0 for i, c in enumerate(coefs)]
        self.coefs = DeviceVector(torch.tensor(coefs, dtype=torch.float32))
        in_rows = [float(i in rows) for i in range(batch)]
        self.rows = DeviceVector(torch.tensor(in_rows, dtype=torch.float32))
        self.positions = config.positions

    def apply(self, x: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
        """Edit fp32 ``x`` [batch, seq, hidden] where the ``[seq]`` mask is on."""
        mask = self.rows.on(x.device)[:, None] * where[None, :]
        coefs = self.coefs.on(x.device)[:, None]
        return apply_edit(self.mode, x, self.vector.on(x.device), coefs, mask)


def _check_type(name: str, value: object, kind: type, example: str) -> None:
    if value is not None and not isinstance(value, kind):
        raise TypeError(
            f"{name} must be a {kind.__name__} or None, got a {type(value).__name__}; "
            f"write {name}={example}"
        )


class StepHooks(HookContext):
    """Registers steering editors and capture/projection observers for one generation."""

    def __init__(
        self,
        model: nn.Module,
        batch: int,
        prompt_len: int,
        capture: CaptureConfig | None,
        steering: Sequence[SteeringConfig],
        projection: ProjectionSpec | None,
        state: _Offset,
    ) -> None:
        super().__init__(model)
        self.batch = batch
        self.prompt_len = prompt_len
        self.state = state
        self.capture = capture
        self.steer: dict[str, list[_SteerEntry]] = {}
        for i, config in enumerate(steering):
            if not isinstance(config, SteeringConfig):
                raise TypeError(
                    f"steering[{i}] must be a SteeringConfig, got {type(config).__name__}"
                )
            path = resolve_target(model, config.layer, config.component)
            self.steer.setdefault(path, []).append(_SteerEntry(config, i, path, model, batch))
        _check_type("capture", capture, CaptureConfig, "CaptureSpec(layers=[...])")
        _check_type("projection", projection, ProjectionSpec, "ProjectionSpec({layer: vector})")
        self.captures: dict[tuple[int, str], str] = {}
        if capture is not None:
            for layer in resolve_layers(model, capture.layers):
                for comp in capture.components:
                    self.captures[(layer, comp)] = resolve_target(model, layer, comp)
        self.projections: dict[int, tuple[str, DeviceVector, bool]] = {}
        if projection is not None:
            for layer, vectors in projection.vectors.items():
                (key,) = resolve_layers(model, [layer])
                path = resolve_target(model, key, projection.component)
                matrix = unit_matrix(vectors, expected_width(model, path))
                self.projections[key] = (path, DeviceVector(matrix), is_single_vector(vectors))
        self._pending: dict[Any, torch.Tensor] = {}

    @property
    def needs_final_step(self) -> bool:
        """Whether the last token must be fed back to get its own activations."""
        return bool(self.captures or self.projections)

    def _attach(self) -> None:
        for path, entries in self.steer.items():
            self._add(
                register_tensor_hook(self.model, path, self._editor(path, entries), edits=True)
            )
        for key, path in self.captures.items():
            self._add(register_tensor_hook(self.model, path, self._recorder(key)))
        for layer, (path, matrix, single) in self.projections.items():
            self._add(
                register_tensor_hook(self.model, path, self._projector(layer, matrix, single))
            )

    def _mask(self, entry: _SteerEntry, h: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(self.state.offset, self.state.offset + h.shape[1], device=h.device)
        if entry.positions == "all":
            return torch.ones_like(pos, dtype=torch.bool)
        if entry.positions == "response":
            return pos >= self.prompt_len - 1
        if entry.positions == "prompt":
            return pos < self.prompt_len - 1
        start, end = entry.positions
        keep = pos >= start
        return keep if end is None else keep & (pos < end)

    def _editor(self, path: str, entries: list[_SteerEntry]):
        def edit(h: torch.Tensor) -> torch.Tensor:
            if h.dim() != 3 or h.shape[0] != self.batch:
                raise ValueError(
                    f"steering at {path!r} expected [{self.batch}, seq, hidden], "
                    f"got {tuple(h.shape)}"
                )
            for entry in entries:
                check_width(h, entry.vector.on(h.device), path)

            def steer(x: torch.Tensor) -> torch.Tensor:
                for entry in entries:  # in order: ablate-then-add differs from add-then-ablate
                    x = entry.apply(x, self._mask(entry, x).to(x.dtype))
                return x

            return fp32_apply(h, steer)

        return edit

    def _recorder(self, key: tuple[int, str]):
        dtype = self.capture.dtype if self.capture is not None else None

        def record(h: torch.Tensor) -> None:
            t = h.detach()
            t = t.to(device="cpu", dtype=dtype or t.dtype, copy=True)
            self._pending[("a", key[0], key[1])] = t

        return record

    def _projector(self, layer: int, matrix: DeviceVector, single: bool):
        def project(h: torch.Tensor) -> None:
            m = matrix.on(h.device)
            x = h.detach().float()
            scores = x @ m.T
            self._pending[("p", layer)] = (scores.squeeze(-1) if single else scores).cpu()
            self._pending[("n", layer)] = x.norm(dim=-1).cpu()

        return project

    def collect(self, step: int) -> dict[str, Any]:
        """Turn what the last forward recorded into ``StreamEvent`` fields.

        Step 0 gives the prompt's entries; step ``k > 0`` fed back token ``k - 1``, so it gives
        that token's own activations / scores (``[batch, ...]``).
        """
        pending, self._pending = self._pending, {}
        if not pending:
            return {}
        acts: dict[int, dict[str, torch.Tensor]] = {}
        projections: dict[int, torch.Tensor] = {}
        norms: dict[int, torch.Tensor] = {}
        for key, t in pending.items():
            if key[0] == "a":
                acts.setdefault(key[1], {})[key[2]] = t
            elif key[0] == "p":
                projections[key[1]] = t
            else:
                norms[key[1]] = t
        if step == 0:
            fields: dict[str, Any] = {}
            if self.capture is not None and self.capture.prompt:
                fields["prompt_activations"] = acts
            if projections:
                fields["prompt_projections"] = projections
                fields["prompt_norms"] = norms
            return fields
        return {
            "activations": {k: {c: t[:, 0] for c, t in v.items()} for k, v in acts.items()} or None,
            "projections": {k: t[:, 0] for k, t in projections.items()} or None,
            "norms": {k: t[:, 0] for k, t in norms.items()} or None,
        }
