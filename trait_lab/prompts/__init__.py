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
from trait_lab.prompts.offsets import (
    Span,
    TurnSpan,
    frame_range,
    row_padding,
)
from trait_lab.prompts.position_syntax import (
    FRAMES,
    GRAMMAR,
    ParsedPosition,
    parse_position_text,
    unknown_frame_error,
)
from trait_lab.prompts.positions import (
    Position,
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
    "ParsedPosition",
    "Position",
    "PromptLike",
    "Span",
    "TurnSpan",
    "chat_spans",
    "encode_text",
    "format_prompt",
    "frame_range",
    "has_chat_template",
    "list_prompt_sets",
    "load_prompt_set",
    "parse_position_text",
    "prompt_sets_dir",
    "resolve_batch",
    "row_padding",
    "to_messages",
    "unknown_frame_error",
    "uses_chat_template",
]
