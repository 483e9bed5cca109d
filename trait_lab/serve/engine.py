"""The model behind ``trait-lab serve``: a checked request in, a reply (or its pieces) out.

:meth:`Engine.prepare` turns a :class:`~trait_lab.serve.protocol.GenerationRequest` into a
:class:`Job`: the prompt tokenised (chat messages through the tokenizer's chat template,
:func:`trait_lab.prompts.formatting.format_prompt`), the token budget checked against the
model's context, sampling settings, and the steering resolved into ``SteeringConfig`` s.
:meth:`Engine.run` generates through :meth:`trait_lab.generation.HookedGenerator.stream` (the
one generation loop) and reports each :class:`Piece` of the reply as it becomes final.

Logprobs are the model's own log-softmax over the whole vocabulary at each step, before
temperature or top-p: what the model thinks, not what the sampler drew from. The
end-of-sequence token ends the reply (``finish_reason="stop"``) and is neither in the text nor
in the logprobs, but counts in ``completion_tokens``. Calls are serialised by a lock: one
model, one generation at a time.

Example:
    >>> from trait_lab.serve.protocol import parse_request
    >>> from trait_lab.testing import tiny_model, tiny_tokenizer
    >>> engine = Engine(tiny_model(), tiny_tokenizer())
    >>> body = {"model": "m", "prompt": "Hi", "max_tokens": 3, "temperature": 0}
    >>> engine.run(engine.prepare(parse_request("completion", body, "m"))).completion_tokens
    3
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from trait_lab.generation.configs import SamplingConfig, SteeringConfig
from trait_lab.generation.generator import HookedGenerator
from trait_lab.prompts.formatting import encode_text, format_prompt, has_chat_template
from trait_lab.serve.protocol import APIError, GenerationRequest, invalid_value
from trait_lab.serve.steering import SteeringResolver
from trait_lab.serve.text import StopText

__all__ = ["DEFAULT_MAX_TOKENS", "Completion", "Engine", "Job", "Piece", "TokenLogprob"]

DEFAULT_MAX_TOKENS = 256
"""Tokens generated when a request gives no ``max_tokens`` (fewer if the context is shorter)."""
_FLOOR = -9999.0  # OpenAI's stand-in for a log-probability of zero (JSON has no -inf)


@dataclass(frozen=True)
class Job:
    """A checked, tokenised request, ready to generate."""

    prompt_ids: list[int]
    max_tokens: int
    sampling: SamplingConfig
    stop: tuple[str, ...] = ()
    steering: list[SteeringConfig] = field(default_factory=list)
    top_logprobs: int | None = None


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token: its text, log-probability, the best alternatives, and its offset."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...]
    offset: int = 0


@dataclass
class Piece:
    """Newly final reply text, its tokens' logprobs (when asked), and the end (last piece)."""

    text: str
    tokens: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None


@dataclass
class Completion:
    """The whole reply."""

    text: str
    tokens: list[TokenLogprob]
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


