"""Coefficient search: how hard each layer (set) can steer before the answers fall apart.

A *track* is one set of layers steered together in one direction (+1 toward the trait, -1
away). Its strength is a fraction of each layer's typical residual norm (the one coefficient
rule, :func:`trait_lab.activations.norms.coefficient_for`), so a multi-layer configuration
steers every layer with its own magnitude. Every round runs the next strength of every live
track as rows of **one** generation batch (:func:`~trait_lab.evaluation.batched.steered_answers`):

* adaptive (default): start small, multiply by ``growth`` while the answers stay coherent; once
  a strength breaks them, bisect between the last coherent and the first incoherent strength
  ``refine`` times — fine steps exactly where the useful range ends;
* grid: every fraction of ``fractions`` for every track.

With a :class:`~trait_lab.evaluation.results.ResultsLog` every evaluated configuration is
appended as it finishes and found again on a rerun (nothing is recomputed after a kill), and
the decisions replay identically from the logged entries.

Example:
    >>> track_configs([(12,), (9, 12)], {9: 100.0, 12: 150.0}, 0.02, direction=-1)
    [{12: -3.0}, {9: -2.0, 12: -3.0}]
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from trait_lab.activations.norms import coefficient_for
from trait_lab.core.distributed import Ranks
from trait_lab.evaluation.batched import score_configs, steered_answers
from trait_lab.evaluation.coherence import CoherenceRule
from trait_lab.evaluation.judges import Judge, JudgeItem
from trait_lab.evaluation.results import ResultsLog, SteeringEntry, config_key

LOG = logging.getLogger(__name__)

__all__ = [
    "MAX_FRACTION",
    "SearchSettings",
    "Track",
    "evaluate_configs",
    "search_coefficients",
    "track_configs",
]


MAX_FRACTION = 4.0
"""The largest strength a search tries: 4× a layer's typical residual norm (far past the point
where any model's answers have fallen apart)."""


@dataclass(frozen=True)
class SearchSettings:
    """How the search walks the strengths (fractions of each layer's typical norm).

    Args:
        start: first fraction tried by the adaptive search.
        growth: factor between strengths while still coherent (> 1).
        refine: bisection steps once a strength broke coherence.
        max_rounds: the most strengths one track tries.
        fractions: a manual grid instead of the adaptive walk (positive; signs come from
            ``directions``).
        directions: +1 (toward the trait), -1 (away), or both.
        max_new_tokens: answer length.
        batch_rows: generation rows per batch.
    """

    start: float = 0.02
    growth: float = 2.0
    refine: int = 2
    max_rounds: int = 10
    fractions: tuple[float, ...] | None = None
    directions: tuple[int, ...] = (1, -1)
    max_new_tokens: int = 48
    batch_rows: int = 64

    def __post_init__(self) -> None:
        if not (math.isfinite(self.start) and 0 < self.start <= MAX_FRACTION):
            raise ValueError(
                f"start={self.start!r} must be a fraction in (0, {MAX_FRACTION}], e.g. 0.02"
            )
        if not (math.isfinite(self.growth) and self.growth > 1):
            raise ValueError(f"growth={self.growth!r} must be > 1, e.g. 2.0")
        if self.refine < 0 or self.max_rounds < 1:
            raise ValueError(f"refine={self.refine!r} must be >= 0, max_rounds >= 1")
        if self.fractions is not None and (
            not self.fractions
            or any(not (math.isfinite(f) and 0 < f <= MAX_FRACTION) for f in self.fractions)
        ):
            raise ValueError(
                f"fractions={self.fractions!r} must be fractions of the typical norm in "
                f"(0, {MAX_FRACTION}] (signs come from directions), e.g. (0.05, 0.1, 0.2)"
            )
        if self.max_new_tokens < 1 or self.batch_rows < 1:
            raise ValueError(
                f"max_new_tokens={self.max_new_tokens!r} and batch_rows={self.batch_rows!r} "
                "must be >= 1"
            )
        if not self.directions or any(d not in (1, -1) for d in self.directions):
            raise ValueError(f"directions={self.directions!r} must hold +1 and/or -1")


@dataclass
class Track:
    """One layer set in one direction: the strengths tried, and where coherence broke."""

    layers: tuple[int, ...]
    direction: int
    tried: list[float] = field(default_factory=list)
    coherent_max: float | None = None
    incoherent_min: float | None = None
    refined: int = 0

    def next_fraction(self, settings: SearchSettings) -> float | None:
        """The next strength to try, or ``None`` when the track is done."""
        if len(self.tried) >= settings.max_rounds:
            return None
        if settings.fractions is not None:
            todo = [f for f in settings.fractions if f not in self.tried]
            return todo[0] if todo else None
        if not self.tried:
            return settings.start
        if self.incoherent_min is None:
            grown = self.tried[-1] * settings.growth
            return grown if grown <= MAX_FRACTION else None
        if self.refined >= settings.refine:
            return None
        low = self.coherent_max if self.coherent_max is not None else 0.0
        return (low + self.incoherent_min) / 2

    def record(self, fraction: float, coherent: bool) -> None:
        """Note one evaluated strength."""
        if self.incoherent_min is not None and self.tried:
            self.refined += 1
        self.tried.append(fraction)
        if coherent:
            self.coherent_max = max(self.coherent_max or 0.0, fraction)
        else:
            low = self.incoherent_min
            self.incoherent_min = fraction if low is None else min(low, fraction)


