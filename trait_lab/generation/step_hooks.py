"""The hooks HookedGenerator registers for one generation: steering editors and observers.

The generator tells them where each forward's tokens sit in the padded sequence
(``hooks.at(offset)``), so steering by position and per row is exact under the KV cache.
Everything a hook reads that may change between steps or generations (offset, position
windows, vectors, coefficients, rows, projection matrices) is a tensor, so a compiled decode
step (:mod:`~trait_lab.generation.compiled`) reads new values without recompiling.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from trait_lab.generation.configs import CaptureConfig, ProjectionSpec, SteeringConfig
from trait_lab.generation.prompt_cache import tensor_key
from trait_lab.hooks.base import (
    DeviceVector,
    HookContext,
    expected_width,
    fp32_apply,
    register_tensor_hook,
    resolve_target,
)
from trait_lab.hooks.edits import apply_edit
from trait_lab.hooks.projection import is_single_vector, unit_matrix
from trait_lab.hooks.values import as_vector, check_width
from trait_lab.models.architectures import resolve_layers

#: The largest |activation| whose square fits in float32: above it a norm overflows.
_SAFE_PEAK = float(torch.finfo(torch.float32).max) ** 0.5


#: An end past any sequence: an open position window ends here.
_OPEN_END = 2**62


def _window(positions: Any, prompt_len: int) -> torch.Tensor:
    """``[start, end)`` (absolute positions) that a ``SteeringConfig.positions`` edits."""
    if positions == "all":
        return torch.tensor([0, _OPEN_END])
    if positions == "response":
        return torch.tensor([prompt_len - 1, _OPEN_END])
    if positions == "prompt":
        return torch.tensor([0, prompt_len - 1])
    start, end = positions
    return torch.tensor([start, _OPEN_END if end is None else end])


class _SteerEntry:
    def __init__(
        self,
        config: SteeringConfig,
        index: int,
        path: str,
        model: nn.Module,
        batch: int,
        prompt_len: int,
    ) -> None:
        where = f"steering[{index}]"
        self.where = where
        self.path = path
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
        self.largest = max((abs(c) for c in coefs), default=0.0)
        self.coefs = DeviceVector(torch.tensor(coefs, dtype=torch.float32))
        in_rows = [float(i in rows) for i in range(batch)]
        self.rows = DeviceVector(torch.tensor(in_rows, dtype=torch.float32))
        self.window = DeviceVector(_window(config.positions, prompt_len))

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
    ) -> None:
        super().__init__(model)
        self.batch = batch
        self.prompt_len = prompt_len
        self._offset = DeviceVector(torch.zeros((), dtype=torch.long))
        self.capture = capture
        self.steer: dict[str, list[_SteerEntry]] = {}
        for i, config in enumerate(steering):
            if not isinstance(config, SteeringConfig):
                raise TypeError(
                    f"steering[{i}] must be a SteeringConfig, got {type(config).__name__}"
                )
            path = resolve_target(model, config.layer, config.component, edits=True)
            self.steer.setdefault(path, []).append(
                _SteerEntry(config, i, path, model, batch, prompt_len)
            )
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
        self._fired: set[str] = set()
        self._norms: dict[str, torch.Tensor] = {}  # the last forward's mean norm per steered path
        self._peaks: dict[str, torch.Tensor] = {}  # this step's largest steered |value|
        self._limit: dict[str, float] = {}
        # built once: registering them again for every step is cheap, rebuilding is not needed
        self._hooks: list[tuple[str, Any, bool]] = [
            (path, self._editor(path, entries), True) for path, entries in self.steer.items()
        ]
        self._hooks += [(path, self._recorder(key), False) for key, path in self.captures.items()]
        self._hooks += [
            (path, self._projector(layer, matrix, single), False)
            for layer, (path, matrix, single) in self.projections.items()
        ]

    def observers(self) -> tuple[Any, ...]:
        """What the capture and projection hooks record (a key: equal when they record alike)."""
        capture = self.capture
        settings = None if capture is None else (str(capture.dtype), capture.prompt)
        projections = [
            (layer, path, tensor_key(matrix.cpu), single)
            for layer, (path, matrix, single) in sorted(self.projections.items())
        ]
        return settings, tuple(sorted(self.captures.items())), tuple(projections)

    def structure(self) -> tuple[Any, ...]:
        """What the hooks are, without their values: equal structures can :meth:`load` each
        other (batch, steered paths and modes, captured paths and dtype, projection shapes)."""
        steer = tuple(
            (path, tuple((e.mode, tuple(e.vector.cpu.shape)) for e in entries))
            for path, entries in self.steer.items()
        )
        dtype = None if self.capture is None else str(self.capture.dtype)
        projections = tuple(
            (layer, path, tuple(matrix.cpu.shape), single)
            for layer, (path, matrix, single) in self.projections.items()
        )
        return self.batch, steer, tuple(self.captures.items()), dtype, projections

    def load(self, other: StepHooks) -> None:
        """Take ``other``'s values in place (tensors keep their identity) for a new generation.

        ``other`` must have the same :meth:`structure`; the registered hooks (and any graph
        compiled through them) then compute ``other``'s steering, capture and projection.
        """
        if other.structure() != self.structure():
            raise ValueError("StepHooks.load needs hooks of the same structure()")
        for mine, theirs in zip(self.steer.values(), other.steer.values(), strict=True):
            for entry, new in zip(mine, theirs, strict=True):
                for name in ("vector", "coefs", "rows", "window"):
                    getattr(entry, name).assign(getattr(new, name).cpu)
                entry.where, entry.largest = new.where, new.largest
        for layer, (_, matrix, _) in self.projections.items():
            matrix.assign(other.projections[layer][1].cpu)
        self.prompt_len, self.capture = other.prompt_len, other.capture
        for record in (self._pending, self._fired, self._norms, self._peaks):
            record.clear()

    @property
    def needs_final_step(self) -> bool:
        """Whether the last token must be fed back to get its own activations."""
        return bool(self.captures or self.projections)

    def _attach(self) -> None:
        for path, fn, edits in self._hooks:
            self._add(register_tensor_hook(self.model, path, fn, edits=edits))

    def check_fired(self) -> None:
        """After the first forward: refuse hook paths the model never ran (they did nothing)."""
        silent = sorted({path for path, _, _ in self._hooks} - self._fired)
        if silent:
            raise RuntimeError(
                f"the model's forward never ran the module(s) {silent}, so steering, capture or "
                "projection there would do nothing; choose a layer index or a module that runs "
                "in the forward (list them with [n for n, _ in model.named_modules()])"
            )

    def check_step(self, logits: torch.Tensor, step: int) -> None:
        """After a forward: raise when steering overflowed or the next-token logits are NaN/inf.

        A steered activation above :data:`_SAFE_PEAK` (or its dtype's maximum) overflows when
        the next norm squares it; the model then predicts from zeros or NaN, so the tokens are
        garbage. One sync: every check is reduced to one flag first.
        """
        peaks = {path: peak.to(logits.device) for path, peak in self._peaks.items()}
        self._peaks = {}
        flags = [torch.isfinite(logits.amax(dim=-1)).all()]
        flags += [peak <= self._limit[path] for path, peak in peaks.items()]
        if bool(torch.stack(flags).all()):
            return
        bad = {path: float(peak) for path, peak in peaks.items() if not peak <= self._limit[path]}
        if bad:
            where = f"at generation step {step} steering pushed the activations past what "
            where += "the model's norms can square without overflow"
            entries = [e for path in bad for e in self.steer[path]]
        else:
            rows = (~torch.isfinite(logits.amax(dim=-1))).nonzero().flatten().tolist()
            where = f"the logits at generation step {step} are NaN/inf for rows {rows}"
            entries = [e for es in self.steer.values() for e in es if e.largest > 0]
        if not entries:
            raise RuntimeError(
                f"{where}, with no steering: the model itself overflows (its dtype is "
                f"{logits.dtype}); load it in bfloat16 or float32, or check its weights"
            )
        parts = []
        for entry in sorted(entries, key=lambda e: e.where):
            norm = self._norms.get(entry.path)
            scale = "" if norm is None else f", where the mean activation norm is {float(norm):.3g}"
            peak = f" (largest value {bad[entry.path]:.3g})" if entry.path in bad else ""
            parts.append(
                f"{entry.where} ({entry.mode}) at {entry.path!r} with coefficient "
                f"{entry.largest:.3g}{peak}{scale}"
            )
        raise RuntimeError(
            f"{where}: {'; '.join(parts)}. The output would be garbage. Use a smaller "
            "coefficient: a typical scale is about the layer's activation norm"
        )

    def at(self, offset: int) -> None:
        """Tell the hooks the next forward's first token sits at ``offset`` (in place)."""
        self._offset.assign(torch.tensor(offset))

    def _mask(self, entry: _SteerEntry, h: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(h.shape[1], device=h.device) + self._offset.on(h.device)
        window = entry.window.on(h.device)
        return (pos >= window[0]) & (pos < window[1])

    def _editor(self, path: str, entries: list[_SteerEntry]):
        def edit(h: torch.Tensor) -> torch.Tensor:
            if h.dim() != 3 or h.shape[0] != self.batch:
                raise ValueError(
                    f"steering at {path!r} expected [{self.batch}, seq, hidden], "
                    f"got {tuple(h.shape)}"
                )
            for entry in entries:
                check_width(h, entry.vector.on(h.device), path)

            self._fired.add(path)
            # this forward's, for an overflow error's advice; stored unconditionally (a compiled
            # step must not depend on what an earlier forward left in a dict)
            self._norms[path] = torch.linalg.vector_norm(h.detach().float(), dim=-1).mean()
            self._limit[path] = min(_SAFE_PEAK, torch.finfo(h.dtype).max)

            def steer(x: torch.Tensor) -> torch.Tensor:
                for entry in entries:  # in order: ablate-then-add differs from add-then-ablate
                    x = entry.apply(x, self._mask(entry, x).to(x.dtype))
                self._peaks[path] = x.detach().abs().amax()  # checked after the forward
                return x

            return fp32_apply(h, steer)

        return edit

    def _recorder(self, key: tuple[int, str]):
        dtype = self.capture.dtype if self.capture is not None else None

        def record(h: torch.Tensor) -> None:
            self._fired.add(self.captures[key])
            t = h.detach()
            t = t.to(device="cpu", dtype=dtype or t.dtype, copy=True)
            self._pending[("a", key[0], key[1])] = t

        return record

    def _projector(self, layer: int, matrix: DeviceVector, single: bool):
        path = self.projections[layer][0]

        def project(h: torch.Tensor) -> None:
            self._fired.add(path)
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
