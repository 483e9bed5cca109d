"""Steering evaluation: judges, judge scores, offline coherence, results logs (search next)."""

from __future__ import annotations

from trait_lab.evaluation.batched import (
    Answer,
    ConfigScore,
    score_configs,
    steered_answers,
)
from trait_lab.evaluation.coherence import (
    DEFAULT_THRESHOLD,
    CoherenceRule,
    answer_nll,
    repetition,
)
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
from trait_lab.evaluation.results import (
    RESULTS_FILE,
    RESULTS_SCHEMA,
    ResultsLog,
    ResultsMismatchError,
    SteeringEntry,
    SteeringResults,
    SteeringRunRecord,
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
    "DEFAULT_THRESHOLD",
    "MAX_SCORE",
    "MIN_NUMBER_MASS",
    "RESULTS_FILE",
    "RESULTS_SCHEMA",
    "TRAIT_PROMPT",
    "Answer",
    "CoherenceRule",
    "ConfigScore",
    "Judge",
    "JudgeItem",
    "LocalLogprobJudge",
    "ResultsLog",
    "ResultsMismatchError",
    "SteeringEntry",
    "SteeringResults",
    "SteeringRunRecord",
    "answer_nll",
    "coherence_prompt",
    "expected_score",
    "number_sequences",
    "number_value",
    "repetition",
    "run_sync",
    "score_configs",
    "score_from_logprobs",
    "steered_answers",
    "summarize_judge_scores",
    "trait_prompt",
]
