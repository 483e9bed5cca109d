"""The ``steering`` extension of a request, checked and turned into :class:`SteeringConfig` s.

A request may carry ``"steering": [item, ...]`` (OpenAI clients send it with ``extra_body``).
Each item adds ``coefficient · vector`` to one layer's activations while the model generates:

* by trait: ``{"trait": "optimism", "coefficient": 4.0}`` plus optionally ``"layer"``,
  ``"method"`` and ``"component"``. The vector comes from the server's experiment
  (``trait-lab serve --experiment NAME``): with both ``layer`` and ``method`` given, that
  extraction's vector file; otherwise :func:`trait_lab.vectors.select_vector` picks the best
  vector among those the given fields allow.
* by value: ``{"vector": [floats], "layer": 12, "coefficient": 4.0}`` plus optionally
  ``"component"``; the vector is used as given (not normalised).

Either kind also takes ``"positions": "all"`` (prompt and reply, the default) or
``"response"`` (from the last prompt position on), and ``"component"`` defaults to
``"residual"``. Extracted vectors are unit vectors, so ``coefficient`` is the norm of what is
added. Every problem is a 400 :class:`~trait_lab.serve.protocol.APIError` whose ``param``
names the item's field, e.g. ``steering[0].layer``.

Example:
    >>> from trait_lab.testing import tiny_model
    >>> resolver = SteeringResolver(tiny_model())
    >>> [c.layer for c in resolver.configs([{"vector": [0.1] * 32, "layer": 1, "coefficient": 2}])]
    [1]
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trait_lab.core.paths import experiment_dir, extraction_dir, vector_path
from trait_lab.core.types import COMPONENTS, VectorResult
from trait_lab.generation.configs import SteeringConfig
from trait_lab.hooks.base import expected_width, resolve_target
from trait_lab.io.vectors import load_vector
from trait_lab.models.architectures import n_layers
from trait_lab.serve.protocol import APIError, invalid_value
from trait_lab.vectors.selection import select_vector

__all__ = ["MAX_EDIT_NORM", "POSITIONS", "SteeringItem", "SteeringResolver", "parse_steering"]

MAX_EDIT_NORM = 1e5
"""Largest ``|coefficient| · ‖vector‖`` accepted: beyond it a model only produces garbage."""
POSITIONS = ("all", "response")
_BY_TRAIT = {"trait", "coefficient", "layer", "method", "component", "positions"}
_BY_VALUE = {"vector", "coefficient", "layer", "component", "positions"}
_EXAMPLE = '{"trait": "optimism", "coefficient": 4.0} or {"vector": [...], "layer": 12, ...}'


@dataclass(frozen=True)
class SteeringItem:
    """One checked ``steering`` item (``trait`` or ``vector`` is set, never both)."""

    index: int
    coefficient: float | None
    layer: int | None = None
    component: str = "residual"
    positions: str = "all"
    trait: str | None = None
    method: str | None = None
    vector: tuple[float, ...] | None = None

    def param(self, field: str) -> str:
        """The field's name in error messages, e.g. ``steering[1].layer``."""
        return f"steering[{self.index}].{field}"


def parse_steering(raw: Any) -> list[SteeringItem]:
    """Check the shape of a request's ``steering`` value (``None`` means no steering).

    Example:
        >>> parse_steering([{"trait": "optimism", "coefficient": 4}])[0].coefficient
        4.0
    """
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise invalid_value("steering", raw, f"a list of items like {_EXAMPLE}", "Wrap it in [].")
    return [_item(i, entry) for i, entry in enumerate(raw)]


