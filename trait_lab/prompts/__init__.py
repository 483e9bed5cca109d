"""The position DSL, chat formatting and named prompt sets."""

from __future__ import annotations

from trait_lab.prompts.formatting import (
    ChatSpans,
    Message,
    PromptLike,
    chat_spans,
    encode_text,
    format_prompt,
    has_chat_template,
    to_messages,
    uses_chat_template,
)
from trait_lab.prompts.positions import (
    FRAMES,
    GRAMMAR,
    Position,
    Span,
    TurnSpan,
    resolve_batch,
)
from trait_lab.prompts.prompt_sets import (
    list_prompt_sets,
    load_prompt_set,
    prompt_sets_dir,
)

__all__ = [
    "FRAMES",
    "GRAMMAR",
    "ChatSpans",
    "Message",
    "Position",
    "PromptLike",
    "Span",
    "TurnSpan",
    "chat_spans",
    "encode_text",
    "format_prompt",
    "has_chat_template",
    "list_prompt_sets",
    "load_prompt_set",
    "prompt_sets_dir",
    "resolve_batch",
    "to_messages",
    "uses_chat_template",
]
