"""Many steering configurations in one generation batch, and each scored into a SteeringEntry.

A configuration is ``{layer: coefficient}`` (one or several layers, each with its own
magnitude) for the vectors given per layer. :func:`steered_answers` runs every
(configuration, question) pair as a row of the same greedy, KV-cached generation: per layer one
:class:`~trait_lab.generation.configs.SteeringConfig` with one coefficient per row (0 where the
row's configuration does not steer that layer) — N configurations cost about one run, not N.
:func:`score_configs` judges the answers and scores their coherence with steering off.

Example:
    >>> from trait_lab.testing import tiny_model, tiny_tokenizer
    >>> import torch
    >>> model, tok = tiny_model(), tiny_tokenizer()
    >>> answers = steered_answers(model, tok, ["Hi?"], [{}, {1: 4.0}], {1: torch.ones(32)},
    ...                           max_new_tokens=3)
    >>> len(answers), len(answers[0])
    (2, 1)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trait_lab.core.distributed import Ranks
from trait_lab.core.types import JudgeResult
from trait_lab.evaluation.coherence import CoherenceRule, answer_nll, repetition
from trait_lab.evaluation.judges import Judge, JudgeItem, run_sync
from trait_lab.evaluation.results import SteeringEntry
from trait_lab.evaluation.scoring import summarize_judge_scores
from trait_lab.generation.configs import SteeringConfig
from trait_lab.generation.generator import HookedGenerator
from trait_lab.models.tokens import left_pad, pad_token_id
from trait_lab.prompts.formatting import (
    PromptLike,
    encode_text,
    format_prompt,
    uses_chat_template,
)

__all__ = ["Answer", "ConfigScore", "score_configs", "steered_answers"]

Config = Mapping[int, float]


@dataclass(frozen=True)
class Answer:
    """One generated answer: its text and token ids (EOS excluded)."""

    text: str
    token_ids: tuple[int, ...]


@dataclass(frozen=True)
class ConfigScore:
    """One configuration's judged answers: the summary, whether it is coherent, the details."""

    summary: JudgeResult
    coherent: bool
    details: list[dict[str, Any]]

    def entry(
        self,
        config: Config,
        component: str = "residual",
        method: str = "probe",
        fraction: float | None = None,
    ) -> SteeringEntry:
        """The results-log entry of a steered configuration (``delta`` is set by the log).

        ``fraction``: the signed strength as a fraction of each layer's typical norm, if known.
        """
        if not config:
            raise ValueError("the unsteered baseline is not an entry; log it with add_baseline")
        layers = tuple(sorted(config))
        return SteeringEntry(
            layers=layers,
            coefficients=tuple(float(config[layer]) for layer in layers),
            component=component,
            method=method,
            trait_mean=self.summary.trait_mean,
            coherence_mean=self.summary.coherence_mean,
            n=self.summary.n,
            coherent=self.coherent,
            fraction=fraction,
        )


def _check_configs(configs: Sequence[Config], vectors: Mapping[int, Any]) -> None:
    for i, config in enumerate(configs):
        for layer, coefficient in config.items():
            if layer not in vectors:
                raise ValueError(
                    f"configuration {i} steers layer {layer}, but vectors has layers "
                    f"{sorted(vectors)}; pass a vector for every steered layer"
                )
            if (
                isinstance(coefficient, bool)
                or not isinstance(coefficient, (int, float))
                or not math.isfinite(coefficient)
            ):
                raise ValueError(f"configuration {i}: coefficient {coefficient!r} is not finite")


