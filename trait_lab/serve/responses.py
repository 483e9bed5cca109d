"""OpenAI-shaped response bodies: completions, streamed chunks, logprobs and usage.

Chat logprobs follow ``/v1/chat/completions``: ``{"content": [{"token", "logprob", "bytes",
"top_logprobs": [{"token", "logprob", "bytes"}, ...]}, ...]}``. Completion logprobs follow the
legacy ``/v1/completions`` shape: parallel lists ``tokens``, ``token_logprobs``,
``top_logprobs`` (one ``{token: logprob}`` dict per token: the best alternatives plus the
chosen token) and ``text_offset`` (where each token starts in the returned text).

Example:
    >>> from trait_lab.serve.engine import TokenLogprob
    >>> chat_logprobs([TokenLogprob("Hi", -0.5, (("Hi", -0.5), ("Yo", -1.5)))])["content"][0][
    ...     "top_logprobs"][1]
    {'token': 'Yo', 'logprob': -1.5, 'bytes': [89, 111]}
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from trait_lab.serve.engine import Completion, Piece, TokenLogprob

__all__ = ["ChunkWriter", "chat_logprobs", "completion_body", "completion_logprobs", "usage"]


def _bytes(text: str) -> list[int]:
    return list(text.encode("utf-8"))


def chat_logprobs(tokens: list[TokenLogprob]) -> dict[str, Any]:
    """The chat ``logprobs`` object of these tokens."""
    return {
        "content": [
            {
                "token": t.token,
                "logprob": t.logprob,
                "bytes": _bytes(t.token),
                "top_logprobs": [
                    {"token": alt, "logprob": lp, "bytes": _bytes(alt)} for alt, lp in t.top
                ],
            }
            for t in tokens
        ]
    }


def completion_logprobs(tokens: list[TokenLogprob]) -> dict[str, Any]:
    """The legacy completions ``logprobs`` object of these tokens.

    Example:
        >>> out = completion_logprobs([TokenLogprob(" a", -0.1, ((" b", -0.05),), offset=3)])
        >>> out["top_logprobs"], out["text_offset"]
        ([{' b': -0.05, ' a': -0.1}], [3])
    """
    return {
        "tokens": [t.token for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [{**dict(t.top), t.token: t.logprob} for t in tokens],
        "text_offset": [t.offset for t in tokens],
    }


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """``{"prompt_tokens", "completion_tokens", "total_tokens"}``.

    Example:
        >>> usage(5, 3)["total_tokens"]
        8
    """
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _logprobs(kind: str, tokens: list[TokenLogprob]) -> dict[str, Any]:
    return chat_logprobs(tokens) if kind == "chat" else completion_logprobs(tokens)


@dataclass
class _Header:
    kind: str
    model: str
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    def __post_init__(self) -> None:
        prefix = "chatcmpl" if self.kind == "chat" else "cmpl"
        self.id = self.id or f"{prefix}-{uuid.uuid4().hex}"

    def fields(self, streamed: bool) -> dict[str, Any]:
        if self.kind == "chat":
            obj = "chat.completion.chunk" if streamed else "chat.completion"
        else:
            obj = "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}


def completion_body(kind: str, model: str, done: Completion, logprobs: bool) -> dict[str, Any]:
    """The whole (non-streamed) response of a chat (``kind="chat"``) or completion request."""
    choice: dict[str, Any] = {"index": 0}
    if kind == "chat":
        choice["message"] = {"role": "assistant", "content": done.text}
    else:
        choice["text"] = done.text
    choice["logprobs"] = _logprobs(kind, done.tokens) if logprobs else None
    choice["finish_reason"] = done.finish_reason
    return {
        **_Header(kind, model).fields(streamed=False),
        "choices": [choice],
        "usage": usage(done.prompt_tokens, done.completion_tokens),
    }


class ChunkWriter:
    """The chunks of one streamed response, all with the same id and creation time.

    Example:
        >>> writer = ChunkWriter("chat", "m", logprobs=False)
        >>> writer.start()[0]["choices"][0]["delta"]
        {'role': 'assistant', 'content': ''}
        >>> writer.piece(Piece("Hi"))[0]["choices"][0]["delta"]
        {'content': 'Hi'}
    """

    def __init__(self, kind: str, model: str, *, logprobs: bool, include_usage: bool = False):
        self.header = _Header(kind, model)
        self.kind = kind
        self.logprobs = logprobs
        self.include_usage = include_usage

    def _chunk(self, choice: dict[str, Any]) -> dict[str, Any]:
        chunk = {**self.header.fields(streamed=True), "choices": [{"index": 0, **choice}]}
        if self.include_usage:
            chunk["usage"] = None
        return chunk

    def start(self) -> list[dict[str, Any]]:
        """What opens the stream (chat: the assistant role)."""
        if self.kind != "chat":
            return []
        delta = {"role": "assistant", "content": ""}
        return [self._chunk({"delta": delta, "logprobs": None, "finish_reason": None})]

    def piece(self, piece: Piece) -> list[dict[str, Any]]:
        """The chunks of one piece: its text (if any), then the end (on the last piece)."""
        chunks = []
        body: dict[str, Any]
        if piece.text or piece.tokens:
            logprobs = _logprobs(self.kind, piece.tokens) if self.logprobs else None
            body = (
                {"delta": {"content": piece.text}} if self.kind == "chat" else {"text": piece.text}
            )
            chunks.append(self._chunk({**body, "logprobs": logprobs, "finish_reason": None}))
        if piece.finish_reason is not None:
            body = {"delta": {}} if self.kind == "chat" else {"text": ""}
            chunks.append(
                self._chunk({**body, "logprobs": None, "finish_reason": piece.finish_reason})
            )
        return chunks

    def end(self, done: Completion) -> list[dict[str, Any]]:
        """The usage chunk (empty ``choices``) when ``stream_options.include_usage`` asked."""
        if not self.include_usage:
            return []
        return [
            {
                **self.header.fields(streamed=True),
                "choices": [],
                "usage": usage(done.prompt_tokens, done.completion_tokens),
            }
        ]
