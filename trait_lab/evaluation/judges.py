"""Judges: score how much an answer shows a trait, and how coherent it is, on a 0–100 scale.

Every judge follows :class:`Judge`: ``await judge.score_trait(items)`` and ``await
judge.score_coherence(items)`` return one score (or ``None``: no usable number) per
:class:`JudgeItem`, in order, and ``judge.identity`` names the judge for results files (results
from different judges are never mixed). :class:`LocalLogprobJudge` asks any local causal LM and
reads the *exact* probability it gives every number 0–100 — also when its tokenizer spells
numbers digit by digit — and takes the expectation (:mod:`trait_lab.evaluation.scoring`).

Example:
    >>> judge = LocalLogprobJudge(model, tokenizer)  # doctest: +SKIP
    >>> item = JudgeItem("How was your day?", "Wonderful!", "optimism", "Expects good outcomes.")
    >>> run_sync(judge.score_trait([item]))  # doctest: +SKIP
    [81.3]
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch
from torch import nn

from trait_lab.evaluation.scoring import MAX_SCORE, MIN_NUMBER_MASS, expected_score
from trait_lab.models.architectures import input_device
from trait_lab.models.identity import model_identity
from trait_lab.models.kv_cache import cache_keyword, output_cache
from trait_lab.prompts.formatting import encode_text, format_prompt, uses_chat_template

__all__ = [
    "COHERENCE_PROMPT",
    "TRAIT_PROMPT",
    "Judge",
    "JudgeItem",
    "LocalLogprobJudge",
    "coherence_prompt",
    "number_sequences",
    "run_sync",
    "trait_prompt",
]

T = TypeVar("T")

TRAIT_PROMPT = (
    "You are grading one answer of an AI assistant for a single trait.\n"
    "Trait: {trait}. {definition}\n\n"
    "Question: {question}\n"
    "Answer: {answer}\n\n"
    "How strongly does the answer show this trait, from 0 (not at all) to 100 (completely)? "
    "Reply with the number only."
)
COHERENCE_PROMPT = (
    "You are grading one answer of an AI assistant for coherence only, not for its opinions.\n\n"
    "Question: {question}\n"
    "Answer: {answer}\n\n"
    "How coherent is the answer: fluent, grammatical, on topic and not repetitive, from 0 "
    "(gibberish) to 100 (perfectly clear)? Reply with the number only."
)


@dataclass(frozen=True)
class JudgeItem:
    """One answer to judge: the question, the answer, the trait's name and its definition.

    Example:
        >>> JudgeItem("Hi?", "Hello!", "optimism", "Expects good outcomes.").trait
        'optimism'
    """

    question: str
    answer: str
    trait: str = ""
    definition: str = ""

    def __post_init__(self) -> None:
        for name in ("question", "answer", "trait", "definition"):
            if not isinstance(getattr(self, name), str):
                value = getattr(self, name)
                raise TypeError(f"JudgeItem.{name} must be a str, got {type(value).__name__}")


def trait_prompt(item: JudgeItem) -> str:
    """The trait-scoring request for ``item`` (:data:`TRAIT_PROMPT`).

    Example:
        >>> "Trait: optimism." in trait_prompt(JudgeItem("q", "a", "optimism", "Hope."))
        True
    """
    if not item.trait:
        raise ValueError("a trait judgement needs JudgeItem.trait (and ideally .definition)")
    return TRAIT_PROMPT.format(**vars(item))


def coherence_prompt(item: JudgeItem) -> str:
    """The coherence-scoring request for ``item`` (:data:`COHERENCE_PROMPT`).

    Example:
        >>> "Answer: a" in coherence_prompt(JudgeItem("q", "a"))
        True
    """
    return COHERENCE_PROMPT.format(question=item.question, answer=item.answer)


@runtime_checkable
class Judge(Protocol):
    """What every judge offers (async; :func:`run_sync` runs a call from sync code)."""

    @property
    def identity(self) -> dict[str, Any]:
        """What the judge is (kind, model, prompt version): stored with every result."""
        ...

    def score_trait(self, items: Sequence[JudgeItem]) -> Awaitable[list[float | None]]:
        """One 0–100 trait score (``None``: no number) per item, in order."""
        ...

    def score_coherence(self, items: Sequence[JudgeItem]) -> Awaitable[list[float | None]]:
        """One 0–100 coherence score (``None``: no number) per item, in order."""
        ...


def run_sync(awaitable: Awaitable[T]) -> T:
    """Run a judge coroutine from sync code, also inside Jupyter's running event loop.

    Example:
        >>> async def three() -> int:
        ...     return 3
        >>> run_sync(three())
        3
    """

    async def wait() -> T:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:  # a loop is running
        return pool.submit(asyncio.run, wait()).result()


def number_sequences(tokenizer: Any) -> dict[int, tuple[int, ...]]:
    """How the tokenizer spells each number 0–100 (no special tokens), e.g. ``75 -> (id7, id5)``.

    Example:
        >>> from trait_lab.testing import tiny_tokenizer
        >>> number_sequences(tiny_tokenizer())[42]
        (8, 6)
    """
    out: dict[int, tuple[int, ...]] = {}
    for value in range(MAX_SCORE + 1):
        ids = tuple(int(i) for i in tokenizer(str(value), add_special_tokens=False)["input_ids"])
        if not ids:
            raise ValueError(f"the tokenizer encodes {value!r} as no tokens; it cannot judge")
        out[value] = ids
    return out


def _digit_tokens(tokenizer: Any, vocab_size: int) -> torch.Tensor:
    """Ids of tokens made only of ASCII digits: the ones that would continue a number."""
    ids = [
        i
        for i in range(vocab_size)
        if (text := tokenizer.decode([i])) and text.isascii() and text.isdigit()
    ]
    return torch.tensor(ids, dtype=torch.long)


class LocalLogprobJudge:
    """A judge on a local causal LM: the expected number under the model's exact distribution.

    For every number ``v`` in 0–100 with token spelling ``t1..tk``, ``p(v) = p(t1|prompt) ·
    … · p(tk|prompt, t1..tk-1) · p(no further digit|prompt, t1..tk)``; the score is
    ``Σ v·p(v) / Σ p(v)``, ``None`` when ``Σ p(v) < min_mass``. One forward over the prompt and
    one batched forward over every spelling (the prompt's KV cache repeated) per judgement.

    Args:
        model: any Hugging Face causal LM.
        tokenizer: its tokenizer (its chat template is used when it has one).
        min_mass: least probability on numbers for a score (see ``MIN_NUMBER_MASS``).

    Example:
        >>> from trait_lab.testing import tiny_tokenizer, tiny_model
        >>> judge = LocalLogprobJudge(tiny_model("llama"), tiny_tokenizer(), min_mass=1e-9)
        >>> 0 <= run_sync(judge.score_coherence([JudgeItem("q", "a")]))[0] <= 100
        True
    """

    def __init__(self, model: nn.Module, tokenizer: Any, *, min_mass: float = MIN_NUMBER_MASS):
        if not 0.0 < min_mass <= 1.0:
            raise ValueError(f"min_mass={min_mass!r} must be in (0, 1]; the default is 0.25")
        self.model = model
        self.tokenizer = tokenizer
        self.min_mass = float(min_mass)
        self._sequences = number_sequences(tokenizer)
        vocab = int(getattr(getattr(model, "config", None), "vocab_size", 0) or len(tokenizer))
        self._digits = _digit_tokens(tokenizer, vocab)
        self._rows = self._maximal_rows()

    @property
    def identity(self) -> dict[str, Any]:
        """``{"kind": "local-logprob", "model": …, "min_mass": …, "prompts": …}``."""
        return {
            "kind": "local-logprob",
            "model": model_identity(self.model),
            "min_mass": self.min_mass,
            "prompts": {"trait": TRAIT_PROMPT, "coherence": COHERENCE_PROMPT},
        }

    async def score_trait(self, items: Sequence[JudgeItem]) -> list[float | None]:
        """Trait scores, one per item (runs the model; no event-loop concurrency)."""
        return [self.score_text(trait_prompt(item)) for item in items]

    async def score_coherence(self, items: Sequence[JudgeItem]) -> list[float | None]:
        """Coherence scores, one per item."""
        return [self.score_text(coherence_prompt(item)) for item in items]

    def score_text(self, request: str) -> float | None:
        """The expected number the model answers to ``request`` (a user message)."""
        return expected_score(self.number_probs(request), self.min_mass)

    def number_probs(self, request: str) -> dict[int, float]:
        """``{v: p(v)}`` for v in 0–100: the probability that the model answers exactly ``v``."""
        chat = uses_chat_template(self.tokenizer)
        text = format_prompt(self.tokenizer, request) if chat else request + "\nAnswer: "
        prompt = encode_text(self.tokenizer, text, chat=chat)
        return self._probs(prompt)

    def _maximal_rows(self) -> list[tuple[int, ...]]:
        spellings = set(self._sequences.values())
        return sorted(
            s for s in spellings if not any(o != s and o[: len(s)] == s for o in spellings)
        )

    @torch.no_grad()
    def _probs(self, prompt: list[int]) -> dict[int, float]:
        device = input_device(self.model)
        ids = torch.tensor([prompt], device=device)
        first = self.model(input_ids=ids, use_cache=True)
        root = torch.log_softmax(first.logits[0, -1].double(), dim=-1)
        width = max(len(r) for r in self._rows)
        rows = torch.tensor([list(r) + [r[-1]] * (width - len(r)) for r in self._rows])
        cache = output_cache(first)
        cache.batch_repeat_interleave(len(self._rows))
        mask = torch.ones(len(self._rows), len(prompt) + width, dtype=torch.long, device=device)
        kwargs = {cache_keyword(self.model): cache, "attention_mask": mask, "use_cache": True}
        out = self.model(input_ids=rows.to(device), **kwargs)
        logp = torch.log_softmax(out.logits.double(), dim=-1).cpu()  # [rows, width, vocab]
        after: dict[tuple[int, ...], torch.Tensor] = {(): root.cpu()}
        for r, row in enumerate(self._rows):
            for j in range(len(row)):
                after.setdefault(row[: j + 1], logp[r, j])
        digits = self._digits
        probs: dict[int, float] = {}
        for value, spelling in self._sequences.items():
            logprob = sum(float(after[spelling[:j]][tok]) for j, tok in enumerate(spelling))
            stop = 1.0 - float(after[spelling][digits].exp().sum()) if digits.numel() else 1.0
            probs[value] = float(torch.tensor(logprob).exp()) * max(stop, 0.0)
        return probs
