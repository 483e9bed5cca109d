"""Judge numbers: a 0–100 score as the probability-weighted mean over number answers; summaries.

A judge is asked for a single number from 0 to 100. Rather than read the one sampled answer,
we read the probability the judge puts on every number and take the expectation: smoother, and
no sampling noise. When too little probability lands on numbers at all (the judge refused or
answered in words) the score is ``None``, never a silent 0.

Example:
    >>> expected_score({0: 0.1, 50: 0.3, 100: 0.2})  # mass 0.6 on numbers
    58.333...
    >>> summarize_judge_scores([{"trait": 80.0, "coherence": 90.0},
    ...                         {"trait": 60.0, "coherence": 70.0}]).trait_mean
    70.0
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from trait_lab.core.types import JudgeResult

__all__ = [
    "MAX_SCORE",
    "MIN_NUMBER_MASS",
    "expected_score",
    "number_value",
    "score_from_logprobs",
    "summarize_judge_scores",
]

MAX_SCORE = 100
"""Scores run from 0 to ``MAX_SCORE`` (inclusive)."""
MIN_NUMBER_MASS = 0.25
"""Below this total probability on numbers 0–100 a judgement is ``None`` (no usable answer)."""


def number_value(token: str) -> int | None:
    """The integer 0–100 a token (or answer) spells, ignoring surrounding spaces; else ``None``.

    Example:
        >>> number_value(" 42"), number_value("042"), number_value("101"), number_value("4.5")
        (42, None, None, None)
    """
    text = token.strip()
    if not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        return None
    value = int(text)
    return value if value <= MAX_SCORE else None


def expected_score(probs: Mapping[int, float], min_mass: float = MIN_NUMBER_MASS) -> float | None:
    """``Σ v·p(v) / Σ p(v)`` over the numbers 0–100, or ``None`` when ``Σ p(v) < min_mass``.

    Args:
        probs: probability of each number answer (need not sum to 1: the rest went elsewhere).
        min_mass: the least total probability on numbers for the score to count.

    Example:
        >>> expected_score({70: 0.5, 80: 0.5}), expected_score({70: 0.1})
        (75.0, None)
    """
    if not 0.0 < min_mass <= 1.0:
        raise ValueError(f"min_mass={min_mass!r} must be in (0, 1]; the default is 0.25")
    total = 0.0
    weighted = 0.0
    for value, p in probs.items():
        if not isinstance(value, int) or not 0 <= value <= MAX_SCORE:
            raise ValueError(f"probs has key {value!r}; keys are the integers 0..{MAX_SCORE}")
        if not math.isfinite(p) or p < 0.0 or p > 1.0 + 1e-6:
            raise ValueError(f"probs[{value}] = {p!r} is not a probability in [0, 1]")
        total += p
        weighted += value * p
    if total > 1.0 + 1e-4:
        raise ValueError(
            f"the probabilities sum to {total:.4f} > 1; pass probabilities, not counts"
        )
    if total < min_mass:
        return None
    return weighted / total


def score_from_logprobs(
    top_logprobs: Mapping[str, float] | Iterable[tuple[str, float]],
    min_mass: float = MIN_NUMBER_MASS,
) -> float | None:
    """Expected score from a judge's top log-probabilities for its first answer token.

    Tokens that spell the same number (``"7"`` and ``" 7"``) add up; other tokens are ignored
    (their probability counts as "not a number"). This is how an OpenAI-compatible judge whose
    tokenizer has every number 0–100 as one token is read.

    Example:
        >>> round(score_from_logprobs({"80": math.log(0.6), " 90": math.log(0.2), "A": -1.0}), 2)
        82.5
    """
    pairs = top_logprobs.items() if isinstance(top_logprobs, Mapping) else top_logprobs
    probs: dict[int, float] = {}
    for token, logprob in pairs:
        value = number_value(token)
        if value is None:
            continue
        if math.isnan(logprob) or logprob > 1e-6:
            raise ValueError(f"logprob {logprob!r} of token {token!r} is not a log-probability")
        probs[value] = probs.get(value, 0.0) + math.exp(logprob)
    return expected_score(probs, min_mass)


def _value(item: Any, keys: tuple[str, ...]) -> float | None:
    for key in keys:
        if isinstance(item, Mapping) and key in item:
            value = item[key]
        elif hasattr(item, key):
            value = getattr(item, key)
        else:
            continue
        if value is None:
            return None
        number = float(value)
        if not math.isfinite(number) or not 0.0 <= number <= MAX_SCORE:
            raise ValueError(f"{key}={value!r} is not a score in [0, {MAX_SCORE}]")
        return number
    raise ValueError(
        f"a judged item has none of the keys {list(keys)}: {item!r}; pass dicts (or objects) with "
        "'trait' and 'coherence' scores (None where the judge gave no number)"
    )


def summarize_judge_scores(scores: Iterable[Any]) -> JudgeResult:
    """Mean and standard deviation of trait and coherence scores, ignoring ``None`` judgements.

    Each item is a mapping or object with ``trait`` (or ``trait_score``) and ``coherence`` (or
    ``coherence_score``). ``n`` counts items with a trait score; stds are population stds
    (``None`` for a single item).

    Example:
        >>> r = summarize_judge_scores([{"trait": 10, "coherence": None},
        ...                             {"trait": 30, "coherence": 90}])
        >>> (r.trait_mean, r.coherence_mean, r.n, r.trait_std)
        (20.0, 90.0, 2, 10.0)
    """
    items = list(scores)
    traits = [_value(i, ("trait", "trait_score")) for i in items]
    coherences = [_value(i, ("coherence", "coherence_score")) for i in items]
    trait_vals = np.array([t for t in traits if t is not None], dtype=np.float64)
    coh_vals = np.array([c for c in coherences if c is not None], dtype=np.float64)
    if trait_vals.size == 0 or coh_vals.size == 0:
        raise ValueError(
            f"no usable judgement among {len(items)} items ({trait_vals.size} trait scores, "
            f"{coh_vals.size} coherence scores): the judge returned no number. Check the judge "
            "(its prompt, its logprobs) before summarizing."
        )
    return JudgeResult(
        trait_mean=float(trait_vals.mean()),
        coherence_mean=float(coh_vals.mean()),
        n=int(trait_vals.size),
        trait_std=float(trait_vals.std()) if trait_vals.size > 1 else None,
        coherence_std=float(coh_vals.std()) if coh_vals.size > 1 else None,
    )
