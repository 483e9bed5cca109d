"""Special token ids: which id pads a batch (one rule for generation, capture and extraction).

Example:
    >>> from trait_lab.testing import tiny_model
    >>> model = tiny_model()
    >>> model.config.pad_token_id = model.generation_config.pad_token_id = None
    >>> pad_token_id(model=model, eos=[2, 3]), pad_token_id(model=model)
    (2, 0)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["pad_token_id"]


def pad_token_id(
    *,
    tokenizer: Any = None,
    model: Any = None,
    explicit: int | None = None,
    eos: int | Sequence[int] = (),
) -> int:
    """The id that pads a batch: the first one set of, in order,

    ``explicit``, ``tokenizer.pad_token_id``, the model's ``generation_config.pad_token_id`` then
    ``config.pad_token_id``, the first of ``eos``, ``tokenizer.eos_token_id``, and else ``0``
    (padded positions are masked out, so any valid id will do). Ids read from the tokenizer or
    the model count only when they are ints.

    Args:
        tokenizer: a Hugging Face tokenizer, or ``None``.
        model: a Hugging Face model, or ``None``.
        explicit: an id the caller asked for; wins over everything else.
        eos: the end-of-sequence id(s) in use, e.g. the generation's stop ids.

    Example:
        >>> class Tok:
        ...     pad_token_id, eos_token_id = None, 7
        >>> pad_token_id(tokenizer=Tok()), pad_token_id(tokenizer=Tok(), explicit=3)
        (7, 3)
    """
    if explicit is not None:
        return int(explicit)
    sources = (
        (tokenizer, "pad_token_id"),
        (getattr(model, "generation_config", None), "pad_token_id"),
        (getattr(model, "config", None), "pad_token_id"),
    )
    for owner, attr in sources:
        value = getattr(owner, attr, None)
        if isinstance(value, int):
            return value
    if isinstance(eos, int):
        return int(eos)
    if len(eos):
        return int(eos[0])
    value = getattr(tokenizer, "eos_token_id", None)
    return value if isinstance(value, int) else 0
