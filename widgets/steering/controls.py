"""The steering panel's controls: a slider row per target, the sampling settings, readouts.

``SteeringPanel`` lays these out and wires them; building them here keeps each control's
description, default and order in one place.

Example:
    >>> ctl = sampling_controls(max_new_tokens=24)
    >>> ctl.config().max_new_tokens, ctl.config().seed
    (24, None)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as w

from trait_lab.generation import GenerationConfig
from widgets.steering.labels import MODE_LABELS, MODE_TIPS, UNITS, layers_text
from widgets.steering.targets import PANEL_MODES, SteeringTarget, coefficients

#: where the panel may steer: generated tokens, the whole sequence, or the prompt
POSITIONS: tuple[str, ...] = ("response", "all", "prompt")
#: slider range per mode (every range ends at 1.0)
RANGES: dict[str, tuple[float, float]] = {
    "add": (-1.0, 1.0),
    "ablate": (0.0, 1.0),
    "cap": (-1.0, 1.0),
    "ceiling": (-1.0, 1.0),
}
#: the max tokens slider's range
MAX_TOKENS: tuple[int, int] = (4, 256)
#: descriptions are shown whole (ipywidgets' default width cuts "temperature" to "temperat…")
WIDE = {"description_width": "initial"}
__all__ = [
    "MAX_TOKENS",
    "POSITIONS",
    "RANGES",
    "UNITS",
    "WIDE",
    "SamplingControls",
    "TargetControls",
    "colour_controls",
    "mode_controls",
    "readout_text",
    "sampling_controls",
    "target_controls",
    "target_rows",
]


@dataclass
class TargetControls:
    """One target's slider, layer picker and coefficient readout, and the row that holds them."""

    slider: w.FloatSlider
    picker: w.Dropdown
    readout: w.HTML
    row: w.HBox


def target_controls(target: SteeringTarget, start: float, mode: str) -> TargetControls:
    """The slider (range of ``mode``), layer picker and readout of one steering target.

    Example:
        >>> import torch
        >>> target = SteeringTarget("joy", {2: torch.ones(4), 3: torch.ones(4)}, 3)
        >>> ctl = target_controls(target, 0.4, "ablate")
        >>> ctl.slider.description, ctl.slider.min, ctl.picker.value
        ('joy', 0.0, 3)
    """
    low, high = RANGES[mode]
    slider = w.FloatSlider(
        value=start,
        min=low,
        max=high,
        step=0.02,
        description=target.name,
        readout_format=".2f",
        style=WIDE,
        layout=w.Layout(width="420px"),
    )
    slider.add_class("tl-coef")
    options: list[Any] = sorted(target.vectors)
    if target.is_ensemble:  # acts at every member at once: one entry naming them all
        label = f"{layers_text(target, target.default_layer)} (ensemble)"
        options = [(label, target.default_layer)]
    picker = w.Dropdown(
        options=options,
        value=target.default_layer,
        description="layer",
        disabled=target.is_ensemble,
        style=WIDE,
        layout=w.Layout(width="auto", min_width="150px"),
    )
    picker.add_class("tl-layer")
    readout = w.HTML()
    return TargetControls(slider, picker, readout, w.HBox([slider, picker, readout]))


def target_rows(
    targets: Sequence[SteeringTarget], value: float | Mapping[str, float], mode: str
) -> tuple[dict[str, w.FloatSlider], dict[str, w.Dropdown], dict[str, w.HTML], list[w.Widget]]:
    """Sliders, layer pickers and readouts by target name, and one row per target.

    Example:
        >>> import torch
        >>> target = SteeringTarget("joy", {2: torch.ones(4)}, 2)
        >>> sliders, pickers, readouts, rows = target_rows([target], {"joy": 0.5}, "add")
        >>> sliders["joy"].value, len(rows)
        (0.5, 1)
    """
    sliders, pickers, readouts, rows = {}, {}, {}, []
    for target in targets:
        start = value.get(target.name, 0.0) if isinstance(value, Mapping) else value
        ctl = target_controls(target, start, mode)
        sliders[target.name], pickers[target.name] = ctl.slider, ctl.picker
        readouts[target.name] = ctl.readout
        rows.append(ctl.row)
    return sliders, pickers, readouts, rows


