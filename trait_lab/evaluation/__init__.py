"""Steering evaluation: judges, offline coherence, results logs, coefficient search."""

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
    config_key,
)
from trait_lab.evaluation.scoring import (
    MAX_SCORE,
    MIN_NUMBER_MASS,
    expected_score,
    number_value,
    score_from_logprobs,
    summarize_judge_scores,
)
from trait_lab.evaluation.search import (
    SearchSettings,
    Track,
    search_coefficients,
    track_configs,
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
    "SearchSettings",
    "SteeringEntry",
    "SteeringResults",
    "SteeringRunRecord",
    "Track",
    "answer_nll",
    "coherence_prompt",
    "config_key",
    "expected_score",
    "number_sequences",
    "number_value",
    "repetition",
    "run_sync",
    "score_configs",
    "score_from_logprobs",
    "search_coefficients",
    "steered_answers",
    "summarize_judge_scores",
    "track_configs",
    "trait_prompt",
]