def _item(index: int, entry: Any) -> SteeringItem:
    where = f"steering[{index}]"
    if not isinstance(entry, Mapping) or ("trait" in entry) == ("vector" in entry):
        raise invalid_value(
            where, entry, f"an object with either 'trait' or 'vector': {_EXAMPLE}", "See above."
        )
    allowed, kind = (_BY_TRAIT, "by trait") if "trait" in entry else (_BY_VALUE, "by value")
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise APIError(
            f"unknown field {unknown[0]!r} in {where}; an item {kind} takes "
            f"{', '.join(sorted(allowed))}. Remove it.",
            param=f"{where}.{unknown[0]}",
            code="unknown_parameter",
        )
    item = SteeringItem(
        index=index,
        coefficient=_coefficient(where, entry.get("coefficient")),
        layer=_layer(where, entry.get("layer")),
        component=_choice(where, "component", entry.get("component", "residual"), COMPONENTS),
        positions=_choice(where, "positions", entry.get("positions", "all"), POSITIONS),
        trait=_name(where, "trait", entry.get("trait")) if "trait" in entry else None,
        method=_name(where, "method", entry.get("method")) if "method" in entry else None,
        vector=_vector(where, entry["vector"]) if "vector" in entry else None,
    )
    if item.vector is not None and item.layer is None:
        raise APIError(
            f'{where}.layer is required with a vector given by value: add "layer": L (0-based)',
            param=f"{where}.layer",
            code="missing_required_parameter",
        )
    return item