@dataclass
class SamplingControls:
    """Max tokens, temperature, top p and seed, in one row (``box``)."""

    max_new_tokens: w.IntSlider
    temperature: w.FloatSlider
    top_p: w.FloatSlider
    seed: w.IntText
    box: w.HBox

    def config(self) -> GenerationConfig:
        """The generation settings the controls show (greedy, and no seed, at temperature 0)."""
        return GenerationConfig(
            max_new_tokens=self.max_new_tokens.value,
            temperature=self.temperature.value,
            top_p=self.top_p.value if self.top_p.value < 1.0 else None,
            seed=self.seed.value if self.temperature.value > 0 else None,
        )


def sampling_controls(max_new_tokens: int) -> SamplingControls:
    """The sampling controls, greedy by default.

    Example:
        >>> sampling_controls(40).temperature.value
        0.0
    """
    low, high = MAX_TOKENS
    max_tokens = w.IntSlider(
        value=max_new_tokens, min=low, max=high, step=4, description="max tokens", style=WIDE
    )
    temperature = w.FloatSlider(
        value=0.0, min=0.0, max=1.5, step=0.05, description="temperature", style=WIDE
    )
    top_p = w.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.05, description="top p", style=WIDE)
    seed = w.IntText(value=0, description="seed", style=WIDE, layout=w.Layout(width="140px"))
    for control in (max_tokens, temperature, top_p, seed):
        control.add_class("tl-sampling")
    box = w.HBox([max_tokens, temperature, top_p, seed], layout=w.Layout(flex_flow="row wrap"))
    return SamplingControls(max_tokens, temperature, top_p, seed, box)


def readout_text(
    target: SteeringTarget, fraction: float, picked: int, mode: str, norms: Mapping[int, float]
) -> str:
    """What a target's readout says: the coefficient per layer (or the ablation strength).

    An error computing the coefficients is shown as the text (the status line reports it too).

    Example:
        >>> import torch
        >>> target = SteeringTarget("joy", {2: torch.ones(4)}, 2)
        >>> readout_text(target, 0.5, 2, "add", {2: 10.0})
        'add × typical norm → L2: +5.0'
    """
    unit = UNITS[mode]
    if mode == "ablate":
        text = f"{fraction:.2f} {unit}"
    else:
        try:
            coefs = coefficients(target, fraction, picked, mode, norms)
            text = ", ".join(f"L{layer}: {c:+.1f}" for layer, c in coefs.items())
        except (KeyError, ValueError) as exc:  # refresh() shows it in the status line
            text = str(exc).strip("'\"")
        text = f"{unit} → {text}"
    if target.source_layer is not None and picked != target.source_layer:
        text += f" (the layer-{target.source_layer} vector, applied at L{picked})"
    return text


def mode_controls(mode: str, positions: str) -> tuple[w.ToggleButtons, w.Dropdown]:
    """The mode buttons (floor / ceiling named as such, a tooltip each) and "steer at".

    Example:
        >>> buttons, where = mode_controls("cap", "response")
        >>> buttons.label, where.value
        ('floor (cap)', 'response')
    """
    buttons = w.ToggleButtons(
        options=[(MODE_LABELS[m], m) for m in PANEL_MODES],
        tooltips=[MODE_TIPS[m] for m in PANEL_MODES],
        value=mode,
        description="mode",
        style={**WIDE, "button_width": "auto"},
    )
    buttons.add_class("tl-mode")
    where = w.Dropdown(options=list(POSITIONS), value=positions, description="steer at", style=WIDE)
    where.add_class("tl-positions")
    return buttons, where


def colour_controls(
    targets: Sequence[SteeringTarget], layer: int, locked: bool
) -> tuple[w.Dropdown, w.Dropdown, w.ToggleButton]:
    """The colour trait (the first target) and layer pickers and the "lock scale" toggle.

    Example:
        >>> import torch
        >>> target = SteeringTarget("joy", {2: torch.ones(4), 3: torch.ones(4)}, 3)
        >>> trait, layer, lock = colour_controls([target], 3, True)
        >>> trait.value, layer.options, lock.description
        ('joy', (2, 3), 'lock scale')
    """
    trait = w.Dropdown(
        options=[t.name for t in targets],
        value=targets[0].name,
        description="colour by",
        style=WIDE,
    )
    trait.add_class("tl-colour-trait")
    picker = w.Dropdown(
        options=sorted(targets[0].vectors),
        value=layer,
        description="at layer",
        style=WIDE,
        layout=w.Layout(width="150px"),
    )
    picker.add_class("tl-colour-layer")
    lock = w.ToggleButton(
        value=locked,
        description="lock scale",
        icon="lock",
        tooltip="locked: one colour scale per trait and layer, so shades compare across runs",
    )
    lock.add_class("tl-lock-scale")
    return trait, picker, lock
