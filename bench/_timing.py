"""Timing helpers shared by the bench scripts: interleaved repeats, medians, ratio tables."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def interleaved(
    cases: dict[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> dict[str, float]:
    """Median seconds per case; cases run round-robin so drift hits them all alike."""
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def table(times: dict[str, float], baseline: str, note: dict[str, str] | None = None) -> str:
    """A markdown table of median times and their ratio to ``baseline``."""
    note = note or {}
    base = times[baseline]
    lines = ["| case | median s | ratio vs " + baseline + " | note |", "|---|---|---|---|"]
    for name, seconds in times.items():
        lines.append(f"| {name} | {seconds:.3f} | {seconds / base:.2f}x | {note.get(name, '')} |")
    return "\n".join(lines)
