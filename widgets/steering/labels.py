"""What the steering panel calls things: mode buttons, the layers a target acts at, the
sampling settings and the one-line description of a run used by the steered column's title
and the exported figure's title.

Mode ``cap`` (the library's name, traitinterp's "activation capping") is a *floor* on the
projection, ``ceiling`` a ceiling: the buttons and readouts say floor / ceiling.

Example:
    >>> from trait_lab.generation import GenerationConfig
    >>> sampling_text(GenerationConfig(temperature=0.8, top_p=0.9, seed=3))
    'temperature 0.8, top p 0.9, seed 3'
    >>> sampling_text(GenerationConfig())
    'greedy'
"""

from __future__ import annotations

from trait_lab.generation import GenerationConfig
from widgets.steering.targets import SteeringTarget

#: the button label per mode (value: the library's mode name)
MODE_LABELS: dict[str, str] = {
    "add": "add",
    "ablate": "ablate",
    "cap": "floor (cap)",
    "ceiling": "ceiling",
}
#: what each mode does, for the buttons' tooltips
MODE_TIPS: dict[str, str] = {
    "add": "add slider × typical norm × the unit vector",
    "ablate": "remove the direction (1 = all of it)",
    "cap": "floor: raise the projection to at least slider × norm",
    "ceiling": "ceiling: lower the projection to at most slider × norm",
}
#: what a slider value means per mode, shown in its readout
UNITS: dict[str, str] = {
    "add": "add × typical norm",
    "ablate": "ablation strength",
    "cap": "floor at × norm",
    "ceiling": "ceiling at × norm",
}


def layers_text(target: SteeringTarget, picked: int) -> str:
    """The layers a target acts at: the picked one, or every member of an ensemble.

    Example:
        >>> import torch
        >>> ens = SteeringTarget("e", {3: torch.ones(2), 5: torch.ones(2)}, 3, {3: 1.0, 5: 0.5})
        >>> layers_text(ens, 3)
        'L3 + L5'
    """
    if target.weights:
        return " + ".join(f"L{layer}" for layer in sorted(target.weights))
    return f"L{picked}"


def sampling_text(config: GenerationConfig) -> str:
    """The sampling settings in words (``greedy`` at temperature 0)."""
    if config.temperature == 0:
        return "greedy"
    parts = [f"temperature {config.temperature:g}"]
    if config.top_p is not None:
        parts.append(f"top p {config.top_p:g}")
    if config.top_k is not None:
        parts.append(f"top k {config.top_k}")
    parts.append(f"seed {config.seed}")
    return ", ".join(parts)


def short_prompt(prompt: str, limit: int = 60) -> str:
    """The prompt on one line, cut at ``limit`` characters with an ellipsis.

    Example:
        >>> short_prompt("a  b\\nc")
        '"a b c"'
    """
    flat = " ".join(prompt.split())
    return f'"{flat if len(flat) <= limit else flat[: limit - 1] + "…"}"'


def run_title(
    mode: str,
    values: dict[str, float],
    where: dict[str, str],
    positions: str,
    config: GenerationConfig,
    prompt: str,
) -> str:
    """One line naming everything that made a steered text.

    Example:
        >>> run_title("cap", {"joy": 0.5}, {"joy": "L3"}, "response", GenerationConfig(), "Hi")
        'floor (cap): joy +0.50 @ L3 · steer at response · greedy · prompt "Hi"'
    """
    capping = mode in ("cap", "ceiling")  # a floor or ceiling at 0 still edits
    active = [
        f"{name} {value:+.2f} @ {where[name]}" for name, value in values.items() if value or capping
    ]
    steer = ", ".join(active) or "nothing"
    return (
        f"{MODE_LABELS[mode]}: {steer} · steer at {positions} · {sampling_text(config)} · "
        f"prompt {short_prompt(prompt)}"
    )