class Engine:
    """One model and tokenizer serving requests, one at a time.

    Args:
        model: a Hugging Face causal LM.
        tokenizer: its tokenizer (a chat template is needed for chat requests).
        resolver: turns ``steering`` items into configs (default: by-value steering only).
    """

    def __init__(
        self, model: nn.Module, tokenizer: Any, resolver: SteeringResolver | None = None
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.generator = HookedGenerator(model)
        self.resolver = resolver or SteeringResolver(model)
        config = getattr(model, "config", None)
        self.context = getattr(config, "max_position_embeddings", None)
        self._lock = threading.Lock()

    def prepare(self, request: GenerationRequest) -> Job:
        """Tokenise, check the budget, resolve steering; a bad request raises ``APIError``."""
        ids = self._encode(request)
        sampling = SamplingConfig()
        if request.temperature > 0:
            top_p = None if request.top_p >= 1.0 else request.top_p
            sampling = SamplingConfig(
                do_sample=True, temperature=request.temperature, top_p=top_p, seed=request.seed
            )
        return Job(
            prompt_ids=ids,
            max_tokens=self._budget(request, len(ids)),
            sampling=sampling,
            stop=request.stop,
            steering=self.resolver.configs(request.steering),
            top_logprobs=request.top_logprobs,
        )

    def _encode(self, request: GenerationRequest) -> list[int]:
        if isinstance(request.prompt, str):
            ids = encode_text(self.tokenizer, request.prompt, chat=False)
        else:
            if not has_chat_template(self.tokenizer):
                raise APIError(
                    "this model's tokenizer has no chat template, so chat messages cannot be "
                    "formatted for it; use POST /v1/completions with a plain prompt",
                    param="messages",
                    code="no_chat_template",
                )
            try:
                text = format_prompt(self.tokenizer, request.prompt)
            except ValueError as exc:
                raise APIError(str(exc), param="messages") from exc
            ids = encode_text(self.tokenizer, text, chat=True)
        if not ids:
            raise APIError("the prompt encodes to no tokens; send some text", param="prompt")
        return list(ids)

    def _budget(self, request: GenerationRequest, prompt_len: int) -> int:
        if self.context is None:
            return request.max_tokens or DEFAULT_MAX_TOKENS
        room = int(self.context) - prompt_len
        if room < 1 or (request.max_tokens is not None and request.max_tokens > room):
            raise invalid_value(
                "max_tokens",
                request.max_tokens,
                f"at most {max(room, 0)}: this model's context is {self.context} tokens and "
                f"the prompt takes {prompt_len}",
                "Lower max_tokens or shorten the prompt.",
            )
        return request.max_tokens or min(DEFAULT_MAX_TOKENS, room)

    def run(
        self,
        job: Job,
        emit: Callable[[Piece], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Completion:
        """Generate the reply; ``emit`` gets each piece as it becomes final (the last one has
        ``finish_reason``). ``cancel.set()`` stops early (a client went away)."""
        with self._lock:
            return self._run(job, emit or (lambda piece: None), cancel)

    def _run(
        self, job: Job, emit: Callable[[Piece], None], cancel: threading.Event | None
    ) -> Completion:
        text = StopText(self.tokenizer, job.stop)
        logprobs: list[TokenLogprob] = []
        released: list[TokenLogprob] = []
        finish, generated = "length", 0
        events = self.generator.stream(
            torch.tensor([job.prompt_ids]),
            max_new_tokens=job.max_tokens,
            steering=job.steering,
            sampling=job.sampling,
            cancel=cancel,
        )
        try:
            for event in events:
                token = event.token_ids[0]
                if token is None:
                    continue
                generated += 1
                if event.finished[0]:  # the end-of-sequence token
                    finish = "stop"
                    break
                if job.top_logprobs is not None and event.logits is not None:
                    logprobs.append(self._logprob(event.logits[0], token, job.top_logprobs))
                piece = self._piece(text.add(token), logprobs, text.starts)
                released += piece.tokens
                if piece.text or piece.tokens:
                    emit(piece)
                if text.stopped:
                    finish = "stop"
                    break
        finally:
            getattr(events, "close", lambda: None)()  # remove the steering hooks now
        last = self._piece(text.finish(), logprobs, text.starts)
        last.finish_reason = finish
        emit(last)
        released += last.tokens
        return Completion(text.text, released, finish, len(job.prompt_ids), generated)

    def _piece(
        self, new: tuple[str, list[int]], logprobs: list[TokenLogprob], starts: list[int]
    ) -> Piece:
        chunk, indices = new
        tokens = [
            TokenLogprob(logprobs[i].token, logprobs[i].logprob, logprobs[i].top, starts[i])
            for i in indices
            if i < len(logprobs)
        ]
        return Piece(chunk, tokens)

    def _logprob(self, logits: torch.Tensor, token: int, k: int) -> TokenLogprob:
        logp = torch.log_softmax(logits.float(), dim=-1)
        top: tuple[tuple[str, float], ...] = ()
        if k:
            values, ids = torch.topk(logp, min(k, logp.numel()))
            top = tuple(
                (self._token_text(i), max(v, _FLOOR))
                for v, i in zip(values.tolist(), ids.tolist(), strict=True)
            )
        return TokenLogprob(self._token_text(token), max(float(logp[token]), _FLOOR), top)

    def _token_text(self, token: int) -> str:
        return str(self.tokenizer.decode([int(token)]))
