"""The position DSL: which token positions of a (prompt, response) sample to read.

Grammar::

    [turn[N]:]frame[slice]      frame: prompt | response | all | system
                                slice: i | start:stop | start:stop:step   (Python semantics)

``prompt[-1]`` is the last prompt token, ``prompt[-3:]`` the last three, ``response[:]`` every
response token, ``all[:]`` prompt and response, ``response[2:10:2]`` every other token from the
third, ``system[:]`` the system message's tokens and ``turn[1]:prompt[-1]`` the last token of the
second user turn's prompt. A position is parsed once into a frozen :class:`Position`; ``str()``
gives the canonical form, and :meth:`Position.resolve` turns it into absolute indices for one
left-padded sample: with ``pad`` padding tokens, ``p`` prompt and ``r`` response tokens, the
prompt frame covers ``pad .. pad+p-1`` and the response frame ``pad+p .. pad+p+r-1``. The
grammar's parser is :mod:`trait_lab.prompts.position_syntax`; the token offsets a frame covers
come from :mod:`trait_lab.prompts.offsets`.

Example:
    >>> pos = Position.parse("prompt[-3:]")
    >>> pos.resolve(pad=2, prompt_len=5).tolist()
    [4, 5, 6]
    >>> str(Position.parse(" turn[ 1 ]:response[ 0:4:1 ] "))
    'turn[1]:response[0:4]'
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from trait_lab.prompts.offsets import Span, TurnSpan, frame_range, row_padding
from trait_lab.prompts.position_syntax import (
    FRAMES,
    ParsedPosition,
    parse_position_text,
    unknown_frame_error,
)

__all__ = ["Position", "resolve_batch"]


@dataclass(frozen=True)
class Position(ParsedPosition):
    """A parsed position: a frame, an index or a slice, and optionally a chat turn.

    Build one with :meth:`parse`. Exactly one of ``index`` (a single token) or the slice
    fields ``start``/``stop``/``step`` is used; ``is_index`` tells which.

    Example:
        >>> Position.parse("response[2:10:2]")
        Position(frame='response', index=None, start=2, stop=10, step=2, turn=None)
    """

    def __post_init__(self) -> None:
        if self.frame not in FRAMES:
            raise unknown_frame_error(str(self.frame), str(self.frame))
        for name in ("index", "start", "stop", "step", "turn"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(f"Position.{name} must be an int or None, got {value!r}")
        if self.index is not None and (self.start, self.stop, self.step) != (None, None, None):
            raise ValueError("a Position has either an index or start/stop/step, not both")
        if self.step == 0:
            raise ValueError(
                f"slice step cannot be zero in position {str(self)!r}; use a positive step "
                "such as 'response[::2]' or a negative one such as 'prompt[::-1]'"
            )
        if self.step == 1:
            object.__setattr__(self, "step", None)  # canonical: [a:b:1] is [a:b]
        if self.turn is not None and self.frame == "system":
            raise ValueError(
                f"'system' is not part of a turn: use 'system[...]' without 'turn[{self.turn}]:'"
                ", or a turn's prompt/response/all frame"
            )

    # ------------------------------------------------------------------ parsing and printing

    @classmethod
    def parse(cls, text: str | Position) -> Position:
        """Parse a DSL string (a :class:`Position` is returned unchanged).

        Example:
            >>> Position.parse("turn[-1]:prompt[-1]").turn
            -1
        """
        if isinstance(text, Position):
            return text
        if not isinstance(text, str):
            raise TypeError(f"a position is a string such as 'prompt[-1]', got {text!r}")
        p = parse_position_text(text)
        return cls(p.frame, p.index, p.start, p.stop, p.step, p.turn)

    @property
    def is_index(self) -> bool:
        """Whether the position selects a single token (``prompt[-1]``) rather than a slice."""
        return self.index is not None

    @property
    def selector(self) -> int | slice:
        """The index, or the ``slice``, applied to the frame's token list."""
        return self.index if self.index is not None else slice(self.start, self.stop, self.step)

    def __str__(self) -> str:
        if self.index is not None:
            inner = str(self.index)
        else:
            inner = f"{_opt(self.start)}:{_opt(self.stop)}"
            if self.step is not None:
                inner += f":{self.step}"
        head = f"turn[{self.turn}]:" if self.turn is not None else ""
        return f"{head}{self.frame}[{inner}]"

    # ------------------------------------------------------------------ resolution

    def resolve(
        self,
        pad: int,
        prompt_len: int,
        response_len: int = 0,
        *,
        system: Span | None = None,
        turns: Sequence[TurnSpan] | None = None,
        sample: int | None = None,
    ) -> torch.Tensor:
        """Absolute indices (a 1-D LongTensor) of the selected tokens in one padded sample.

        Args:
            pad: number of left-padding tokens before the sample's first real token.
            prompt_len: number of real prompt tokens.
            response_len: number of response tokens after the prompt (0 when none).
            system: ``(start, end)`` token offsets of the system message, from the first real
                token (see :func:`trait_lab.prompts.formatting.chat_spans`); needed by
                ``system[...]``.
            turns: the chat turns (:class:`TurnSpan`); without them the whole sample is one
                turn, so ``turn[0]:`` and ``turn[-1]:`` work and other turns are out of range.
            sample: the sample's index, named in error messages.

        Raises:
            ValueError: the position selects no token, a turn is out of range, or
                ``system[...]`` is used without a system span.

        Example:
            >>> Position.parse("prompt[-1]").resolve(pad=3, prompt_len=4).tolist()
            [6]
            >>> Position.parse("all[::2]").resolve(pad=0, prompt_len=3, response_len=2).tolist()
            [0, 2, 4]
        """
        frame = frame_range(
            self.frame,
            self.turn,
            pad,
            prompt_len,
            response_len,
            system=system,
            turns=turns,
            label=str(self),
            sample=_name(sample),
        )
        if self.index is not None:
            ok = -len(frame) <= self.index < len(frame)
            chosen = [frame[self.index]] if ok else []
        else:
            chosen = list(frame[slice(self.start, self.stop, self.step)])
        if not chosen:
            part = self.frame if self.turn is None else f"turn[{self.turn}] {self.frame}"
            size = len(frame)
            why = f"index {self.index} is out of range; " if self.index is not None else ""
            hint = " (no response: pass responses=...)" if part == "response" and not size else ""
            raise ValueError(
                f"position {str(self)!r} selects no token in sample {_name(sample)} (its {part} "
                f"has {size} token{'s' if size != 1 else ''}){hint}; {why}choose a position that "
                f"selects at least one token in every sample, e.g. '{self.frame}[:]' or "
                f"'{self.frame}[-1]'"
            )
        return torch.tensor(chosen, dtype=torch.long)


