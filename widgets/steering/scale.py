"""The token colour scale: fixed per (colour trait, layer), so the same text keeps its shade
however the sliders move.

Locked (the default), a (trait, layer) keeps one scale for the panel's life: the one given
(``SteeringPanel(colour_scale=...)``), else its calibration — the 99th percentile of |cosine|
over the neutral prompts the panel measures typical norms on (``calibrate``, from
``trait_lab.activations.typical_cosines``) — else, without a tokenizer to calibrate with, the
largest |cosine| of the first complete baseline coloured at it (shown as provisional while
that baseline streams). Unlocked, the scale follows each run's largest |cosine| (contrast, not
comparability); locking again keeps the value shown.

Example:
    >>> scale = ColourScale.from_argument(None)
    >>> scale.current(("joy", 3), [0.1, -0.3], [0.9], complete=True)
    (0.3, 'locked, from the first baseline')
    >>> scale.current(("joy", 3), [0.05], [0.9], complete=True)[0]
    0.3
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trait_lab.activations import typical_cosines
from trait_lab.core import invalid
from trait_lab.prompts import load_prompt_set

Key = tuple[str, int]
#: the smallest scale: below it, float noise would look like a signal
FLOOR = 0.05


def _positive(value: Any, name: str) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise invalid(
            "SteeringPanel",
            name,
            value,
            "a positive finite cosine (full colour at ±value)",
            "Pass e.g. colour_scale=0.3, or {('joy', 12): 0.3}, or None to set it from the "
            "first baseline.",
        )
    return float(value)


def _largest(scores: Iterable[float | None]) -> float:
    return max([abs(s) for s in scores if s is not None and math.isfinite(s)] + [FLOOR])


@dataclass
class ColourScale:
    """The scale per (trait, layer); ``locked`` switches between fixed and per-run."""

    default: float | None = None
    fixed: dict[Key, float] = field(default_factory=dict)
    kept: dict[Key, float] = field(default_factory=dict)
    locked: bool = True
    shown: float = 1.0
    calibrate: Callable[[Key], float] | None = None
    sources: dict[Key, str] = field(default_factory=dict)

    @classmethod
    def from_argument(cls, value: float | Mapping[Key, float] | None) -> ColourScale:
        """From ``SteeringPanel(colour_scale=...)``: one number, ``{(trait, layer): value}``
        or ``None``."""
        if value is None:
            return cls()
        if isinstance(value, Mapping):
            fixed = {}
            for key, v in value.items():
                if not (isinstance(key, tuple) and len(key) == 2):
                    raise invalid(
                        "SteeringPanel",
                        "colour_scale key",
                        key,
                        "a (trait name, layer) pair",
                        "Write {('joy', 12): 0.3}.",
                    )
                fixed[(str(key[0]), int(key[1]))] = _positive(v, f"colour_scale[{key!r}]")
            return cls(fixed=fixed)
        return cls(default=_positive(value, "colour_scale"))

    def current(
        self,
        key: Key,
        baseline: Iterable[float | None],
        steered: Iterable[float | None],
        complete: bool,
    ) -> tuple[float, str]:
        """The scale to draw with and how it was set; keeps a complete baseline's scale."""
        if key in self.fixed or self.default is not None:
            self.shown = self.fixed.get(key, self.default or 1.0)
            return self.shown, "fixed (given)"
        base = list(baseline)
        if not self.locked:
            self.shown = _largest([*base, *steered])
            return self.shown, "unlocked: rescaled every run"
        if key in self.kept:
            self.shown = self.kept[key]
            return self.shown, self.sources.get(key, "locked, from the first baseline")
        self.shown = _largest(base)
        if complete:
            self.kept[key] = self.shown
            return self.shown, "locked, from the first baseline"
        return self.shown, "provisional: the first baseline is streaming"

    def prepare(self, key: Key) -> None:
        """Calibrate ``key``'s scale if it will be needed and is not known yet. Call it where
        nothing else uses the model (the panel: its worker, before generating)."""
        given = key in self.fixed or self.default is not None
        if self.calibrate is None or given or not self.locked or key in self.kept:
            return
        self.kept[key] = max(FLOOR, self.calibrate(key))
        self.sources[key] = "locked, calibrated on neutral prompts (99th pct |cos|)"

    def lock(self, key: Key, locked: bool) -> None:
        """Lock (keeping the scale shown now for ``key``) or unlock."""
        if locked and not self.locked:
            self.kept[key] = self.shown
            self.sources[key] = "locked at the scale shown when locked"
        self.locked = locked


def neutral_texts() -> list[str]:
    """The 16 everyday prompts the panel measures typical norms and calibrates scales on.

    Example:
        >>> len(neutral_texts())
        16
    """
    return load_prompt_set("neutral")[:16]


def calibrated(
    backend: Any, targets: Iterable[Any], given: object = None
) -> Callable[[Key], float] | None:
    """The calibration of each (trait, layer) scale, measured once per trait on first use:
    ``typical_cosines`` of the trait's vectors over :func:`neutral_texts`. ``None`` when a scale
    was ``given`` or the backend has no tokenizer (then the first baseline sets it).

    Example:
        >>> calibrated(None, [], given=0.3) is None
        True
    """
    if given is not None or getattr(backend, "tokenizer", None) is None:
        return None
    by_name = {t.name: t for t in targets}
    cache: dict[str, dict[int, float]] = {}

    def scale(key: Key) -> float:
        name, layer = key
        if name not in cache:
            vectors = dict(by_name[name].vectors)
            cache[name] = typical_cosines(
                backend.model, neutral_texts(), vectors, tokenizer=backend.tokenizer
            )
        return cache[name][layer]

    return scale
