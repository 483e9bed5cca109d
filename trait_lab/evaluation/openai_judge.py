"""A judge behind any OpenAI-compatible server: OpenAI, vLLM, llama.cpp, Ollama, trait-lab serve.

:class:`OpenAIJudge` asks for one chat completion per item (``temperature=0``, ``max_tokens=3``,
``logprobs=True``, ``top_logprobs=20``) and reads the *first* generated token's top
log-probabilities: every token that spells an integer 0–100 adds ``exp(logprob)`` to that
number, and the score is their expectation
(:func:`~trait_lab.evaluation.scoring.score_from_logprobs`), ``None`` when less than
``min_mass`` lands on numbers.

That is exact only when the judge's tokenizer has one token for each number 0–100 (GPT-4o and
Llama 3 do). A tokenizer that spells numbers digit by digit (SmolLM2, Llama 2, Gemma, Qwen)
puts only the first digit in the first token: its "7" stands for 7, 70–79 and 75 alike. The
judge asks once for "57" and raises :class:`JudgeTokenizerError` when the answer starts "5",
"7" (and whenever an answer's first two tokens are both single digits); use a model whose
tokenizer has whole-number tokens, or :class:`~trait_lab.evaluation.judges.LocalLogprobJudge`,
which reads exact multi-token probabilities.

Requests run concurrently (at most ``max_concurrency`` at a time); connection errors, timeouts,
429 and 5xx answers are retried with exponential backoff, other refusals are not. With
``cache_dir`` every parsed answer is kept in one small JSON file per request, written
atomically, so a rerun asks the server nothing it already answered.

Example:
    >>> judge = OpenAIJudge("gpt-4o-mini", cache_dir="judge_cache")  # doctest: +SKIP
    >>> run_sync(judge.score_trait([JudgeItem("Day?", "Wonderful!", "optimism", "Hope.")]))
    ... # doctest: +SKIP
    [88.2]
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from trait_lab.core.atomic import atomic_write_json
from trait_lab.evaluation.judges import (
    COHERENCE_PROMPT,
    TRAIT_PROMPT,
    JudgeItem,
    coherence_prompt,
    trait_prompt,
)
from trait_lab.evaluation.scoring import MIN_NUMBER_MASS, score_from_logprobs

__all__ = [
    "OPENAI_BASE_URL",
    "JudgeError",
    "JudgeRequestError",
    "JudgeTokenizerError",
    "JudgeUnavailableError",
    "OpenAIJudge",
]

OPENAI_BASE_URL = "https://api.openai.com/v1"
"""Where the judge goes when neither ``base_url`` nor ``$OPENAI_BASE_URL`` says otherwise."""

Answer = dict[str, Any]  # {"tokens": [generated token texts], "top_logprobs": [[text, logprob]]}


class JudgeError(RuntimeError):
    """A judge could not score: the base of every judge failure."""


class JudgeUnavailableError(JudgeError):
    """The server could not be reached (or kept failing) through every retry."""


class JudgeRequestError(JudgeError):
    """The server refused the request (a 4xx other than 429); retrying would not help."""


class JudgeTokenizerError(JudgeError):
    """The judge model spells numbers digit by digit, so its first token is not the score."""


def _digit(token: str) -> bool:
    text = token.strip()
    return len(text) == 1 and text.isascii() and text.isdigit()


def _retryable(exc: BaseException) -> bool:
    import openai

    if isinstance(exc, openai.APIConnectionError):  # timeouts included
        return True
    return isinstance(exc, openai.APIStatusError) and (
        exc.status_code == 429 or exc.status_code >= 500
    )


class OpenAIJudge:
    """Score answers with a model behind an OpenAI-compatible ``/v1/chat/completions``.

    Args:
        model: the judge model's name on that server.
        base_url: e.g. ``"http://127.0.0.1:8000/v1"``; default ``$OPENAI_BASE_URL``, else
            OpenAI's API.
        api_key: default ``$OPENAI_API_KEY`` (a local server ignores it).
        max_concurrency: requests in flight at once.
        max_retries: retries after a connection error, timeout, 429 or 5xx.
        backoff: seconds before the first retry; doubled for each later one.
        timeout: seconds per request.
        cache_dir: keep every answer here and reuse it (``None``: no cache).
        min_mass: least probability on numbers for a score (else ``None``).
        top_logprobs: alternatives asked for at the first token (1–20).
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        max_concurrency: int = 8,
        max_retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 60.0,
        cache_dir: str | os.PathLike[str] | None = None,
        min_mass: float = MIN_NUMBER_MASS,
        top_logprobs: int = 20,
    ) -> None:
        checks = {
            "max_concurrency": (max_concurrency, max_concurrency >= 1, ">= 1"),
            "max_retries": (max_retries, max_retries >= 0, ">= 0"),
            "backoff": (backoff, backoff >= 0, ">= 0 seconds"),
            "timeout": (timeout, timeout > 0, "> 0 seconds"),
            "min_mass": (min_mass, 0.0 < min_mass <= 1.0, "in (0, 1]; the default is 0.25"),
            "top_logprobs": (top_logprobs, 1 <= top_logprobs <= 20, "in 1..20 (OpenAI's range)"),
        }
        for name, (value, ok, allowed) in checks.items():
            if not ok:
                raise ValueError(f"OpenAIJudge {name}={value!r} is invalid: it must be {allowed}")
        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_BASE_URL).rstrip(
            "/"
        )
        self._api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.max_concurrency = int(max_concurrency)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.timeout = float(timeout)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.min_mass = float(min_mass)
        self.top_logprobs = int(top_logprobs)
        self.requests_sent = 0  # HTTP requests made (retries included), for tests and reports
        self._numbers_checked = False

    @property
    def identity(self) -> dict[str, Any]:
        """``{"kind": "openai", "base_url", "model", "min_mass", "top_logprobs", "prompts"}``."""
        return {
            "kind": "openai",
            "base_url": self.base_url,
            "model": self.model,
            "min_mass": self.min_mass,
            "top_logprobs": self.top_logprobs,
            "prompts": {"trait": TRAIT_PROMPT, "coherence": COHERENCE_PROMPT},
        }

    async def score_trait(self, items: Sequence[JudgeItem]) -> list[float | None]:
        """Trait scores, one per item, in order (asked concurrently)."""
        return await self.score_requests([trait_prompt(item) for item in items])

    async def score_coherence(self, items: Sequence[JudgeItem]) -> list[float | None]:
        """Coherence scores, one per item, in order."""
        return await self.score_requests([coherence_prompt(item) for item in items])

    async def score_requests(self, requests: Sequence[str]) -> list[float | None]:
        """The expected number the judge answers to each request (a user message)."""
        import openai

        client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=self._api_key or "unused",
            max_retries=0,
            timeout=self.timeout,
        )
        limit = asyncio.Semaphore(self.max_concurrency)
        if not self._numbers_checked:
            await self._check_numbers(client)

        async def one(request: str) -> float | None:
            async with limit:
                answer = await self._answer(client, request)
            return self._score(answer)

        try:
            return list(await asyncio.gather(*(one(r) for r in requests)))
        finally:
            await client.close()

    async def _check_numbers(self, client: Any) -> None:
        """Ask once for "57": a first token "5" followed by "7" means digit-by-digit numbers.

        Catches such a tokenizer even when the judged answers are single digits (which the
        per-answer check in ``_score`` cannot see); an answer that is not 57 decides nothing.
        """
        answer = await self._answer(client, "Reply with the number 57 and nothing else.")
        tokens = [t.strip() for t in answer["tokens"]]
        if tokens[:2] == ["5", "7"]:
            self._score(answer)  # raises JudgeTokenizerError with the explanation
        self._numbers_checked = True

    def _params(self, request: str) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": [{"role": "user", "content": request}],
            "temperature": 0,
            "max_tokens": 3,
            "logprobs": True,
            "top_logprobs": self.top_logprobs,
        }

    def _score(self, answer: Answer) -> float | None:
        tokens = answer["tokens"]
        if len(tokens) >= 2 and _digit(tokens[0]) and _digit(tokens[1]):
            raise JudgeTokenizerError(
                f"the judge {self.model!r} at {self.base_url} answered {tokens[:2]}: its "
                "tokenizer spells numbers digit by digit, so its first token's probabilities "
                "are not the score's. Use a judge model whose tokenizer has whole-number tokens "
                "0-100 (GPT-4o, Llama 3), or LocalLogprobJudge for this model."
            )
        pairs = [(str(text), float(logprob)) for text, logprob in answer["top_logprobs"]]
        return score_from_logprobs(pairs, self.min_mass)

    def _cache_path(self, params: dict[str, Any]) -> Path | None:
        if self.cache_dir is None:
            return None
        key = json.dumps({"base_url": self.base_url, **params}, sort_keys=True)
        return self.cache_dir / f"{hashlib.sha256(key.encode()).hexdigest()}.json"

    async def _answer(self, client: Any, request: str) -> Answer:
        params = self._params(request)
        path = self._cache_path(params)
        if path is not None and path.is_file():
            try:
                cached = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(cached, dict) and {"tokens", "top_logprobs"} <= set(cached):
                    return cached
            except (OSError, ValueError):
                pass  # unreadable: ask again and overwrite it
        answer = self._parse(await self._complete(client, params))
        if path is not None:
            atomic_write_json(path, answer)
        return answer

    def _parse(self, response: Any) -> Answer:
        choice = response.choices[0] if response.choices else None
        content = choice.logprobs.content if choice and choice.logprobs else None
        if content is None:
            raise JudgeError(
                f"the server at {self.base_url} returned no logprobs for {self.model!r}; this "
                "judge reads the first token's top_logprobs, so use a server and model that "
                "support logprobs=true with top_logprobs (OpenAI, vLLM, trait-lab serve)"
            )
        first = [[alt.token, alt.logprob] for alt in content[0].top_logprobs] if content else []
        return {"tokens": [entry.token for entry in content], "top_logprobs": first}

    async def _complete(self, client: Any, params: dict[str, Any]) -> Any:
        """One chat completion, retried with backoff; raises a ``JudgeError`` at the end."""
        import openai

        attempts = self.max_retries + 1
        for attempt in range(attempts):
            try:
                self.requests_sent += 1
                return await client.chat.completions.create(**params)
            except openai.OpenAIError as exc:
                if not _retryable(exc):
                    raise self._refused(exc) from exc
                if attempt + 1 == attempts:
                    raise JudgeUnavailableError(
                        f"the judge server at {self.base_url} (model {self.model!r}) failed "
                        f"{attempts} attempts; last error: {type(exc).__name__}: {exc}. Check "
                        "that the server runs and the URL is right (trait-lab serve, vllm "
                        "serve, ...), or raise max_retries / timeout for a busy server."
                    ) from exc
                await asyncio.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    def _refused(self, exc: BaseException) -> JudgeError:
        status = getattr(exc, "status_code", None)
        hint = {
            401: "pass api_key= or set OPENAI_API_KEY",
            404: "check the model name (GET /v1/models lists the server's models)",
        }.get(status or 0, "check the request parameters the server supports")
        return JudgeRequestError(
            f"the judge server at {self.base_url} refused the request for model "
            f"{self.model!r} (HTTP {status}): {str(exc).rstrip('.')}. Not retried: {hint}."
        )
