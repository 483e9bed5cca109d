"""Judge numbers: hand-computed logprob expectations, refusals, summaries."""

from __future__ import annotations

import math

import pytest

from trait_lab.evaluation.scoring import (
    expected_score,
    number_value,
    score_from_logprobs,
    summarize_judge_scores,
)


def test_expectation_by_hand() -> None:
    # 0.5·20 + 0.2·40 + 0.1·100 = 28 over a mass of 0.8 → 35
    logprobs = {"20": math.log(0.5), "40": math.log(0.2), "100": math.log(0.1), "no": -2.3}
    assert score_from_logprobs(logprobs) == pytest.approx(35.0)


def test_same_number_in_two_spellings_adds_up() -> None:
    pairs = [("7", math.log(0.3)), (" 7", math.log(0.3)), ("9", math.log(0.4))]
    assert score_from_logprobs(pairs) == pytest.approx((7 * 0.6 + 9 * 0.4) / 1.0)


def test_too_little_mass_on_numbers_is_none_not_zero() -> None:
    assert score_from_logprobs({"I": math.log(0.9), "5": math.log(0.1)}) is None
    assert score_from_logprobs({"5": math.log(0.1)}, min_mass=0.05) == pytest.approx(5.0)
    assert score_from_logprobs({}) is None


@pytest.mark.parametrize(
    ("token", "value"),
    [
        ("0", 0),
        ("100", 100),
        (" 55 ", 55),
        ("101", None),
        ("-1", None),
        ("05", None),
        ("5.0", None),
        ("²", None),
        ("٣", None),
        ("", None),
    ],
)
def test_number_value(token: str, value: int | None) -> None:
    assert number_value(token) == value


@pytest.mark.parametrize(
    ("probs", "match"),
    [
        ({101: 0.5}, "keys are the integers"),
        ({5: -0.1}, "not a probability"),
        ({5: float("nan")}, "not a probability"),
        ({5: 0.7, 6: 0.7}, "sum to"),
    ],
)
def test_bad_probabilities_raise(probs: dict[int, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        expected_score(probs)


def test_bad_logprob_and_min_mass_raise() -> None:
    with pytest.raises(ValueError, match="not a log-probability"):
        score_from_logprobs({"5": 0.5})
    with pytest.raises(ValueError, match="min_mass"):
        expected_score({5: 1.0}, min_mass=0.0)


def test_summary_skips_none_and_uses_population_std() -> None:
    items = [
        {"trait": 10.0, "coherence": 80.0},
        {"trait_score": 50.0, "coherence_score": None},
        {"trait": None, "coherence": 60.0},
        {"trait": 30.0, "coherence": 70.0},
    ]
    result = summarize_judge_scores(items)
    assert result.n == 3 and result.trait_mean == pytest.approx(30.0)
    assert result.trait_std == pytest.approx(math.sqrt((400 + 400 + 0) / 3))
    assert result.coherence_mean == pytest.approx(70.0)
    assert result.coherence_std == pytest.approx(math.sqrt(200 / 3))


def test_summary_refuses_nothing_usable_and_bad_values() -> None:
    with pytest.raises(ValueError, match="no usable judgement"):
        summarize_judge_scores([{"trait": None, "coherence": None}])
    with pytest.raises(ValueError, match="not a score"):
        summarize_judge_scores([{"trait": 150.0, "coherence": 50.0}])
    with pytest.raises(ValueError, match="none of the keys"):
        summarize_judge_scores([{"score": 5}])
