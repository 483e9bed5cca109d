"""Prompt formatting: chat template or plain text, and token spans of a chat's system and turns.

``format_prompt`` renders a prompt (a string, or a conversation as a list of ``{"role",
"content"}`` messages) the way the model expects it: through the tokenizer's chat template with
the assistant header appended (``add_generation_prompt=True``) when it has one, as plain text
otherwise. ``chat_spans`` also tokenizes the result and finds where the system message and each
turn lie, for the ``system[...]`` and ``turn[N]:...`` positions of
:mod:`trait_lab.prompts.positions`.

Example:
    >>> from trait_lab.models.loading import load_model
    >>> _, tok = load_model()  # doctest: +SKIP
    >>> print(format_prompt(tok, "Hi", system="Be brief."))  # doctest: +SKIP
    <|im_start|>system
    Be brief.<|im_end|>
    <|im_start|>user
    Hi<|im_end|>
    <|im_start|>assistant
    <BLANKLINE>
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from transformers.utils.chat_template_utils import render_jinja_template

from trait_lab.prompts.offsets import Span, TurnSpan

Message = Mapping[str, str]
PromptLike = str | Sequence[Message]

#: the roles a conversation may use (what every chat template renders)
ROLES: tuple[str, ...] = ("system", "user", "assistant")


def has_chat_template(tokenizer: Any) -> bool:
    """Whether the tokenizer carries a chat template.

    Example:
        >>> has_chat_template(object())
        False
    """
    return bool(getattr(tokenizer, "chat_template", None))


def uses_chat_template(tokenizer: Any, use_chat_template: bool | None = None) -> bool:
    """Decide whether to use the chat template: ``None`` means "when the tokenizer has one".

    Raises:
        ValueError: ``use_chat_template=True`` but the tokenizer has no chat template.

    Example:
        >>> uses_chat_template(object(), None)
        False
    """
    has = has_chat_template(tokenizer)
    if use_chat_template is None:
        return has
    if use_chat_template and not has:
        raise ValueError(
            f"use_chat_template=True, but this tokenizer ({type(tokenizer).__name__}, "
            f"{getattr(tokenizer, 'name_or_path', '?')!r}) has no chat template. Pass "
            "use_chat_template=False (or None) to use the prompt as plain text, or set "
            "tokenizer.chat_template to a Jinja template first."
        )
    return bool(use_chat_template)


def to_messages(prompt: PromptLike, system: str | None = None) -> list[dict[str, str]]:
    """A conversation as a list of ``{"role", "content"}`` dicts, with ``system`` prepended.

    Roles must be one of :data:`ROLES` and contents strings; anything else is an error naming
    the message (a template would otherwise render an unknown role, or ``None``, as text).

    Example:
        >>> to_messages("Hi", system="Be brief.")
        [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}]
    """
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, Sequence) and prompt:
        messages = []
        for i, message in enumerate(prompt):
            if not isinstance(message, Mapping) or not {"role", "content"} <= set(message):
                raise ValueError(
                    f"message {i} of the conversation is {message!r}; each message must be a "
                    "dict with 'role' and 'content', e.g. {'role': 'user', 'content': 'Hi'}"
                )
            role, content = message["role"], message["content"]
            if role not in ROLES:
                raise ValueError(
                    f"message {i} of the conversation has role {role!r}; a role must be one of "
                    f"{', '.join(ROLES)} (tool and function messages are not supported): rename "
                    "it, or fold its text into a user message"
                )
            if not isinstance(content, str):
                raise TypeError(
                    f"message {i} of the conversation has content {content!r} "
                    f"({type(content).__name__}); the content must be a string of text"
                )
            messages.append({"role": role, "content": content})
    else:
        raise TypeError(
            f"a prompt is a string or a non-empty list of {{'role', 'content'}} messages, got "
            f"{prompt!r}"
        )
    if system is not None:
        if not isinstance(system, str):
            raise TypeError(f"system must be a string, got {type(system).__name__}")
        if messages[0]["role"] == "system":
            raise ValueError(
                "system= was given but the conversation already starts with a system message; "
                "pass only one of them"
            )
        messages.insert(0, {"role": "system", "content": system})
    if messages[-1]["role"] == "assistant":
        raise ValueError(
            "the conversation ends with an assistant message, so there is no reply to prompt "
            "for; drop it and pass its text as responses=[...] (capture_at_position), or end "
            "with a user message"
        )
    return messages


def format_prompt(
    tokenizer: Any,
    prompt: PromptLike,
    *,
    system: str | None = None,
    use_chat_template: bool | None = None,
) -> str:
    """Render a prompt for the model: chat template (with the assistant header) or plain text.

    Args:
        tokenizer: a Hugging Face tokenizer.
        prompt: the user message, or a conversation (list of ``{"role", "content"}`` dicts).
        system: a system message placed before the conversation (chat template only).
        use_chat_template: ``None`` uses the template when the tokenizer has one; ``False``
            returns the prompt string unchanged; ``True`` requires a template.

    Returns:
        The text to tokenize; the model's reply would follow it directly.

    Raises:
        ValueError: ``use_chat_template=True`` without a template, or ``system`` / a
            conversation without a chat template (there is no format to render them in).

    Example:
        >>> format_prompt(object(), "The capital of France is")
        'The capital of France is'
    """
    if uses_chat_template(tokenizer, use_chat_template):
        messages = to_messages(prompt, system)
        return _render(tokenizer, messages, add_generation_prompt=True)
    if system is not None:
        raise ValueError(
            "system= needs a chat template to place the system message, but the chat template "
            "is not used (the tokenizer has none, or use_chat_template=False). Put the text "
            "into the prompt yourself, or use a tokenizer with a chat template."
        )
    if not isinstance(prompt, str):
        raise ValueError(
            "a conversation (list of messages) needs a chat template to be rendered, but the "
            "chat template is not used (the tokenizer has none, or use_chat_template=False). "
            "Pass a plain string, or use a tokenizer with a chat template."
        )
    return prompt


def encode_text(tokenizer: Any, text: str, *, chat: bool = False) -> list[int]:
    """Token ids of already formatted text, without doubling special tokens.

    Chat-rendered text already holds the template's special tokens (BOS included where the
    model wants one), so nothing is added; plain text gets the tokenizer's special tokens
    (e.g. BOS) unless it already starts with the BOS token.

    Example:
        >>> from trait_lab.models.loading import load_model
        >>> _, tok = load_model()  # doctest: +SKIP
        >>> encode_text(tok, "Hello")  # doctest: +SKIP
        [19556]
    """
    bos = getattr(tokenizer, "bos_token", None)
    add = not chat and not (isinstance(bos, str) and bos and text.startswith(bos))
    return list(tokenizer(text, add_special_tokens=add)["input_ids"])


@dataclass(frozen=True)
class ChatSpans:
    """A formatted prompt, its token ids, and where its system message and turns lie.

    Offsets are token indices into ``input_ids`` (half-open). ``turns[k]`` is the ``k``-th
    user message: its prompt runs from the end of what came before it through the assistant
    header that follows it, its response is the assistant reply (empty for the last turn,
    whose reply is what the model generates or what ``responses=`` supplies).
    """

    text: str
    input_ids: tuple[int, ...]
    system: Span | None
    turns: tuple[TurnSpan, ...]
    chat: bool


def chat_spans(
    tokenizer: Any,
    prompt: PromptLike,
    *,
    system: str | None = None,
    use_chat_template: bool | None = None,
) -> ChatSpans:
    """Format and tokenize a prompt, and find the token spans of its system message and turns.

    Method: the whole conversation is rendered once (``add_generation_prompt=True``) and
    tokenized. Then, for every message boundary, the template renders the first ``j``
    messages alone (plus the assistant header, after a user message); that text must be a
    prefix of the full text, and its tokenization must be a prefix of the full token ids, so the
    boundary falls between two tokens exactly at ``len(prefix_ids)``. What the template renders
    for no messages at all (typically BOS) belongs to no span; a default system prompt that the
    template injects when none is given belongs to turn 0. Templates that rewrite earlier
    turns (e.g. strip reasoning) or whose boundary falls inside a token fail with a ValueError
    rather than give shifted spans. Without a chat template the prompt is one turn with no
    system span.

    Example:
        >>> from trait_lab.models.loading import load_model
        >>> _, tok = load_model()  # doctest: +SKIP
        >>> spans = chat_spans(tok, "Hi", system="Be brief.")  # doctest: +SKIP
        >>> spans.system, spans.turns  # doctest: +SKIP
        ((0, 8), (TurnSpan(start=8, prompt_end=18, end=18),))
    """
    text = format_prompt(tokenizer, prompt, system=system, use_chat_template=use_chat_template)
    if not uses_chat_template(tokenizer, use_chat_template):
        plain = tuple(encode_text(tokenizer, text, chat=False))
        return ChatSpans(text, plain, None, (TurnSpan(0, len(plain), len(plain)),), False)
    messages = to_messages(prompt, system)
    ids = tuple(encode_text(tokenizer, text, chat=True))
    cache: dict[tuple[int, bool], int] = {}

    def boundary(j: int, header: bool = False) -> int:
        """Token index where the rendering of ``messages[:j]`` (+ header) ends."""
        key = (j, header)
        if key not in cache:
            if j == 0:
                pre = _preamble(tokenizer)
                part = pre if text.startswith(pre) else ""
            else:
                part = _render(tokenizer, messages[:j], add_generation_prompt=header)
            cache[key] = _token_boundary(tokenizer, part, text, ids, j, header)
        return cache[key]

    try:  # what the template puts before any message (typically BOS)
        boundary(0)
    except ValueError:
        cache[(0, False)] = 0
    sys_span = None
    if messages[0]["role"] == "system":
        sys_span = (boundary(0), boundary(1))
    users = [j for j, m in enumerate(messages) if m["role"] == "user"]
    if not users:
        raise ValueError(
            "the conversation has no user message, so it has no turns; add one with "
            "{'role': 'user', 'content': ...}"
        )
    turns = []
    for k, j in enumerate(users):
        end = boundary(users[k + 1]) if k + 1 < len(users) else len(ids)
        start = boundary(j)
        if j + 1 == len(messages):
            prompt_end = len(ids)
        elif messages[j + 1]["role"] == "assistant":
            prompt_end = boundary(j + 1, header=True)
        else:
            prompt_end = end  # no assistant reply follows: the whole turn is prompt
        turns.append(TurnSpan(start, prompt_end, end))
    return ChatSpans(text, ids, sys_span, tuple(turns), True)


def _render(tokenizer: Any, messages: list[dict[str, str]], *, add_generation_prompt: bool) -> str:
    try:
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt
        )
    except Exception as exc:  # jinja raises TemplateError and plain Exceptions alike
        roles = [m["role"] for m in messages]
        raise ValueError(
            f"the tokenizer's chat template failed on messages with roles {roles}: {exc}. "
            "Some templates reject a system role or require alternating user/assistant "
            "roles; adjust the conversation, or pass use_chat_template=False / "
            "pre_formatted=True with text you formatted yourself."
        ) from exc
    if not isinstance(text, str):
        raise TypeError(f"apply_chat_template(tokenize=False) returned {type(text).__name__}")
    return text


def _preamble(tokenizer: Any) -> str:
    """What the chat template renders for no messages at all ("" when it cannot say)."""
    try:
        result: Any = render_jinja_template(  # returns (rendered texts, generation indices)
            conversations=[[]],
            chat_template=tokenizer.get_chat_template(),
            add_generation_prompt=False,
            **tokenizer.special_tokens_map,
        )
        rendered = result[0][0]
        return rendered if isinstance(rendered, str) else ""
    except Exception:  # an internal helper: any failure only means "no preamble known"
        return ""


def _token_boundary(
    tokenizer: Any, part: str, text: str, ids: tuple[int, ...], j: int, header: bool
) -> int:
    what = f"the first {j} message{'s' if j != 1 else ''}" + (" plus the header" if header else "")
    if not text.startswith(part):
        raise ValueError(
            f"cannot find turn spans: this chat template renders {what} as text that is not a "
            "prefix of the whole conversation (it rewrites earlier turns), so 'system' and "
            "'turn[N]' positions are not available for it; use prompt/response/all positions"
        )
    if not part:
        return 0
    part_ids = encode_text(tokenizer, part, chat=True)
    if tuple(part_ids) != ids[: len(part_ids)]:
        raise ValueError(
            f"cannot find turn spans: the boundary after {what} falls inside a token (the "
            "tokens of that prefix differ from the start of the full tokenization), so "
            "'system' and 'turn[N]' positions are not available for this tokenizer"
        )
    return len(part_ids)
