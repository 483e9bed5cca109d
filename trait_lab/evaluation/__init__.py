"""Steering evaluation: judge scores, coherence, coefficient search, steering results."""

from __future__ import annotations

from trait_lab.evaluation.scoring import (
    MAX_SCORE,
    MIN_NUMBER_MASS,
    expected_score,
    number_value,
    score_from_logprobs,
    summarize_judge_scores,
)

__all__ = [
    "MAX_SCORE",
    "MIN_NUMBER_MASS",
    "expected_score",
    "number_value",
    "score_from_logprobs",
    "summarize_judge_scores",
]