@torch.no_grad()
def steered_answers(
    model: nn.Module,
    tokenizer: Any,
    questions: Sequence[PromptLike],
    configs: Sequence[Config],
    vectors: Mapping[int, Any],
    *,
    max_new_tokens: int = 48,
    component: str = "residual",
    batch_rows: int = 64,
    ranks: Ranks | None = None,
) -> list[list[Answer]]:
    """Greedy answers to every question under every configuration: ``answers[config][question]``.

    With ``ranks`` (a ``torchrun`` job) the batches are shared among the ranks and every rank
    gets every answer; each batch holds the rows one process would put in it, so the answers
    are the same.

    Args:
        questions: user messages, or whole conversations (e.g. with a system prompt).
        configs: ``{layer: coefficient}`` each (``{}`` is the unsteered baseline); steering is
            ``h + c·v`` at every position of the prompt and the answer.
        vectors: the vector per layer (``[hidden]``), as extracted (not re-normalised here).
        batch_rows: rows per generation batch (configurations × questions are split).
        ranks: the job's ranks (default: this process alone).
    """
    if not questions:
        raise ValueError("no questions: pass at least one question to answer")
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 1:
        raise ValueError(f"batch_rows={batch_rows!r} must be a positive int")
    _check_configs(configs, vectors)
    chat = uses_chat_template(tokenizer)
    prompts = [encode_text(tokenizer, format_prompt(tokenizer, q), chat=chat) for q in questions]
    rows = [(c, q) for c in range(len(configs)) for q in range(len(questions))]
    generator = HookedGenerator(model)
    pad = pad_token_id(tokenizer=tokenizer, model=model)
    eos = tokenizer.eos_token_id
    ranks = ranks or Ranks()
    done: dict[int, list[Answer]] = {}
    for start in ranks.mine(range(0, len(rows), batch_rows)):
        chunk = rows[start : start + batch_rows]
        ids, mask = left_pad([prompts[q] for _, q in chunk], pad)
        layers = sorted({layer for c, _ in chunk for layer in configs[c]})
        steering = [
            SteeringConfig(
                vectors[layer],
                layer,
                [float(configs[c].get(layer, 0.0)) for c, _ in chunk],
                component=component,
            )
            for layer in layers
        ]
        results = generator.generate(
            ids, mask, max_new_tokens, steering=steering, pad_token_id=pad, eos_token_id=eos
        )
        done[start] = []
        for result in results:
            tokens = tuple(t for t in result.token_ids if t != eos)
            done[start].append(Answer(tokenizer.decode(list(tokens)), tokens))
    merged = {start: batch for share in ranks.gather(done) for start, batch in share.items()}
    answers: list[list[Answer]] = [[] for _ in configs]
    for start in sorted(merged):
        for (c, _), answer in zip(rows[start : start + batch_rows], merged[start], strict=True):
            answers[c].append(answer)
    return answers


def score_configs(
    model: nn.Module,
    tokenizer: Any,
    judge: Judge,
    items: Sequence[JudgeItem],
    answers: Sequence[Sequence[Answer]],
    rule: CoherenceRule,
) -> list[ConfigScore]:
    """Judge each configuration's answers (trait) and score their coherence, steering off.

    Coherence is the offline rule's score, lowered to the judge's coherence score where the
    judge gives one (:class:`~trait_lab.evaluation.coherence.CoherenceRule`).

    ``items`` give question, trait and definition per question (their ``answer`` is ignored);
    ``answers[config][question]`` come from :func:`steered_answers`. A configuration is
    coherent when the rule passes its mean coherence.
    """
    questions = [item.question for item in items]
    flat = [a for per_config in answers for a in per_config]
    if any(len(per_config) != len(items) for per_config in answers):
        raise ValueError(f"every configuration needs one answer per item ({len(items)})")
    judged = [
        JudgeItem(item.question, a.text, item.trait, item.definition)
        for per_config in answers
        for item, a in zip(items, per_config, strict=True)
    ]
    traits = run_sync(judge.score_trait(judged))
    judged_coherence = run_sync(judge.score_coherence(judged))
    nlls = answer_nll(model, tokenizer, questions * len(answers), [a.text for a in flat])
    out: list[ConfigScore] = []
    for c in range(len(answers)):
        details = []
        for q, question in enumerate(questions):
            k = c * len(questions) + q
            nll = nlls[k]
            details.append(
                {
                    "question": question,
                    "answer": flat[k].text,
                    "trait": traits[k],
                    "coherence": rule.score(
                        nll, repetition(flat[k].token_ids), judged_coherence[k]
                    ),
                    "nll": nll if math.isfinite(nll) else None,
                }
            )
        summary = summarize_judge_scores(details)
        out.append(ConfigScore(summary, rule.coherent(summary.coherence_mean), details))
    return out
