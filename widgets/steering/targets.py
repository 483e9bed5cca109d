"""What a steering panel steers with: named vectors (one layer to pick, or a fixed ensemble)
turned into the library's ``SteeringSpec`` list for given slider values. No UI here.

A slider value is a *fraction*: in modes add, cap and ceiling it is a fraction of the typical
residual norm at the layer (so one range works at every depth; the vector is unit-normalised);
in mode ablate it is the ablation strength (1 removes the direction).

Example:
    >>> import torch
    >>> targets = steering_targets({"joy": (torch.ones(4), 2)}, n_layers=4, hidden=4)
    >>> spec = build_specs(targets, {"joy": 0.5}, {"joy": 2}, "add", {2: 10.0})[0]
    >>> spec.layer, spec.coefficient, round(float(spec.vector.norm()), 4)
    (2, 5.0, 1.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from trait_lab.activations import coefficient_for
from trait_lab.core import VectorResult, check_float
from trait_lab.generation import STEERING_MODES, SteeringSpec
from trait_lab.hooks import as_vector
from trait_lab.vectors import load_selected

PANEL_MODES = ("add", "ablate", "cap", "ceiling")


@dataclass
class SteeringTarget:
    """One slider's worth of steering.

    ``vectors`` maps each layer the picker offers to a unit vector. An ensemble has
    ``weights`` (layer → weight): every member is applied at once and there is nothing to pick.
    ``source_layer`` is set when one vector serves every layer (it was found at that layer).
    """

    name: str
    vectors: dict[int, torch.Tensor]
    default_layer: int
    weights: dict[int, float] | None = None
    source_layer: int | None = None

    @property
    def is_ensemble(self) -> bool:
        return self.weights is not None


def _unit(vector: Any, where: str, hidden: int) -> torch.Tensor:
    return as_vector(vector, name=where, width=hidden, direction=True)  # refuses complex too


def _weight(value: Any, where: str) -> float:
    number = value.item() if torch.is_tensor(value) and value.numel() == 1 else value
    return check_float("SteeringPanel", where, number)


def check_layer(value: Any, where: str, n_layers: int) -> int:
    """``value`` as a layer index of a model with ``n_layers`` layers; ``where`` names it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where} must be a layer index (int), got {value!r}")
    if not 0 <= int(value) < n_layers:
        raise ValueError(
            f"{where} is layer {value}; the model has layers 0..{n_layers - 1}: pass a layer "
            "in that range"
        )
    return int(value)


def _is_vector(value: Any) -> bool:
    return torch.is_tensor(value) or isinstance(value, np.ndarray)


def selected_vectors(
    vectors: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, tuple[int, float]]]:
    """Replace each ``VectorResult`` (from ``select_vector``) by ``(vector, layer)``.

    Returns the vectors and ``{name: (layer, recommended coefficient)}`` for the
    steering-validated ones.

    Example:
        >>> selected_vectors({"t": ("v", 3)})
        ({'t': ('v', 3)}, {})
    """
    if not isinstance(vectors, Mapping):
        return vectors, {}
    out: dict[str, Any] = {}
    recommended: dict[str, tuple[int, float]] = {}
    for name, value in vectors.items():
        if isinstance(value, VectorResult):
            out[name] = (load_selected(value), value.layer)
            if value.coefficient is not None:
                recommended[name] = (value.layer, float(value.coefficient))
        else:
            out[name] = value
    return out, recommended


