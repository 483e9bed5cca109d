"""Offline coherence: how likely the *unsteered* model finds an answer, and how much it repeats.

The rule, in one place (:class:`CoherenceRule`):

* ``nll`` — mean per-token negative log-likelihood of the answer given the question, under the
  model with **no steering active** (a steered model finds its own steered text likely, which
  would hide incoherence; :func:`answer_nll` refuses to run while a trait_lab editor is on).
* ``repetition`` — the share of the answer's token 3-grams that repeat an earlier one.
* ``score = 100 · min(1, exp(−(nll − nll₀))) · (1 − max(0, repetition − repetition₀))``, where
  ``nll₀`` and ``repetition₀`` are the means over the unsteered answers to the same questions:
  100 means "as natural as the model's own answers", 50 means half as likely per token.
* With an LLM judge, the reported coherence is ``min(score, judge score)``.
* An answer is **coherent** when its coherence is at least ``threshold`` (default 70: at most
  ~0.36 nats per token less likely than the unsteered answers, with no extra repetition). An
  empty answer scores 0.

Example:
    >>> rule = CoherenceRule(baseline_nll=0.84, baseline_repetition=0.0)
    >>> round(rule.score(1.1, 0.0), 1), rule.coherent(rule.score(1.5, 0.0))
    (77.1, False)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trait_lab.hooks.base import active_edits
from trait_lab.models.architectures import input_device
from trait_lab.models.tokens import left_pad, pad_token_id, padded_positions
from trait_lab.prompts.formatting import encode_text, format_prompt, uses_chat_template

__all__ = ["DEFAULT_THRESHOLD", "CoherenceRule", "answer_nll", "repetition"]

DEFAULT_THRESHOLD = 70.0
"""Coherence (0–100) an answer needs to count as coherent; see the module docstring."""


def repetition(token_ids: Sequence[int], n: int = 3) -> float:
    """Share of the ``n``-grams that repeat an earlier one: 0 for none, → 1 for a loop.

    Example:
        >>> repetition([1, 2, 3, 4]), round(repetition([1, 2, 1, 2, 1, 2, 1, 2]), 3)
        (0.0, 0.667)
    """
    if n < 1:
        raise ValueError(f"n={n!r} must be >= 1")
    grams = [tuple(token_ids[i : i + n]) for i in range(len(token_ids) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)


@torch.no_grad()
def answer_nll(
    model: nn.Module,
    tokenizer: Any,
    questions: Sequence[str],
    answers: Sequence[str],
    *,
    batch_size: int = 8,
) -> list[float]:
    """Mean per-token NLL (nats) of each answer after its question, under the unsteered model.

    The question is formatted as the model saw it (chat template when the tokenizer has one),
    the answer's tokens follow directly. An empty answer gives ``nan``.

    Raises:
        RuntimeError: a trait_lab steering/ablation/capping hook is active on ``model``.
        ValueError: different numbers of questions and answers, or a bad ``batch_size``.

    Example:
        >>> from trait_lab.testing import tiny_model, tiny_tokenizer
        >>> nll = answer_nll(tiny_model(), tiny_tokenizer(), ["Hi?"], ["Hello."])
        >>> 0 < nll[0] < 10
        True
    """
    if len(questions) != len(answers):
        raise ValueError(f"{len(questions)} questions but {len(answers)} answers; pass one each")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be a positive int")
    if (edits := active_edits(model)) != 0:
        raise RuntimeError(
            f"{edits} steering/ablation/capping hook(s) are active on the model; coherence is "
            "scored by the unsteered model. Score after the `with` block that steers."
        )
    chat = uses_chat_template(tokenizer)
    rows: list[tuple[list[int], int]] = []
    for question, answer in zip(questions, answers, strict=True):
        prompt = encode_text(tokenizer, format_prompt(tokenizer, question), chat=chat)
        reply = list(tokenizer(answer, add_special_tokens=False)["input_ids"])
        rows.append((prompt + reply, len(reply)))
    device = input_device(model)
    pad = pad_token_id(tokenizer=tokenizer, model=model)
    out: list[float] = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        ids, mask = left_pad([r for r, _ in chunk], pad)
        logits = model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=padded_positions(mask).to(device),
            use_cache=False,
        ).logits
        # answers end every left-padded row: only the last `tail` positions are scored
        tail = min(max(n for _, n in chunk), ids.shape[1] - 1)
        width = ids.shape[1]
        logp = torch.log_softmax(logits[:, width - tail - 1 : -1].double(), dim=-1).cpu()
        token_logp = logp.gather(-1, ids[:, width - tail :, None]).squeeze(-1)  # [batch, tail]
        for i, (_, n_reply) in enumerate(chunk):
            out.append(float(-token_logp[i, -n_reply:].mean()) if n_reply else math.nan)
    return out


@dataclass(frozen=True)
class CoherenceRule:
    """The one coherence rule (module docstring), anchored on the unsteered answers.

    Args:
        baseline_nll: mean :func:`answer_nll` of the unsteered answers.
        baseline_repetition: mean :func:`repetition` of the unsteered answers' tokens.
        threshold: coherence (0–100) needed to count as coherent.

    Example:
        >>> CoherenceRule(0.8, 0.0).score(0.5, 0.0)
        100.0
    """

    baseline_nll: float
    baseline_repetition: float = 0.0
    threshold: float = DEFAULT_THRESHOLD

    def __post_init__(self) -> None:
        for name in ("baseline_nll", "baseline_repetition", "threshold"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"CoherenceRule.{name}={value!r} must be a finite number >= 0")
        if self.threshold > 100:
            raise ValueError(f"CoherenceRule.threshold={self.threshold!r} must be in [0, 100]")

    @classmethod
    def from_baseline(
        cls,
        nlls: Sequence[float],
        token_ids: Sequence[Sequence[int]],
        threshold: float = DEFAULT_THRESHOLD,
    ) -> CoherenceRule:
        """The rule anchored on unsteered answers' NLLs and token ids (empty answers skipped).

        Example:
            >>> CoherenceRule.from_baseline([0.8, 1.0], [[1, 2, 3], [4, 5, 6]]).baseline_nll
            0.9
        """
        kept = [(x, ids) for x, ids in zip(nlls, token_ids, strict=True) if math.isfinite(x)]
        if not kept:
            raise ValueError("no unsteered answer with a finite NLL; the baseline needs one")
        nll0 = sum(x for x, _ in kept) / len(kept)
        rep0 = sum(repetition(ids) for _, ids in kept) / len(kept)
        return cls(round(nll0, 12), round(rep0, 12), threshold)

    def score(self, nll: float, repetition: float, judge: float | None = None) -> float:
        """Coherence 0–100 of one answer (``nan`` NLL — an empty answer — scores 0)."""
        if not math.isfinite(nll):
            return 0.0
        likelihood = min(1.0, math.exp(-(nll - self.baseline_nll)))
        extra = max(0.0, repetition - self.baseline_repetition)
        offline = 100.0 * likelihood * (1.0 - extra)
        return offline if judge is None else min(offline, float(judge))

    def coherent(self, score: float) -> bool:
        """Whether a coherence score passes the threshold."""
        return score >= self.threshold
