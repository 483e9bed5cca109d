"""The position DSL's grammar: text such as ``turn[1]:prompt[-3:]`` parsed into its fields.

:func:`parse_position_text` checks the syntax and returns a :class:`ParsedPosition`;
:class:`trait_lab.prompts.positions.Position` builds on it (``Position.parse``) and checks the
values. Errors point at the offending character and repeat :data:`GRAMMAR`.

Example:
    >>> parse_position_text("turn[1]:response[0:4]")
    ParsedPosition(frame='response', index=None, start=0, stop=4, step=None, turn=1)
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

__all__ = ["FRAMES", "GRAMMAR", "ParsedPosition", "parse_position_text", "unknown_frame_error"]

FRAMES: tuple[str, ...] = ("prompt", "response", "all", "system")

GRAMMAR = (
    "grammar: [turn[N]:]frame[slice] with frame one of prompt, response, all, system and slice "
    "an index or start:stop[:step] as in Python; examples: 'prompt[-1]', 'prompt[-3:]', "
    "'response[:]', 'all[:]', 'response[2:10:2]', 'turn[1]:prompt[-1]'"
)

_INT = re.compile(r"-?[0-9]+")  # ASCII digits only, so str(Position) gives back the text
_MAX_DIGITS = 18  # far beyond any sequence length, and well inside int()'s digit limit
_WORD = re.compile(r"[A-Za-z_]\w*")


@dataclass(frozen=True)
class ParsedPosition:
    """The fields of a position string, as written (``index`` or ``start/stop/step`` is set).

    Example:
        >>> parse_position_text("prompt[-1]").index
        -1
    """

    frame: str
    index: int | None = None
    start: int | None = None
    stop: int | None = None
    step: int | None = None
    turn: int | None = None


def parse_position_text(text: str) -> ParsedPosition:
    """Parse a position string into its fields, or raise a ValueError that points at the error.

    Example:
        >>> parse_position_text(" all[ ::2 ] ")
        ParsedPosition(frame='all', index=None, start=None, stop=None, step=2, turn=None)
    """
    return _Parser(text).position()


def unknown_frame_error(frame: str, text: str) -> ValueError:
    """The error for a frame name outside :data:`FRAMES`, with the closest match as a hint.

    Example:
        >>> str(unknown_frame_error("promt", "promt[-1]")).split(";")[0]
        "unknown frame 'promt' in position 'promt[-1]'"
    """
    close = difflib.get_close_matches(frame, FRAMES, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(
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

    def position(self) -> ParsedPosition:
        if not self.text.strip():
            raise ValueError(f"empty position; {GRAMMAR}")
        word = self.match(_WORD)
        if word is None:
            raise self.fail("a frame name (prompt, response, all, system) or 'turn[N]:'")
        turn = None
        if word == "turn":
            turn = self.turn()
            word = self.match(_WORD)
            if word is None:
                raise self.fail("a frame name (prompt, response, all) after 'turn[N]:'")
        if word not in FRAMES:
            raise unknown_frame_error(word, self.text)
        if not self.peek("["):
            if self.i >= len(self.text.rstrip()):
                raise ValueError(
                    f"position {self.text!r} has no slice: write e.g. '{word}[:]' for every "
                    f"token or '{word}[-1]' for the last one ({GRAMMAR})"
                )
            raise self.fail("'[' after the frame name")
        parts = self.brackets()
        self.skip()
        if self.i < len(self.text):
            raise self.fail("the end of the position after ']'")
        if len(parts) == 1:
            return ParsedPosition(word, index=parts[0], turn=turn)
        step = parts[2] if len(parts) == 3 else None
        return ParsedPosition(word, start=parts[0], stop=parts[1], step=step, turn=turn)

    def turn(self) -> int:
        """``[N]:`` after the word ``turn``."""
        self.expect("[")
        number = self.integer()
        if number is None:
            raise self.fail("a turn number such as 0, 1 or -1")
        self.expect("]")
        self.expect(":")
        return number

    def integer(self) -> int | None:
        """The integer at the cursor (``None`` when there is none); overlong ones are refused."""
        self.skip()
        start = self.i
        number = self.match(_INT)
        if number is None:
            return None
        if len(number.lstrip("-")) > _MAX_DIGITS:
            self.i = start
            raise self.fail(f"an integer of at most {_MAX_DIGITS} digits")
        return int(number)

    def brackets(self) -> list[int | None]:
        """``[i]`` as one part, ``[a:b]`` as two, ``[a:b:c]`` as three (``None`` where empty)."""
        self.expect("[")
        parts: list[int | None] = []
        colons = 0
        while True:
            parts.append(self.integer())
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
        return parts
