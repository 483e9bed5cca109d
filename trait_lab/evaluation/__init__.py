"""Steering evaluation: judges and their scores (coherence, coefficient search and results next)."""

from __future__ import annotations

from trait_lab.evaluation.judges import (
    COHERENCE_PROMPT,
    TRAIT_PROMPT,
    Judge,
    JudgeItem,
    LocalLogprobJudge,
    coherence_prompt,
    number_sequences,
    run_sync,
    trait_prompt,
)
from trait_lab.evaluation.scoring import (
    MAX_SCORE,
    MIN_NUMBER_MASS,
    expected_score,
    number_value,
    score_from_logprobs,
    summarize_judge_scores,
)

__all__ = [
    "COHERENCE_PROMPT",
    "MAX_SCORE",
    "MIN_NUMBER_MASS",
    "TRAIT_PROMPT",
    "Judge",
    "JudgeItem",
    "LocalLogprobJudge",
    "coherence_prompt",
    "expected_score",
    "number_sequences",
    "number_value",
    "run_sync",
    "score_from_logprobs",
    "summarize_judge_scores",
    "trait_prompt",
]
