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

import torch

__all__ = ["left_pad", "pad_token_id", "padded_positions"]


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


def left_pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token-id rows as one left-padded ``[batch, width]`` id tensor and its attention mask.

    Example:
        >>> ids, mask = left_pad([[5, 6], [7]], pad_id=0)
        >>> ids.tolist(), mask.tolist()
        ([[5, 6], [0, 7]], [[1, 1], [0, 1]])
    """
    if not rows:
        raise ValueError("left_pad needs at least one row of token ids")
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            ids[i, width - len(row) :] = torch.tensor(list(row), dtype=torch.long)
            mask[i, width - len(row) :] = 1
    return ids, mask


def padded_positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a left-padded batch: 0 at each row's first real token (pads get 0).

    Pass them as ``position_ids`` so left padding does not shift a row's positions (models
    with absolute position embeddings, e.g. GPT-2, would otherwise see other positions).

    Example:
        >>> padded_positions(torch.tensor([[1, 1, 1], [0, 1, 1]])).tolist()
        [[0, 1, 2], [0, 0, 1]]
    """
    return (mask.long().cumsum(-1) - 1).clamp(min=0)
