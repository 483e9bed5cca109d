"""``TokenStream``: columns of streamed text, each token coloured by a score (anywidget).

The browser side is ``widgets/static/token_stream.js``; Python only sets the model state, so a
generation thread can update it token by token.

Example:
    >>> view = TokenStream()
    >>> view.set_columns([("baseline", "baseline", [("Hi", 0.1), ("!", None)], "done")])
    >>> view.text("baseline")
    'Hi!'
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anywidget
import traitlets

from widgets.common.colours import NEGATIVE_RGB, POSITIVE_RGB, pole_legend

_STATIC = Path(__file__).parents[1] / "static"
Column = tuple[str, str, Sequence[tuple[str, float | None]], str]


class TokenStream(anywidget.AnyWidget):
    """Side-by-side token columns. ``columns`` holds ``{key, title, tokens, status}`` dicts
    where ``tokens`` is a list of ``[text, score or None]``; ``scale`` is the score shown at
    full colour, ``label`` names the score in the legend and tooltips, and ``scale_note`` says
    how the scale was set. The legend states the colour convention (``pole_legend``); the
    colours are ``widgets.common.colours``' ``POSITIVE_RGB`` / ``NEGATIVE_RGB``."""

    _esm = _STATIC / "token_stream.js"
    _css = _STATIC / "token_stream.css"
    columns = traitlets.List(traitlets.Dict()).tag(sync=True)
    scale = traitlets.Float(1.0).tag(sync=True)
    label = traitlets.Unicode("score").tag(sync=True)
    scale_note = traitlets.Unicode("").tag(sync=True)
    positive_rgb = traitlets.List(list(POSITIVE_RGB)).tag(sync=True)
    negative_rgb = traitlets.List(list(NEGATIVE_RGB)).tag(sync=True)

    legend = traitlets.Unicode("").tag(sync=True)

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.observe(lambda _: self._set_legend(), ["label", "scale", "scale_note"])
        self._set_legend()

    def _set_legend(self) -> None:
        """The legend's words (shown after the colour chips): the convention and the scale.

        Example:
            >>> TokenStream(label="c", scale=0.3).legend
            'token colour: c (red = positive pole, blue = negative) · full colour at ±0.30'
        """
        text = f"token colour: {pole_legend(self.label)} · full colour at ±{self.scale:.2f}"
        self.legend = f"{text} ({self.scale_note})" if self.scale_note else text

    def set_columns(self, columns: Sequence[Column]) -> None:
        """Replace every column at once: ``(key, title, [(text, score)], status)`` tuples."""
        self.columns = [
            {
                "key": key,
                "title": title,
                "tokens": [[text, None if score is None else float(score)] for text, score in toks],
                "status": status,
            }
            for key, title, toks, status in columns
        ]

    def text(self, key: str) -> str:
        """The text of the column ``key`` (its tokens joined)."""
        for column in self.columns:
            if column["key"] == key:
                return "".join(piece for piece, _ in column["tokens"])
        raise KeyError(f"no column {key!r}; columns: {[c['key'] for c in self.columns]}")
