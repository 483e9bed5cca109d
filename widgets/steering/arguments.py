"""The steering panel's constructor arguments, checked: each error names the argument, the
value, what is allowed and the fix, before any control is built.

Example:
    >>> panel_norms(10.0, n_layers=2)
    {0: 10.0, 1: 10.0}
    >>> panel_norms({0: float("nan")}, n_layers=2)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: SteeringPanel.norms[0]=nan is invalid: expected a positive finite number ...
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from trait_lab.core import invalid
from trait_lab.generation import LocalBackend
from widgets.steering.controls import MAX_TOKENS, POSITIONS, RANGES
from widgets.steering.targets import PANEL_MODES, SteeringTarget, check_layer

OWNER = "SteeringPanel"
_NORM_FIX = (
    "Measure them with typical_norms(model, texts, tokenizer=tokenizer), or pass norms=None "
    "to let the panel measure them."
)


def check_arguments(backend: Any, mode: str, positions: str, max_new_tokens: Any) -> None:
    """The backend, mode, positions and response length the panel is asked for."""
    if not isinstance(backend, LocalBackend):
        raise TypeError(
            f"SteeringPanel needs a LocalBackend (hooks), got {type(backend).__name__}; "
            "use LocalBackend.from_model(model, tokenizer)"
        )
    if mode not in PANEL_MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(PANEL_MODES)}")
    if positions not in POSITIONS:
        raise ValueError(f"positions must be one of {', '.join(POSITIONS)}, got {positions!r}")
    low, high = MAX_TOKENS
    whole = isinstance(max_new_tokens, numbers.Integral) and not isinstance(max_new_tokens, bool)
    if not whole or not low <= max_new_tokens <= high:
        raise invalid(
            OWNER,
            "max_new_tokens",
            max_new_tokens,
            f"an int from {low} to {high} (the max tokens slider's range)",
            "Pass a value in that range, or generate longer texts with LocalBackend.generate.",
        )


def _scalar(value: Any) -> Any:
    return value.item() if torch.is_tensor(value) and value.numel() == 1 else value


def _norm(value: Any, name: str) -> float:
    number = _scalar(value)
    ok = isinstance(number, numbers.Real) and not isinstance(number, bool)
    if not ok or not math.isfinite(number) or number <= 0:
        allowed = "a positive finite number (the typical residual norm at a layer)"
        raise invalid(OWNER, name, value, allowed, _NORM_FIX)
    return float(number)


def _key(key: Any) -> Any:
    return int(key) if isinstance(key, str) and key.isdigit() else key  # JSON keys are strings


def panel_norms(norms: Any, n_layers: int) -> dict[int, float]:
    """``{layer: norm}`` from one number for every layer or a per-layer mapping; every norm a
    positive finite number at a layer of the model (0, NaN or inf would make the sliders
    steer by nothing or by NaN)."""
    if isinstance(norms, Mapping):
        if not norms:
            raise invalid(OWNER, "norms", norms, "a non-empty {layer: norm} dict", _NORM_FIX)
        return {
            check_layer(_key(k), f"norms key {k!r}", n_layers): _norm(v, f"norms[{k!r}]")
            for k, v in norms.items()
        }
    return dict.fromkeys(range(n_layers), _norm(norms, "norms"))


def check_norm_layers(targets: Iterable[SteeringTarget], norms: Mapping[int, float]) -> None:
    """Every layer a target steers at from the start has a norm."""
    for target in targets:
        for layer in target.weights or [target.default_layer]:
            if layer not in norms:
                raise ValueError(
                    f"norms has no value at layer {layer}, where {target.name!r} steers (norms "
                    f"covers layers {sorted(norms)}); add it, or pass one number for every "
                    "layer, or norms=None to let the panel measure them"
                )


def _fraction(value: Any, name: str, mode: str) -> float:
    low, high = RANGES[mode]
    number = _scalar(value)
    ok = isinstance(number, numbers.Real) and not isinstance(number, bool)
    if not ok or not math.isfinite(number) or not low <= number <= high:
        raise invalid(
            OWNER,
            name,
            value,
            f"a number from {low} to {high} (the slider's range in mode {mode!r})",
            "Pass a starting fraction in that range; in modes add, cap and ceiling 1.0 is one "
            "typical norm, so stronger steering needs a larger norm rather than a larger value.",
        )
    return float(number)


def start_values(
    value: Any,
    names: list[str],
    recommended: Mapping[str, tuple[int, float]],
    norms: Mapping[int, float],
    mode: str,
) -> dict[str, float]:
    """The starting slider value per target name.

    ``value`` is one fraction for all or ``{name: fraction}`` (missing names start at 0). In
    mode ``add`` a steering-validated vector whose name ``value`` does not set (and whose
    ``value`` is not a non-zero number for all) starts at its recommended coefficient over
    the norm at its layer, so the steered text starts at exactly the recommended strength.
    """
    if isinstance(value, Mapping):
        if unknown := set(value) - set(names):
            raise ValueError(
                f"value names {sorted(unknown)}, which are not among the vectors "
                f"{sorted(names)}; give a starting value per vector name"
            )
        given = {n: _fraction(v, f"value[{n!r}]", mode) for n, v in value.items()}
        start = {n: given.get(n, 0.0) for n in names}
    else:
        every = _fraction(value, "value", mode)
        given = {n: every for n in names} if every != 0.0 else {}
        start = dict.fromkeys(names, every)
    if mode != "add":
        return start
    for name, (layer, coefficient) in recommended.items():
        if name in given:
            continue
        fraction = coefficient / norms[layer]
        low, high = RANGES[mode]
        if not low <= fraction <= high:
            raise ValueError(
                f"vectors[{name!r}] recommends coefficient {coefficient:g} at layer {layer}, "
                f"which is {fraction:.3g} × the norm {norms[layer]:g} there, outside the "
                f"slider's range {low} to {high}; pass value={{{name!r}: ...}} to start "
                "elsewhere, or check norms= (the panel's norms may not match the model's)"
            )
        start[name] = fraction
    return start
