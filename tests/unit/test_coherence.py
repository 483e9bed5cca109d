"""Offline coherence: answer NLL against HF's own loss, repetition, the rule, steering refused."""

from __future__ import annotations

import math

import pytest
import torch

from trait_lab.evaluation.coherence import CoherenceRule, answer_nll, repetition
from trait_lab.hooks import SteeringHook
from trait_lab.testing import tiny_model, tiny_tokenizer


def _hf_loss(model, tok, question: str, answer: str) -> float:
    """HF's causal-LM loss with the prompt tokens masked out (labels = -100): one row, no pad."""
    prompt = tok(question, add_special_tokens=True)["input_ids"]
    reply = tok(answer, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt + reply])
    labels = ids.clone()
    labels[0, : len(prompt)] = -100
    with torch.no_grad():
        return float(model(input_ids=ids, labels=labels).loss)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_nll_equals_hf_loss_also_when_batched_with_padding(arch: str) -> None:
    model, tok = tiny_model(arch), tiny_tokenizer()
    questions = ["How are you?", "Why?", "Tell me a long story about the sea."]
    answers = ["Fine, thanks.", "Because it rains a lot here, mostly.", "No."]
    got = answer_nll(model, tok, questions, answers, batch_size=2)
    for q, a, nll in zip(questions, answers, got, strict=True):
        assert nll == pytest.approx(_hf_loss(model, tok, q, a), rel=1e-5)


def test_empty_answer_is_nan_and_scores_zero() -> None:
    nll = answer_nll(tiny_model(), tiny_tokenizer(), ["q?"], [""])
    assert math.isnan(nll[0])
    assert CoherenceRule(1.0).score(nll[0], 0.0) == 0.0


def test_refuses_while_steering_is_active() -> None:
    model, tok = tiny_model(), tiny_tokenizer()
    with (
        SteeringHook(model, torch.ones(32), 1, 4.0),
        pytest.raises(RuntimeError, match="unsteered model"),
    ):
        answer_nll(model, tok, ["q?"], ["a."])
    assert answer_nll(model, tok, ["q?"], ["a."])  # fine once the hook is gone


def test_repetition() -> None:
    assert repetition([]) == 0.0 and repetition([1, 2]) == 0.0
    assert repetition([5, 5, 5, 5, 5]) == pytest.approx(1 - 1 / 3)
    assert repetition([1, 2, 3, 1, 2, 3], n=3) == pytest.approx(1 - 3 / 4)
    with pytest.raises(ValueError, match="n=0"):
        repetition([1], n=0)


def test_rule_by_hand() -> None:
    rule = CoherenceRule(baseline_nll=0.84, baseline_repetition=0.1, threshold=70.0)
    assert rule.score(0.5, 0.0) == 100.0  # more likely than baseline: capped at 100
    assert rule.score(0.84 + math.log(2), 0.1) == pytest.approx(50.0)  # half as likely
    assert rule.score(0.84, 0.6) == pytest.approx(50.0)  # 0.5 extra repetition halves it
    assert rule.score(0.84, 0.0, judge=40.0) == 40.0  # a judge can only lower it
    assert rule.coherent(70.0) and not rule.coherent(69.9)
    base = CoherenceRule.from_baseline([0.8, float("nan"), 1.0], [[1, 2, 3], [], [1, 1, 1, 1]])
    assert base.baseline_nll == pytest.approx(0.9)
    assert base.baseline_repetition == pytest.approx((0.0 + 0.5) / 2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"baseline_nll": -1.0}, "baseline_nll"),
        ({"baseline_nll": float("nan")}, "baseline_nll"),
        ({"baseline_nll": 1.0, "threshold": 150.0}, "threshold"),
    ],
)
def test_bad_rules(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CoherenceRule(**kwargs)


def test_bad_arguments() -> None:
    model, tok = tiny_model(), tiny_tokenizer()
    with pytest.raises(ValueError, match="2 questions but 1 answers"):
        answer_nll(model, tok, ["a", "b"], ["c"])
    with pytest.raises(ValueError, match="batch_size"):
        answer_nll(model, tok, ["a"], ["c"], batch_size=0)
    with pytest.raises(ValueError, match="no unsteered answer"):
        CoherenceRule.from_baseline([float("nan")], [[]])