def steering_targets(
    vectors: Mapping[str, Any], n_layers: int, hidden: int, layer: int | None = None
) -> list[SteeringTarget]:
    """Normalise the panel's ``vectors`` argument.

    Each value may be: a vector (needs ``layer=``; the picker offers every layer), a
    ``(vector, layer)`` pair, a ``{layer: vector}`` dict (the picker offers those layers), or
    an ensemble ``[(vector, layer, weight), ...]``.
    """
    if not isinstance(vectors, Mapping) or not vectors:
        raise ValueError(
            "vectors must be a non-empty dict {name: vector | (vector, layer) | {layer: vector} "
            "| [(vector, layer, weight), ...]}"
        )
    if layer is not None:
        check_layer(layer, "layer", n_layers)
    targets = []
    for name, value in vectors.items():
        where = f"vectors[{name!r}]"
        if not isinstance(name, str) or not name.strip():
            raise ValueError(
                f"vectors has the name {name!r}; each name labels a slider, so it must be a "
                "non-empty string: rename it, e.g. 'optimism'"
            )
        if _is_vector(value):
            if layer is None:
                raise ValueError(
                    f"{where} is a bare vector, so its layer is unknown: pass (vector, layer), "
                    "{layer: vector}, or layer= to the panel"
                )
            default = check_layer(layer, "layer", n_layers)
            unit = _unit(value, where, hidden)
            every = dict.fromkeys(range(n_layers), unit)
            targets.append(SteeringTarget(name, every, default, source_layer=default))
        elif isinstance(value, tuple) and len(value) == 2:
            default = check_layer(value[1], f"{where}[1]", n_layers)
            unit = _unit(value[0], f"{where}[0]", hidden)
            every = dict.fromkeys(range(n_layers), unit)
            targets.append(SteeringTarget(name, every, default, source_layer=default))
        elif isinstance(value, Mapping) and value:
            per = {
                check_layer(k, f"{where} key", n_layers): _unit(v, f"{where}[{k}]", hidden)
                for k, v in value.items()
            }
            keys = sorted(per)
            default = layer if layer in per else keys[len(keys) // 2]
            targets.append(SteeringTarget(name, dict(sorted(per.items())), default))
        elif (
            isinstance(value, Sequence)
            and value
            and all(isinstance(m, tuple) and len(m) == 3 for m in value)
        ):
            per, weights = {}, {}
            for i, (vec, lay, weight) in enumerate(value):
                key = check_layer(lay, f"{where}[{i}] layer", n_layers)
                if key in per:
                    raise ValueError(f"{where} has two members at layer {key}; merge them")
                per[key] = _unit(vec, f"{where}[{i}] vector", hidden)
                weights[key] = _weight(weight, f"{where}[{i}] weight")
            targets.append(SteeringTarget(name, per, min(per), weights))
        else:
            raise TypeError(
                f"{where} is a {type(value).__name__}; give a vector, (vector, layer), "
                "{layer: vector} or [(vector, layer, weight), ...]"
            )
    _check_default_layer(layer, vectors, targets)
    return targets


def _check_default_layer(
    layer: int | None, vectors: Mapping[str, Any], targets: list[SteeringTarget]
) -> None:
    """``layer=`` must start something: a bare vector, or a ``{layer: vector}`` that has it
    (the others start at their middle layer)."""
    picks = [t for t in targets if isinstance(vectors[t.name], Mapping)]
    if layer is None or not picks or any(_is_vector(v) for v in vectors.values()):
        return
    if not any(layer in t.vectors for t in picks):
        offered = {t.name: sorted(t.vectors) for t in picks}
        raise ValueError(
            f"layer={layer} is not among the layers of the vectors {offered}; pass one of "
            "those as layer=, or leave layer unset to start each at its middle layer"
        )


def coefficients(
    target: SteeringTarget, fraction: float, picked: int, mode: str, norms: Mapping[int, float]
) -> dict[int, float]:
    """``{layer: coefficient}`` one slider value stands for: the picked layer, or every member
    of an ensemble (times its weight); units as in the module docstring.

    Example:
        >>> import torch
        >>> target = steering_targets({"e": [(torch.ones(4), 1, 0.5)]}, 4, 4)[0]
        >>> coefficients(target, 0.4, 1, "add", {1: 10.0})
        {1: 2.0}
    """
    result = {}
    for layer, weight in (target.weights or {picked: 1.0}).items():
        if layer not in target.vectors:
            raise ValueError(
                f"{target.name!r} has no vector at layer {layer}; pick one of "
                f"{sorted(target.vectors)}"
            )
        result[layer] = coefficient_for(norms, layer, fraction * weight, mode)
    return result


def build_specs(
    targets: Sequence[SteeringTarget],
    fractions: Mapping[str, float],
    layers: Mapping[str, int],
    mode: str,
    norms: Mapping[int, float],
    positions: Any = "response",
    rows: Sequence[int] | None = None,
) -> list[SteeringSpec]:
    """The ``SteeringSpec`` list for the current slider values (targets at 0 are skipped).

    Args:
        fractions: slider value per target name (see the module docstring for units).
        layers: the picked layer per target (ignored for ensembles).
        mode: one of ``PANEL_MODES``.
        norms: typical residual norm per layer (``trait_lab.activations.norms.typical_norms``).
        rows: restrict to these batch rows (e.g. ``[1]`` to keep row 0 as the baseline).
    """
    if mode not in PANEL_MODES or mode not in STEERING_MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(PANEL_MODES)}")
    specs = []
    for target in targets:
        fraction = float(fractions.get(target.name, 0.0))
        if fraction == 0.0 and mode in ("add", "ablate"):
            continue  # exactly no-op; capping at 0 is not, so it stays
        picked = layers.get(target.name, target.default_layer)
        for layer, coefficient in coefficients(target, fraction, picked, mode, norms).items():
            specs.append(
                SteeringSpec(
                    layer=layer,
                    vector=target.vectors[layer],
                    coefficient=coefficient,
                    positions=positions,
                    mode=mode,  # type: ignore[arg-type]
                    rows=rows,
                )
            )
    return specs