def _number_ok(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _coefficient(where: str, value: Any) -> float | None:
    if value is None:
        return None
    if not _number_ok(value) or abs(value) > MAX_EDIT_NORM:
        raise invalid_value(
            f"{where}.coefficient",
            value,
            f"a finite number with |coefficient| <= {MAX_EDIT_NORM:g}",
            "Useful values are a few percent of the layer's residual norm "
            "(trait_lab.activations.coefficient_for computes one).",
        )
    return float(value)


def _layer(where: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid_value(f"{where}.layer", value, "a layer index >= 0", "Pass an integer.")
    return value


def _choice(where: str, field: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        fix = f"Omit it for the default, {allowed[0]!r}."
        raise invalid_value(f"{where}.{field}", value, f"one of {', '.join(allowed)}", fix)
    return str(value)


def _name(where: str, field: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise invalid_value(f"{where}.{field}", value, "a non-empty string", "Pass its name.")
    return value


def _vector(where: str, value: Any) -> tuple[float, ...]:
    if not isinstance(value, list) or not value or not all(_number_ok(v) for v in value):
        shown = value if not isinstance(value, list) else f"a list of {len(value)} items"
        raise invalid_value(
            f"{where}.vector", shown, "a non-empty list of finite numbers", "Send plain floats."
        )
    return tuple(float(v) for v in value)


class SteeringResolver:
    """Turns checked ``steering`` items into ``SteeringConfig`` s for one model.

    Args:
        model: the served model (layers and widths are checked against it).
        experiment: where trait names are looked up (``None``: steering by value only).
        variant: the experiment's model variant whose extractions are used.
        root: the experiments folder (default: :func:`trait_lab.core.paths.experiments_root`).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        experiment: str | None = None,
        variant: str = "instruct",
        root: str | os.PathLike[str] | None = None,
    ) -> None:
        self.model = model
        self.n_layers = n_layers(model)
        self.experiment = experiment
        self.variant = variant
        self.root = root

    def configs(self, raw: Any) -> list[SteeringConfig]:
        """One ``SteeringConfig`` per item of a request's ``steering`` value."""
        configs = []
        for item in parse_steering(raw):
            if item.layer is not None and item.layer >= self.n_layers:
                raise invalid_value(
                    item.param("layer"),
                    item.layer,
                    f"a layer of this model: 0..{self.n_layers - 1}",
                    f"The model has {self.n_layers} layers.",
                )
            if item.vector is not None:
                vector, layer, found = torch.tensor(item.vector), item.layer, None
            else:
                vector, layer, found = self._by_trait(item)
            assert layer is not None
            configs.append(self._config(item, vector, layer, self._coefficient_of(item, found)))
        return configs

    def _coefficient_of(self, item: SteeringItem, found: VectorResult | None) -> float:
        """The item's coefficient; when omitted, the steering-validated recommendation of the
        selected vector (``trait-lab evaluate``), else an error."""
        if item.coefficient is not None:
            return item.coefficient
        if found is not None and found.coefficient is not None:
            return float(found.coefficient)
        raise APIError(
            f'{item.param("coefficient")} is required: add "coefficient": C, the norm of what '
            "is added to the unit vector's layer (a few percent of the residual norm), or run "
            "`trait-lab evaluate --trait T` on the server's experiment so that a trait's "
            "recommended coefficient is used when none is given",
            param=item.param("coefficient"),
            code="missing_required_parameter",
        )

    def _config(
        self, item: SteeringItem, vector: torch.Tensor, layer: int, coefficient: float
    ) -> SteeringConfig:
        try:
            target = resolve_target(self.model, layer, item.component)
        except (ValueError, KeyError) as exc:
            raise invalid_value(
                item.param("component"), item.component, "a component this model has", str(exc)
            ) from exc
        width = expected_width(self.model, target)
        if width is not None and vector.numel() != width:
            raise invalid_value(
                item.param("vector"),
                f"a vector of {vector.numel()} numbers",
                f"{width} numbers, the width of {item.component} at layer {layer}",
                "Use a vector extracted from this model.",
            )
        edit = abs(coefficient) * float(vector.float().norm())
        if not math.isfinite(edit) or edit > MAX_EDIT_NORM:
            raise invalid_value(
                item.param("coefficient"),
                coefficient,
                f"|coefficient| x vector norm <= {MAX_EDIT_NORM:g} (here {edit:.3g})",
                "Lower the coefficient, or normalise the vector.",
            )
        return SteeringConfig(
            vector=vector.float(),
            layer=layer,
            coefficient=coefficient,
            component=item.component,
            positions="response" if item.positions == "response" else "all",
        )

    def _by_trait(self, item: SteeringItem) -> tuple[torch.Tensor, int, VectorResult | None]:
        if self.experiment is None:
            raise APIError(
                f"{item.param('trait')}={item.trait!r} needs an experiment, and this server has "
                "none: start it with `trait-lab serve --experiment NAME`, or send the vector by "
                'value: {"vector": [...], "layer": L, "coefficient": C}',
                param=item.param("trait"),
                code="no_experiment",
            )
        assert item.trait is not None
        try:
            folder = extraction_dir(self.experiment, item.trait, self.variant, self.root)
        except ValueError as exc:
            raise invalid_value(item.param("trait"), item.trait, "a trait name", str(exc)) from exc
        if not folder.is_dir():
            raise invalid_value(
                item.param("trait"),
                item.trait,
                f"a trait extracted in experiment {self.experiment!r} (variant {self.variant!r}): "
                f"{', '.join(self._traits()) or 'none yet'}",
                f"Run `trait-lab extract --experiment {self.experiment} --trait {item.trait}` "
                "first, or pick one of those.",
            )
        if item.layer is not None and item.method is not None:
            return self._vector_file(item, folder), item.layer, None
        return self._selected(item)

    def _traits(self) -> list[str]:
        base = experiment_dir(str(self.experiment), self.root) / "extraction"
        return sorted(p.parent.name for p in base.glob(f"*/{self.variant}") if p.is_dir())

    def _vector_file(self, item: SteeringItem, folder: Path) -> torch.Tensor:
        assert item.layer is not None and item.method is not None
        try:
            path = vector_path(folder, item.component, item.method, item.layer)
        except ValueError as exc:
            raise invalid_value(item.param("method"), item.method, "a method", str(exc)) from exc
        if not path.is_file():
            found = sorted(
                f"{p.parent.name}@{p.stem.removeprefix('layer_')}"
                for p in (folder / "vectors" / item.component).glob("*/layer_*.safetensors")
            )
            raise invalid_value(
                item.param("method"),
                item.method,
                f"an extracted method@layer of {item.trait!r}: {', '.join(found) or 'none'}",
                f"No vector file at {path}; pick an existing one or omit layer/method to select.",
            )
        return _tensor(load_vector(path))

    def _selected(self, item: SteeringItem) -> tuple[torch.Tensor, int, VectorResult]:
        assert self.experiment is not None and item.trait is not None
        try:
            found = select_vector(
                self.experiment,
                item.trait,
                self.variant,
                component=item.component,
                methods=None if item.method is None else [item.method],
                layers=None if item.layer is None else [item.layer],
                root=None if self.root is None else str(self.root),
            )
        except (ValueError, FileNotFoundError) as exc:
            raise APIError(
                f"no vector for {item.param('trait')}={item.trait!r} with the given "
                f"layer/method/component: {exc}",
                param=item.param("trait"),
            ) from exc
        if found.path is None:
            raise APIError(f"the selected vector {found!r} has no file", param=item.param("trait"))
        return _tensor(load_vector(found.path)), found.layer, found


def _tensor(loaded: Any) -> torch.Tensor:
    tensor = loaded[0] if isinstance(loaded, tuple) else loaded
    return tensor.float()
