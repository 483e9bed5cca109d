"""Generated tokens to text, piece by piece, cut before the first stop string.

:class:`StopText` decodes the whole reply after every token (so multi-token characters and
tokenizers that merge spaces come out right), and releases only text that can no longer
turn into a stop string: a reply ending in ``"Hel"`` while ``"Hello"`` is a stop string is held
back until the next token decides. Each token gets the offset where its text starts in the
reply; a token is released with the first piece that reaches past its start, so a stream's
pieces carry the same text and tokens as the finished reply.

Example:
    >>> from trait_lab.testing import tiny_tokenizer
    >>> tok = tiny_tokenizer()
    >>> text = StopText(tok, stop=["c!"])
    >>> [text.add(i) for i in tok("abc!")["input_ids"]]
    [('a', [0]), ('b', [1]), ('', []), ('', [])]
    >>> text.stopped, text.text, text.starts
    (True, 'ab', [0, 1, 2, 3])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["StopText"]

_INCOMPLETE = "\ufffd"  # what a decoder shows for the first bytes of a multi-token character


class StopText:
    """The reply's text so far, and what of it may be sent.

    Args:
        tokenizer: decodes the reply (special tokens skipped).
        stop: stop strings; the reply ends before the first one found.
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str] = ()) -> None:
        self.tokenizer = tokenizer
        self.stop = tuple(stop)
        self.ids: list[int] = []
        self.starts: list[int] = []  # where each token's text starts in the reply
        self.text = ""  # the reply's decoded text (cut at the stop string once stopped)
        self.stopped = False
        self._sent = 0  # characters released
        self._tokens_sent = 0

    def add(self, token_id: int) -> tuple[str, list[int]]:
        """Take one generated token; returns the newly releasable text and token indices."""
        if self.stopped:
            raise RuntimeError("the reply already reached a stop string; start a new StopText")
        self.starts.append(len(self.text))
        self.ids.append(int(token_id))
        decoded = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if decoded.endswith(_INCOMPLETE):
            return "", []  # wait for the character's remaining bytes
        self.text = decoded
        cut = self._first_stop()
        if cut is not None:
            self.stopped = True
            self.text = decoded[:cut]
            return self._release(cut)
        return self._release(len(decoded) - self._held_back(decoded))

    def finish(self) -> tuple[str, list[int]]:
        """Release everything still held back (the reply is over)."""
        if not self.stopped and self.ids:
            self.text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        end = len(self.text)
        text, tokens = self._release(end)
        if not self.stopped:  # tokens adding no text at the very end still belong to the reply
            tokens += list(range(self._tokens_sent, len(self.ids)))
            self._tokens_sent = len(self.ids)
        return text, tokens

    def _first_stop(self) -> int | None:
        cuts = []
        for stop in self.stop:
            found = self.text.find(stop, max(0, self._sent - len(stop)))
            if found >= 0:
                cuts.append(found)
        return min(cuts) if cuts else None

    def _held_back(self, text: str) -> int:
        """Length of the longest end of ``text`` that begins a stop string."""
        longest = 0
        for stop in self.stop:
            for n in range(min(len(stop) - 1, len(text)), longest, -1):
                if text.endswith(stop[:n]):
                    longest = n
                    break
        return longest

    def _release(self, upto: int) -> tuple[str, list[int]]:
        upto = max(upto, self._sent)
        text = self.text[self._sent : upto]
        self._sent = upto
        first = self._tokens_sent
        while self._tokens_sent < len(self.ids) and self.starts[self._tokens_sent] < upto:
            self._tokens_sent += 1
        return text, list(range(first, self._tokens_sent))
