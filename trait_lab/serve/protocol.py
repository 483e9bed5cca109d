"""The OpenAI wire format of ``trait-lab serve``: its errors, and request bodies parsed and checked.

Every problem is an :class:`APIError`, sent as OpenAI sends errors::

    {"error": {"message": "...", "type": "invalid_request_error", "param": "top_p", "code": ...}}

:func:`parse_request` reads a ``/v1/chat/completions`` or ``/v1/completions`` body into a
:class:`GenerationRequest`. Unknown fields are refused (a typo must not be silently ignored),
and so are OpenAI fields this server does not implement when they ask for something (``n=2``,
a penalty, ``echo``); ``user`` is accepted and ignored. The ``steering`` extension is checked
by :mod:`trait_lab.serve.steering`.

Example:
    >>> body = {"model": "m", "messages": [{"role": "user", "content": "Hi"}], "temperature": 0}
    >>> parse_request("chat", body, "m").temperature
    0.0
    >>> parse_request("chat", {**body, "n": 2}, "m")
    Traceback (most recent call last):
    ...
    trait_lab.serve.protocol.APIError: n=2 is invalid: expected 1 (one choice per request). ...
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "MAX_STOP",
    "MAX_TOP_LOGPROBS_CHAT",
    "MAX_TOP_LOGPROBS_COMPLETION",
    "APIError",
    "GenerationRequest",
    "invalid_value",
    "parse_request",
]

Kind = Literal["chat", "completion"]

MAX_STOP = 4
"""At most this many stop strings (OpenAI's limit)."""
MAX_TOP_LOGPROBS_CHAT = 20
"""Chat ``top_logprobs`` runs from 0 to this."""
MAX_TOP_LOGPROBS_COMPLETION = 5
"""Legacy completions ``logprobs`` runs from 0 to this."""

_COMMON = {
    "model",
    "max_tokens",
    "temperature",
    "top_p",
    "seed",
    "stop",
    "n",
    "stream",
    "stream_options",
    "steering",
    "user",
    "frequency_penalty",
    "presence_penalty",
}
_FIELDS: dict[str, set[str]] = {
    "chat": _COMMON | {"messages", "max_completion_tokens", "logprobs", "top_logprobs"},
    "completion": _COMMON | {"prompt", "logprobs", "echo", "suffix", "best_of"},
}
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class APIError(Exception):
    """A request the server refuses, with the HTTP status and OpenAI's error fields.

    Example:
        >>> APIError("no such model", status=404, code="model_not_found").body()["error"]["code"]
        'model_not_found'
    """

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = "invalid_value",
        status: int = 400,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status
        self.kind = kind

    def body(self) -> dict[str, Any]:
        """``{"error": {"message", "type", "param", "code"}}``, as OpenAI's API answers."""
        error = {"message": self.message, "type": self.kind, "param": self.param}
        return {"error": {**error, "code": self.code}}


def invalid_value(param: str, value: Any, allowed: str, fix: str) -> APIError:
    """The 400 for a bad field: names the value, what is allowed, and the fix.

    Example:
        >>> invalid_value("n", 2, "1", "Drop n.").message
        'n=2 is invalid: expected 1. Drop n.'
    """
    return APIError(f"{param}={value!r} is invalid: expected {allowed}. {fix}", param=param)


@dataclass(frozen=True)
class GenerationRequest:
    """A checked request: ``prompt`` is a string (completions) or a message list (chat).

    ``top_logprobs`` is ``None`` when no logprobs were asked for, else how many alternatives
    to list per token (0 lists none; the chosen token's logprob still comes back).
    """

    kind: Kind
    model: str
    prompt: str | list[dict[str, str]]
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False
    top_logprobs: int | None = None
    steering: Any = None


def parse_request(kind: Kind, body: Any, served: str) -> GenerationRequest:
    """Check a request body for ``kind`` ("chat" or "completion") against the served model name.

    Raises:
        APIError: 400 for a bad field (named in ``param``), 404 for another model's name.
    """
    if not isinstance(body, Mapping):
        raise APIError(
            f"the request body must be a JSON object, got {type(body).__name__}; send "
            '{"model": ..., "messages": [...]} (chat) or {"model": ..., "prompt": ...}',
            code="invalid_body",
        )
    model = _model(body, served)
    unknown = sorted(set(body) - _FIELDS[kind])
    if unknown:
        raise APIError(
            f"unknown parameter {unknown[0]!r}; this endpoint accepts "
            f"{', '.join(sorted(_FIELDS[kind]))}. Remove it (steering goes in 'steering').",
            param=unknown[0],
            code="unknown_parameter",
        )
    _refuse_unsupported(kind, body)
    stream = _flag(body, "stream")
    return GenerationRequest(
        kind=kind,
        model=model,
        prompt=_messages(body) if kind == "chat" else _prompt(body),
        max_tokens=_max_tokens(kind, body),
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0, "0 is greedy decoding"),
        top_p=_top_p(body),
        seed=_integer(body, "seed", None, 0, 2**63 - 1),
        stop=_stop(body),
        stream=stream,
        include_usage=_include_usage(body, stream),
        top_logprobs=_logprobs(kind, body),
        steering=body.get("steering"),
    )


