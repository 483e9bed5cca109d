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
prompt frame covers ``pad .. pad+p-1`` and the response frame ``pad+p .. pad+p+r-1``.

Example:
    >>> pos = Position.parse("prompt[-3:]")
    >>> pos.resolve(pad=2, prompt_len=5).tolist()
    [4, 5, 6]
    >>> str(Position.parse(" turn[ 1 ]:response[ 0:4:1 ] "))
    'turn[1]:response[0:4]'
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

FRAMES: tuple[str, ...] = ("prompt", "response", "all", "system")

GRAMMAR = (
    "grammar: [turn[N]:]frame[slice] with frame one of prompt, response, all, system and slice "
    "an index or start:stop[:step] as in Python; examples: 'prompt[-1]', 'prompt[-3:]', "
    "'response[:]', 'all[:]', 'response[2:10:2]', 'turn[1]:prompt[-1]'"
)

_INT = re.compile(r"-?\d+")
_WORD = re.compile(r"[A-Za-z_]\w*")


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


@dataclass(frozen=True)
class Position:
    """A parsed position: a frame, an index or a slice, and optionally a chat turn.

    Build one with :meth:`parse`. Exactly one of ``index`` (a single token) or the slice
    fields ``start``/``stop``/``step`` is used; ``is_index`` tells which.

    Example:
        >>> Position.parse("response[2:10:2]")
        Position(frame='response', index=None, start=2, stop=10, step=2, turn=None)
    """

    frame: str
    index: int | None = None
    start: int | None = None
    stop: int | None = None
    step: int | None = None
    turn: int | None = None

    def __post_init__(self) -> None:
        if self.frame not in FRAMES:
            raise ValueError(_unknown_frame(str(self.frame), str(self.frame)))
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
        return _Parser(text).position()

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
        frame = self._frame(pad, prompt_len, response_len, system, turns, sample)
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

    def _frame(
        self,
        pad: int,
        prompt_len: int,
        response_len: int,
        system: Span | None,
        turns: Sequence[TurnSpan] | None,
        sample: int | None,
    ) -> range:
        """The absolute indices the frame covers, before the index or slice is applied."""
        for name, value in (("pad", pad), ("prompt_len", prompt_len), ("response", response_len)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        total = prompt_len + response_len
        if self.turn is None:
            if self.frame != "system":
                lo, hi = {"prompt": (0, prompt_len), "response": (prompt_len, total)}.get(
                    self.frame, (0, total)
                )
                return range(pad + lo, pad + hi)
            if system is None:
                raise ValueError(
                    f"position {str(self)!r} needs a system message, but sample "
                    f"{_name(sample)} has none: pass system='...' (or a conversation whose "
                    "first message has role 'system'), or use a 'prompt' position"
                )
            lo, hi = _check_span(system, total, "system span")
            return range(pad + lo, pad + hi)
        spans = list(turns) if turns is not None else [TurnSpan(0, prompt_len, total)]
        n = len(spans)
        if not -n <= self.turn < n:
            raise ValueError(
                f"position {str(self)!r}: turn[{self.turn}] is out of range, sample "
                f"{_name(sample)} has {n} turn{'s' if n != 1 else ''} (turn[0]..turn[{n - 1}], "
                "or negative from the end)"
            )
        t = spans[self.turn]
        _check_span((t.start, t.end), total, f"turn[{self.turn}] span")
        lo, hi = {"prompt": (t.start, t.prompt_end), "response": (t.prompt_end, t.end)}.get(
            self.frame, (t.start, t.end)
        )
        return range(pad + lo, pad + hi)


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
    real = mask.ne(0).long()
    lengths = real.sum(dim=1).tolist()
    out = []
    for i in range(batch):
        pad = seq - lengths[i]
        if bool(real[i, pad:].eq(0).any()) or bool(real[i, :pad].ne(0).any()):
            raise ValueError(
                f"row {i} of attention_mask is not left-padded ({real[i].tolist()}): padding must "
                "come first. Set tokenizer.padding_side = 'left' before tokenizing."
            )
        p = int(prompt_lens[i])
        if not 0 <= p <= lengths[i]:
            raise ValueError(
                f"prompt_lens[{i}] = {p}, but row {i} has only {lengths[i]} real tokens"
            )
        out.append(
            pos.resolve(
                pad,
                p,
                lengths[i] - p,
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


def _check_span(span: Span, total: int, what: str) -> Span:
    lo, hi = span
    if not 0 <= lo <= hi <= total:
        raise ValueError(f"{what} {span} does not fit in a sample of {total} real tokens")
    return lo, hi


def _unknown_frame(frame: str, text: str) -> str:
    close = difflib.get_close_matches(frame, FRAMES, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return (
        f"unknown frame {frame!r} in position {text!r}; frames: {', '.join(FRAMES)}.{hint} "
        f"({GRAMMAR})"
    )


class _Parser:
    """A tiny recursive-descent parser that reports the offending character."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0

    def fail(self, expected: str) -> ValueError:
        self.skip()
        if self.i >= len(self.text):
            found = "the end of the string"
        else:
            found = f"{self.text[self.i]!r} at character {self.i}"
        pointer = f"\n    {self.text}\n    {' ' * self.i}^"
        return ValueError(
            f"malformed position {self.text!r}: expected {expected}, found {found}.{pointer}\n"
            f"{GRAMMAR}"
        )

    def skip(self) -> None:
        while self.i < len(self.text) and self.text[self.i].isspace():
            self.i += 1

    def peek(self, char: str) -> bool:
        self.skip()
        return self.text.startswith(char, self.i)

    def expect(self, char: str) -> None:
        if not self.peek(char):
            raise self.fail(repr(char))
        self.i += len(char)

    def match(self, pattern: re.Pattern[str]) -> str | None:
        self.skip()
        m = pattern.match(self.text, self.i)
        if m is None:
            return None
        self.i = m.end()
        return m.group()

    def position(self) -> Position:
        if not self.text.strip():
            raise ValueError(f"empty position; {GRAMMAR}")
        word = self.match(_WORD)
        if word is None:
            raise self.fail("a frame name (prompt, response, all, system) or 'turn[N]:'")
        turn = None
        if word == "turn":
            self.expect("[")
            number = self.match(_INT)
            if number is None:
                raise self.fail("a turn number such as 0, 1 or -1")
            turn = int(number)
            self.expect("]")
            self.expect(":")
            word = self.match(_WORD)
            if word is None:
                raise self.fail("a frame name (prompt, response, all) after 'turn[N]:'")
        if word not in FRAMES:
            raise ValueError(_unknown_frame(word, self.text))
        if not self.peek("["):
            if self.i >= len(self.text.rstrip()):
                raise ValueError(
                    f"position {self.text!r} has no slice: write e.g. '{word}[:]' for every "
                    f"token or '{word}[-1]' for the last one ({GRAMMAR})"
                )
            raise self.fail("'[' after the frame name")
        self.expect("[")
        parts: list[int | None] = []
        colons = 0
        while True:
            number = self.match(_INT)
            parts.append(None if number is None else int(number))
            if not (colons < 2 and self.peek(":")):
                break
            self.expect(":")
            colons += 1
        if not self.peek("]"):
            if colons == 2:
                raise self.fail("']'")
            raise self.fail("':' or ']'" if parts[-1] is not None else "an integer, ':' or ']'")
        if colons == 0 and parts[0] is None:
            raise self.fail("an index or a slice inside '[...]', e.g. [-1] or [:]")
        self.expect("]")
        self.skip()
        if self.i < len(self.text):
            raise self.fail("the end of the position after ']'")
        if colons == 0:
            return Position(word, index=parts[0], turn=turn)
        step = parts[2] if colons == 2 else None
        return Position(word, start=parts[0], stop=parts[1], step=step, turn=turn)
