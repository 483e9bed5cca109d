"""The token colour scale: fixed per (colour trait, layer), so the same text keeps its shade
however the sliders move.

Locked (the default), a (trait, layer) keeps one scale for the panel's life: the one given
(``SteeringPanel(colour_scale=...)``), else the largest |cosine| of the first complete
baseline coloured at it (the baseline does not depend on the sliders), shown as provisional
while that first baseline streams. Unlocked, the scale follows each run's largest |cosine|
(contrast, not comparability); locking again keeps the value shown. There is no per-trait
statistic in ``calibration.json`` (it holds massive dims and norms), so a trait's scale from
outside has to be passed in.

Example:
    >>> scale = ColourScale.from_argument(None)
    >>> scale.current(("joy", 3), [0.1, -0.3], [0.9], complete=True)
    (0.3, 'locked, from the first baseline')
    >>> scale.current(("joy", 3), [0.05], [0.9], complete=True)[0]
    0.3
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from trait_lab.core import invalid

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
            return self.shown, "locked, from the first baseline"
        self.shown = _largest(base)
        if complete:
            self.kept[key] = self.shown
            return self.shown, "locked, from the first baseline"
        return self.shown, "provisional: the first baseline is streaming"

    def lock(self, key: Key, locked: bool) -> None:
        """Lock (keeping the scale shown now for ``key``) or unlock."""
        if locked and not self.locked:
            self.kept[key] = self.shown
        self.locked = locked