def resolve_batch(
    position: str | Position,
    attention_mask: torch.Tensor,
    prompt_lens: Sequence[int],
    *,
    systems: Sequence[Span | None] | None = None,
    turns: Sequence[Sequence[TurnSpan] | None] | None = None,
    first_sample: int = 0,
) -> list[torch.Tensor]:
    """Resolve a position for every row of a LEFT-padded batch.

    Each row's padding is read from ``attention_mask`` (zeros, then ones); whatever follows the
    row's ``prompt_lens[i]`` real prompt tokens is its response.

    Args:
        position: a DSL string or :class:`Position`.
        attention_mask: ``[batch, seq]`` of 0/1, left-padded.
        prompt_lens: real prompt tokens per row.
        systems: per-row system spans (or ``None`` entries), for ``system[...]``.
        turns: per-row turn spans (or ``None`` entries), for ``turn[N]:...``.
        first_sample: index of row 0 in the whole data set, used in error messages.

    Returns:
        One 1-D LongTensor of absolute indices per row.

    Example:
        >>> mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
        >>> [t.tolist() for t in resolve_batch("response[:]", mask, [2, 4])]
        [[4], [4]]
    """
    pos = Position.parse(position)
    mask = torch.as_tensor(attention_mask)
    if mask.dim() != 2:
        raise ValueError(f"attention_mask must be [batch, seq], got shape {tuple(mask.shape)}")
    batch, seq = mask.shape
    for name, per_row in (("prompt_lens", prompt_lens), ("systems", systems), ("turns", turns)):
        if per_row is not None and len(per_row) != batch:
            raise ValueError(f"{name} has {len(per_row)} entries for a batch of {batch} rows")
    out = []
    for i in range(batch):
        pad = row_padding(mask[i], i)
        length = seq - pad
        p = int(prompt_lens[i])
        if not 0 <= p <= length:
            raise ValueError(f"prompt_lens[{i}] = {p}, but row {i} has only {length} real tokens")
        out.append(
            pos.resolve(
                pad,
                p,
                length - p,
                system=systems[i] if systems is not None else None,
                turns=turns[i] if turns is not None else None,
                sample=first_sample + i,
            )
        )
    return out


# ---------------------------------------------------------------------- helpers


def _opt(value: int | None) -> str:
    return "" if value is None else str(value)


def _name(sample: int | None) -> str:
    return "?" if sample is None else str(sample)