def _refuse_unsupported(kind: Kind, body: Mapping[str, Any]) -> None:
    """OpenAI fields accepted only at their no-op value."""
    unset = "Leave it unset."
    defaults: dict[str, tuple[Any, str, str]] = {
        "n": (1, "1 (one choice per request)", "Send several requests instead."),
        "frequency_penalty": (0, "0 (penalties are not implemented)", unset),
        "presence_penalty": (0, "0 (penalties are not implemented)", unset),
    }
    if kind == "completion":
        defaults["echo"] = (False, "false (echo is not implemented)", unset)
        defaults["suffix"] = (None, "null (insertion is not implemented)", unset)
        defaults["best_of"] = (1, "1 (one candidate per request)", unset)
    for name, (default, allowed, fix) in defaults.items():
        value = body.get(name)
        same_type = isinstance(value, bool) == isinstance(default, bool)
        if value is not None and not (value == default and same_type):
            raise invalid_value(name, value, allowed, fix)


def _model(body: Mapping[str, Any], served: str) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise APIError(
            f"'model' is required: pass model={served!r} (GET /v1/models lists it)",
            param="model",
            code="missing_required_parameter",
        )
    if model != served:
        raise APIError(
            f"the model {model!r} does not exist on this server; it serves {served!r} (GET "
            f"/v1/models lists it). Pass model={served!r}.",
            param="model",
            code="model_not_found",
            status=404,
        )
    return model


def _content(index: int, content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, Mapping) or part.get("type") != "text":
                raise invalid_value(
                    f"messages[{index}].content",
                    part,
                    'text parts {"type": "text", "text": ...}',
                    "This server reads text only; send images and audio elsewhere.",
                )
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    raise invalid_value(
        f"messages[{index}].content", content, "a string or a list of text parts", "Send text."
    )


def _messages(body: Mapping[str, Any]) -> list[dict[str, str]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise APIError(
            "'messages' is required: a non-empty list such as "
            '[{"role": "user", "content": "Hi"}]',
            param="messages",
            code="missing_required_parameter",
        )
    out = []
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, Mapping) else None
        if role not in _ROLES:
            raise invalid_value(
                f"messages[{i}].role",
                role,
                f"one of {', '.join(_ROLES)}",
                "Tool and function messages are not supported; send text turns only.",
            )
        out.append({"role": _ROLES[role], "content": _content(i, message.get("content"))})
    if out[-1]["role"] == "assistant":
        raise invalid_value(
            f"messages[{len(out) - 1}].role",
            "assistant",
            "a conversation that ends with a user (or system) message",
            "The model writes the next assistant turn; drop the trailing assistant message.",
        )
    return out


def _prompt(body: Mapping[str, Any]) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, list) and len(prompt) > 1:
        raise invalid_value(
            "prompt",
            f"a list of {len(prompt)} prompts",
            "one prompt per request",
            "Send one request per prompt (they are served one after another anyway).",
        )
    if not isinstance(prompt, str) or not prompt:
        raise APIError(
            f"'prompt' must be a non-empty string, got {prompt!r}; pass prompt='Once upon a time'",
            param="prompt",
            code="missing_required_parameter" if prompt is None else "invalid_value",
        )
    return prompt


def _number(
    body: Mapping[str, Any], name: str, default: float, lo: float, hi: float, note: str
) -> float:
    value = body.get(name)
    if value is None:
        return default
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not lo <= value <= hi:
        raise invalid_value(name, value, f"a number in [{lo}, {hi}]", f"({note}.)")
    return float(value)


def _top_p(body: Mapping[str, Any]) -> float:
    top_p = _number(body, "top_p", 1.0, 0.0, 1.0, "1 keeps every token")
    if top_p == 0.0:
        raise invalid_value(
            "top_p", 0, "a number in (0, 1]", "For greedy decoding set temperature=0."
        )
    return top_p


def _integer(
    body: Mapping[str, Any], name: str, default: int | None, lo: int, hi: int
) -> int | None:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise invalid_value(name, value, f"a whole number in [{lo}, {hi}]", "Pass an integer.")
    return value


def _flag(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise invalid_value(name, value, "true or false", "Pass a JSON boolean.")
    return value


def _max_tokens(kind: Kind, body: Mapping[str, Any]) -> int | None:
    value = _integer(body, "max_tokens", None, 1, 2**31 - 1)
    if kind == "chat":
        alias = _integer(body, "max_completion_tokens", None, 1, 2**31 - 1)
        if value is not None and alias is not None and value != alias:
            raise invalid_value(
                "max_completion_tokens",
                alias,
                f"the same number as max_tokens={value}",
                "Pass only one of max_tokens and max_completion_tokens.",
            )
        value = value if value is not None else alias
    return value


def _stop(body: Mapping[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    ok = isinstance(stops, list) and all(isinstance(s, str) and s for s in stops)
    if not ok or len(stops) > MAX_STOP:
        raise invalid_value(
            "stop",
            stop,
            f"a non-empty string or a list of at most {MAX_STOP} non-empty strings",
            "The text is cut before the first stop string.",
        )
    return tuple(stops)


def _include_usage(body: Mapping[str, Any], stream: bool) -> bool:
    options = body.get("stream_options")
    if options is None:
        return False
    if not stream:
        raise invalid_value(
            "stream_options", options, "null unless stream=true", "Set stream=true or drop it."
        )
    if not isinstance(options, Mapping) or set(options) - {"include_usage"}:
        raise invalid_value(
            "stream_options", options, '{"include_usage": true|false}', "Drop the other keys."
        )
    return _flag(options, "include_usage")


def _logprobs(kind: Kind, body: Mapping[str, Any]) -> int | None:
    if kind == "completion":
        return _integer(body, "logprobs", None, 0, MAX_TOP_LOGPROBS_COMPLETION)
    wanted = _flag(body, "logprobs")
    top = _integer(body, "top_logprobs", None, 0, MAX_TOP_LOGPROBS_CHAT)
    if top is not None and not wanted:
        raise invalid_value(
            "top_logprobs", top, "null unless logprobs=true", "Also pass logprobs=true."
        )
    return (top or 0) if wanted else None