def track_configs(
    layer_sets: Sequence[tuple[int, ...]],
    norms: Mapping[int, float],
    fraction: float,
    direction: int = 1,
) -> list[dict[int, float]]:
    """The ``{layer: coefficient}`` of each layer set at one strength (``fraction`` × norm)."""
    return [
        {layer: coefficient_for(norms, layer, direction * fraction) for layer in layers}
        for layers in layer_sets
    ]


def search_coefficients(
    model: nn.Module,
    tokenizer: Any,
    judge: Judge,
    items: Sequence[JudgeItem],
    vectors: Mapping[int, Any],
    norms: Mapping[int, float],
    rule: CoherenceRule,
    log: ResultsLog,
    *,
    layer_sets: Sequence[tuple[int, ...]] | None = None,
    settings: SearchSettings | None = None,
    component: str = "residual",
    method: str = "probe",
    ranks: Ranks | None = None,
) -> list[SteeringEntry]:
    """Search strengths for every layer set in every direction; return every logged entry.

    ``log`` must already hold the baseline (the unsteered answers' scores); each round's
    configurations run as one batch and are appended to it. Layer sets default to each layer
    of ``vectors`` alone.
    """
    settings = settings or SearchSettings()
    if log.baseline is None:
        raise ValueError("log.add_baseline(...) first: the search measures deltas against it")
    sets = [tuple(sorted(s)) for s in (layer_sets or [(layer,) for layer in sorted(vectors)])]
    missing = sorted({layer for s in sets for layer in s if layer not in norms})
    if missing:
        raise ValueError(f"no typical norm for layers {missing}; measure them with typical_norms")
    tracks = [Track(layers, d) for layers in sets for d in settings.directions]
    while True:
        live = [(t, f) for t in tracks if (f := t.next_fraction(settings)) is not None]
        if not live:
            break
        configs = [track_configs([t.layers], norms, f, t.direction)[0] for t, f in live]
        signed = [t.direction * f for t, f in live]
        rounds = max(len(t.tried) for t in tracks) + 1
        LOG.info(
            "%s round %d: %d configurations x %d questions (fractions %s)",
            method,
            rounds,
            len(configs),
            len(items),
            ", ".join(f"{f:+.4g}" for f in signed),
        )
        entries = evaluate_configs(
            model,
            tokenizer,
            judge,
            items,
            vectors,
            rule,
            log,
            configs,
            fractions=signed,
            max_new_tokens=settings.max_new_tokens,
            batch_rows=settings.batch_rows,
            component=component,
            method=method,
            ranks=ranks,
        )
        for (track, fraction), entry in zip(live, entries, strict=True):
            track.record(fraction, entry.coherent)
    return list(log.entries.values())


def evaluate_configs(
    model: nn.Module,
    tokenizer: Any,
    judge: Judge,
    items: Sequence[JudgeItem],
    vectors: Mapping[int, Any],
    rule: CoherenceRule,
    log: ResultsLog,
    configs: Sequence[Mapping[int, float]],
    *,
    fractions: Sequence[float | None] | None = None,
    max_new_tokens: int = 48,
    batch_rows: int = 64,
    component: str = "residual",
    method: str = "probe",
    ranks: Ranks | None = None,
) -> list[SteeringEntry]:
    """The log's entries for ``configs``: logged ones reused, the rest run as one batch.

    New configurations are generated together (:func:`steered_answers`), judged and scored
    with steering off (:func:`score_configs`), and appended to ``log`` one by one. Under
    ``torchrun`` (``ranks``) the generation is shared, rank 0 judges the answers and hands the
    scores to every rank, so each holds the same log (only rank 0's writes; see
    :class:`ResultsLog`).
    ``fractions[i]`` (optional) is stored as the entry's strength in typical norms.
    """
    fractions = [None] * len(configs) if fractions is None else list(fractions)
    if len(fractions) != len(configs):
        raise ValueError(f"{len(fractions)} fractions for {len(configs)} configurations")
    keys = [config_key(c, component, method) for c in configs]
    todo = {k: (dict(c), f) for k, c, f in zip(keys, configs, fractions, strict=True)}
    todo = {k: v for k, v in todo.items() if not log.done(k)}
    if todo:
        answers = steered_answers(
            model,
            tokenizer,
            [item.question for item in items],
            [config for config, _ in todo.values()],
            vectors,
            max_new_tokens=max_new_tokens,
            component=component,
            batch_rows=batch_rows,
            ranks=ranks,
        )
        ranks = ranks or Ranks()  # rank 0 judges (a remote judge is asked once), all log
        scores = ranks.on_main(lambda: score_configs(model, tokenizer, judge, items, answers, rule))
        for (config, fraction), score in zip(todo.values(), scores, strict=True):
            log.add(score.entry(config, component, method, fraction), score.details)
    return [log.entries[k] for k in keys]
