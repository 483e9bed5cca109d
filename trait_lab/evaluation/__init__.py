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
from trait_lab.evaluation.openai_judge import (
    OPENAI_BASE_URL,
    JudgeError,
    JudgeRequestError,
    JudgeTokenizerError,
    JudgeUnavailableError,
    OpenAIJudge,
)
from trait_lab.evaluation.probe_judge import PROBE_JUDGE_SCHEMA, ProbeJudge, labelled_answers
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
    evaluate_configs,
    search_coefficients,
    track_configs,
)
from trait_lab.evaluation.summary import (
    SUMMARY_FILE,
    SUMMARY_SCHEMA,
    Recommendation,
    SteeringSummary,
    read_summary,
    write_summary,
)

__all__ = [
    "COHERENCE_PROMPT",
    "DEFAULT_THRESHOLD",
    "MAX_SCORE",
    "MIN_NUMBER_MASS",
    "OPENAI_BASE_URL",
    "PROBE_JUDGE_SCHEMA",
    "RESULTS_FILE",
    "RESULTS_SCHEMA",
    "SUMMARY_FILE",
    "SUMMARY_SCHEMA",
    "TRAIT_PROMPT",
    "Answer",
    "CoherenceRule",
    "ConfigScore",
    "Judge",
    "JudgeError",
    "JudgeItem",
    "JudgeRequestError",
    "JudgeTokenizerError",
    "JudgeUnavailableError",
    "LocalLogprobJudge",
    "OpenAIJudge",
    "ProbeJudge",
    "Recommendation",
    "ResultsLog",
    "ResultsMismatchError",
    "SearchSettings",
    "SteeringEntry",
    "SteeringResults",
    "SteeringRunRecord",
    "SteeringSummary",
    "Track",
    "answer_nll",
    "coherence_prompt",
    "config_key",
    "evaluate_configs",
    "expected_score",
    "labelled_answers",
    "number_sequences",
    "number_value",
    "read_summary",
    "repetition",
    "run_sync",
    "score_configs",
    "score_from_logprobs",
    "search_coefficients",
    "steered_answers",
    "summarize_judge_scores",
    "track_configs",
    "trait_prompt",
    "write_summary",
]
