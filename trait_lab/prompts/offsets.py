"""Token offsets of a left-padded sample: chat turn spans, the range a frame covers, padding.

A sample with ``pad`` padding tokens, ``p`` prompt and ``r`` response tokens has its prompt at
``pad .. pad+p-1`` and its response at ``pad+p .. pad+p+r-1``; turn and system spans count from
the first real (non-pad) token. :meth:`trait_lab.prompts.positions.Position.resolve` applies a
position's index or slice to the :func:`frame_range` computed here.

Example:
    >>> frame_range("response", None, pad=2, prompt_len=3, response_len=2)
    range(5, 7)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["Span", "TurnSpan", "frame_range", "row_padding"]


@dataclass(frozen=True)
class TurnSpan:
    """One chat turn, as token offsets from the sample's first real (non-pad) token.

    The turn's prompt is ``start .. prompt_end - 1`` (the user message and the assistant
    header) and its response ``prompt_end .. end - 1`` (the assistant reply).
    """

    start: int
    prompt_end: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.prompt_end <= self.end:
            raise ValueError(f"a TurnSpan needs 0 <= start <= prompt_end <= end, got {self}")


Span = tuple[int, int]
"""A half-open ``(start, end)`` range of token offsets from the first real token."""


def frame_range(
    frame: str,
    turn: int | None,
    pad: int,
    prompt_len: int,
    response_len: int = 0,
    *,
    system: Span | None = None,
    turns: Sequence[TurnSpan] | None = None,
    label: str | None = None,
    sample: str = "?",
) -> range:
    """The absolute indices a frame (of one turn, or of the whole sample) covers.

    Args:
        frame: ``prompt``, ``response``, ``all`` or ``system``.
        turn: the chat turn (negative from the end), or ``None`` for the whole sample.
        pad: left-padding tokens before the first real token.
        prompt_len: real prompt tokens.
        response_len: response tokens after the prompt.
        system: the system message's span, needed by the ``system`` frame.
        turns: the turn spans; without them the whole sample is one turn.
        label: the position as written, for error messages (default ``frame[...]``).
        sample: the sample's name in error messages.

    Example:
        >>> frame_range("prompt", 0, pad=1, prompt_len=3, turns=[TurnSpan(0, 2, 3)])
        range(1, 3)
    """
    where = label if label is not None else f"{frame}[...]"
    for name, value in (("pad", pad), ("prompt_len", prompt_len), ("response", response_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    total = prompt_len + response_len
    if turn is None:
        if frame != "system":
            lo, hi = {"prompt": (0, prompt_len), "response": (prompt_len, total)}.get(
                frame, (0, total)
            )
            return range(pad + lo, pad + hi)
        if system is None:
            raise ValueError(
                f"position {where!r} needs a system message, but sample {sample} has none: "
                "pass system='...' (or a conversation whose first message has role 'system'), "
                "or use a 'prompt' position"
            )
        lo, hi = _check_span(system, total, "system span")
        return range(pad + lo, pad + hi)
    spans = list(turns) if turns is not None else [TurnSpan(0, prompt_len, total)]
    n = len(spans)
    if not -n <= turn < n:
        raise ValueError(
            f"position {where!r}: turn[{turn}] is out of range, sample {sample} has {n} "
            f"turn{'s' if n != 1 else ''} (turn[0]..turn[{n - 1}], or negative from the end)"
        )
    t = spans[turn]
    _check_span((t.start, t.end), total, f"turn[{turn}] span")
    lo, hi = {"prompt": (t.start, t.prompt_end), "response": (t.prompt_end, t.end)}.get(
        frame, (t.start, t.end)
    )
    return range(pad + lo, pad + hi)


def row_padding(mask_row: torch.Tensor, row: int = 0) -> int:
    """The number of padding tokens of one LEFT-padded 0/1 mask row (zeros, then ones).

    Raises a ValueError naming ``row`` when a zero follows a one (right padding, or a hole).

    Example:
        >>> row_padding(torch.tensor([0, 0, 1, 1]))
        2
    """
    real = torch.as_tensor(mask_row).ne(0).long()
    pad = real.numel() - int(real.sum())
    if bool(real[pad:].eq(0).any()) or bool(real[:pad].ne(0).any()):
        raise ValueError(
            f"row {row} of attention_mask is not left-padded ({real.tolist()}): padding must "
            "come first. Set tokenizer.padding_side = 'left' before tokenizing."
        )
    return pad


def _check_span(span: Span, total: int, what: str) -> Span:
    lo, hi = span
    if not 0 <= lo <= hi <= total:
        raise ValueError(f"{what} {span} does not fit in a sample of {total} real tokens")
    return lo, hi
