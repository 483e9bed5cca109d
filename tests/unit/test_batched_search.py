"""Configurations as rows of one batch: each equals its own run with hooks and model.generate."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

from trait_lab.core.types import JudgeResult
from trait_lab.evaluation.batched import ConfigScore, score_configs, steered_answers
from trait_lab.evaluation.coherence import CoherenceRule, answer_nll
from trait_lab.evaluation.judges import JudgeItem
from trait_lab.hooks import SteeringHook
from trait_lab.testing import tiny_model, tiny_tokenizer

QUESTIONS = ["How are you today?", "Why is the sky blue?", "Name a colour."]


def _vectors() -> dict[int, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    return {layer: torch.randn(32, generator=gen) for layer in range(3)}


def _alone(model, tok, question: str, config: dict[int, float], vectors, n: int) -> list[int]:
    """One question, one configuration: SteeringHook per layer around HF's model.generate."""
    ids = tok(question, return_tensors="pt")["input_ids"]
    with contextlib.ExitStack() as stack:
        for layer, coefficient in config.items():
            stack.enter_context(SteeringHook(model, vectors[layer], layer, coefficient))
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=2,
        )
    row = out[0, ids.shape[1] :].tolist()
    return row[: row.index(2)] if 2 in row else row


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_batched_configurations_equal_separate_runs(arch: str) -> None:
    model, tok, vectors = tiny_model(arch), tiny_tokenizer(), _vectors()
    configs = [{}, {1: 3.0}, {1: -3.0}, {0: 2.0, 2: -5.0}, {2: 8.0}]
    answers = steered_answers(
        model, tok, QUESTIONS, configs, vectors, max_new_tokens=6, batch_rows=4
    )
    assert [len(a) for a in answers] == [len(QUESTIONS)] * len(configs)
    for config, per_config in zip(configs, answers, strict=True):
        for question, answer in zip(QUESTIONS, per_config, strict=True):
            expected = _alone(model, tok, question, config, vectors, 6)
            assert list(answer.token_ids) == expected, (config, question)
            assert answer.text == tok.decode(expected)
    assert answers[1] != answers[0]  # steering changed something


class FixedJudge:
    """Scores an answer by its length (a stand-in with a known answer)."""

    @property
    def identity(self) -> dict[str, str]:
        return {"kind": "fixed"}

    async def score_trait(self, items):
        return [min(100.0, float(len(item.answer))) for item in items]

    async def score_coherence(self, items):
        return [None for _ in items]


def test_scores_use_the_judge_and_the_unsteered_coherence() -> None:
    model, tok, vectors = tiny_model(), tiny_tokenizer(), _vectors()
    configs = [{}, {1: 6.0}]
    answers = steered_answers(model, tok, QUESTIONS, configs, vectors, max_new_tokens=5)
    items = [JudgeItem(q, "", "optimism", "Hope.") for q in QUESTIONS]
    nll0 = answer_nll(model, tok, QUESTIONS, [a.text for a in answers[0]])
    rule = CoherenceRule.from_baseline(nll0, [a.token_ids for a in answers[0]])
    scores = score_configs(model, tok, FixedJudge(), items, answers, rule)
    assert all(isinstance(s, ConfigScore) for s in scores)
    for score, per_config in zip(scores, answers, strict=True):
        lengths = [min(100.0, float(len(a.text))) for a in per_config]
        assert score.summary.trait_mean == pytest.approx(sum(lengths) / len(lengths))
        assert [d["answer"] for d in score.details] == [a.text for a in per_config]
    nll1 = answer_nll(model, tok, QUESTIONS, [a.text for a in answers[1]])
    for detail, nll in zip(scores[1].details, nll1, strict=True):
        assert detail["nll"] == pytest.approx(nll) or (detail["nll"] is None and math.isnan(nll))
    entry = scores[1].entry(configs[1], method="probe")
    assert entry.layers == (1,) and entry.coefficients == (6.0,) and entry.n == len(QUESTIONS)
    with pytest.raises(ValueError, match="baseline is not an entry"):
        scores[0].entry(configs[0])
    assert isinstance(scores[0].summary, JudgeResult)


def test_bad_configurations() -> None:
    model, tok, vectors = tiny_model(), tiny_tokenizer(), _vectors()
    with pytest.raises(ValueError, match="steers layer 7"):
        steered_answers(model, tok, QUESTIONS, [{7: 1.0}], vectors)
    with pytest.raises(ValueError, match="not finite"):
        steered_answers(model, tok, QUESTIONS, [{1: float("inf")}], vectors)
    with pytest.raises(ValueError, match="no questions"):
        steered_answers(model, tok, [], [{}], vectors)
    with pytest.raises(ValueError, match="batch_rows"):
        steered_answers(model, tok, QUESTIONS, [{}], vectors, batch_rows=0)
