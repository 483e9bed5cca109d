"""What one view of a record shows, before drawing: a :class:`Panel` of values and labels.

:func:`layers_panel` (one trait, its layers × tokens) and :func:`traits_panel` (every trait at
one layer) take their numbers from :func:`trait_lab.dynamics.trait_matrix`, so what a view shows
is what the library computes. A panel knows the first token position it shows (``start``, after
skipping the first tokens) and carries a title that names trait, layers, mode, cleaning, the
token range and the prompt.

Example:
    >>> from trait_lab.testing import tiny_record
    >>> panel = layers_panel(tiny_record(), "t", skip=1)
    >>> panel.rows, panel.start, panel.boundary, token_labels(panel.tokens, start=panel.start)
    (['L4', 'L8'], 1, 1, ['1:w2', '2:w3'])
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from trait_lab.dynamics import CLEAN_LABELS, ProjectionRecord, trait_matrix

__all__ = ["VALUE_TITLES", "Panel", "layers_panel", "record_label", "token_labels", "traits_panel"]

VALUE_TITLES = {"raw": "projection h·v̂", "normalized": "h·v̂ ÷ mean norm", "cosine": "cosine"}
"""The colour bar / y-axis title of each mode."""

_TOKEN_CHARS = {"Ġ": " ", "▁": " ", "Ċ": "↵", "ĉ": "⇥"}


@dataclass(frozen=True)
class Panel:
    """One view of one record, ready to draw: ``values``/``norms`` are ``[rows, tokens]``.

    ``tokens`` are the tokens shown (after skipping), ``start`` the position of the first one and
    ``boundary`` the response's first column in them; ``subtitle`` names the prompt and sampling.
    """

    kind: str
    rows: list[str]
    values: np.ndarray
    norms: np.ndarray
    tokens: list[str]
    boundary: int
    title: str
    row_title: str
    value_title: str
    start: int = 0
    subtitle: str = ""


def token_labels(tokens: Sequence[str], width: int = 12, start: int = 0) -> list[str]:
    """Unique, readable x labels ``"<position>:<token>"`` (byte-level BPE markers shown as
    space / ↵, HTML-escaped so plotly does not take ``<|im_start|>`` for a tag); positions
    count from ``start``.

    Example:
        >>> token_labels(["<s>", "Ġhello", "Ċ"])
        ['0:&lt;s&gt;', '1: hello', '2:↵']
    """
    out = []
    for i, token in enumerate(tokens, start):
        text = "".join(_TOKEN_CHARS.get(c, c) for c in token)
        text = text if len(text) <= width else text[: width - 1] + "…"
        text = html.escape(text, quote=False)
        out.append(f"{i}:{text}")
    return out


def record_label(record: ProjectionRecord, width: int = 60) -> str:
    """The user's text of a record's prompt (chat markup and role names dropped), shortened.

    Example:
        >>> from types import SimpleNamespace
        >>> text = "<|im_start|>user\\nHello there<|im_end|>\\n<|im_start|>assistant\\n"
        >>> record_label(SimpleNamespace(prompt=text))
        'Hello there'
    """

    parts = re.split(r"<\|[^|]*\|>|</?s>|\[/?INST\]", record.prompt)
    text = record.prompt
    for part in reversed(parts):
        lines = part.strip().split("\n", 1)
        if lines[0].strip() in {"system", "user", "assistant", "model"}:
            lines = lines[1:]
        candidate = " ".join(" ".join(lines).split())
        if candidate:
            text = candidate
            break
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _title(what: str, mode: str, clean: str, smoothing: int, centre: bool, where: str) -> str:
    extras = ([f"smoothed ×{smoothing}"] if smoothing > 1 else []) + (["centred"] if centre else [])
    return " · ".join([what, mode, CLEAN_LABELS[clean], *extras, where])


def _subtitle(record: ProjectionRecord, sampling: str | None) -> str:
    prompt = html.escape(record_label(record, 70), quote=False)
    return f"prompt “{prompt}”" + (f" · {html.escape(sampling)}" if sampling else "")


def _tokens_note(record: ProjectionRecord, skip: int) -> str:
    last = record.n_tokens - 1
    return f"tokens {skip}–{last}" + (f" (first {skip} skipped)" if skip else "")


def _layer_note(layers: Sequence[int]) -> str:
    return "layer" + ("s " if len(layers) > 1 else " ") + ", ".join(f"L{x}" for x in layers)


def layers_panel(
    record: ProjectionRecord,
    trait: str,
    *,
    kind: str = "tokens × layers",
    clean: str = "none",
    mode: str = "cosine",
    smoothing: int = 1,
    centre: bool = False,
    layers: Sequence[int] | None = None,
    skip: int = 0,
    sampling: str | None = None,
) -> Panel:
    """One trait's layers × tokens (``kind`` ``"tokens × layers"`` or ``"lines"``).

    Values and norms are exactly ``trait_matrix(record, trait, ...)`` with these arguments;
    ``clean`` is a key (``"none"``, ``"top5"``, ``"all"``) and the title shows its label.
    ``sampling`` (e.g. ``"greedy"``) goes into the subtitle when known.

    Example:
        >>> from trait_lab.testing import tiny_record
        >>> rec = tiny_record()
        >>> layers_panel(rec, "t", layers=[8]).rows
        ['L8']
    """
    if kind not in ("tokens × layers", "lines"):
        raise ValueError(f"layers_panel draws 'tokens × layers' or 'lines', not {kind!r}")
    chosen, values, norms = trait_matrix(
        record,
        trait,
        clean=clean,
        mode=mode,
        smoothing=smoothing,
        centre=centre,
        layers=None if layers is None else list(layers),
        skip=skip,
    )
    where = f"{_layer_note(chosen)} · {_tokens_note(record, skip)}"
    return Panel(
        kind=kind,
        rows=[f"L{layer}" for layer in chosen],
        values=values,
        norms=norms,
        tokens=record.tokens[skip:],
        boundary=max(record.boundary - skip, 0),
        title=_title(trait, mode, clean, smoothing, centre, where),
        row_title="layer",
        value_title=VALUE_TITLES[mode],
        start=skip,
        subtitle=_subtitle(record, sampling),
    )


def traits_panel(
    record: ProjectionRecord,
    layer: int,
    *,
    clean: str = "none",
    mode: str = "cosine",
    smoothing: int = 1,
    centre: bool = False,
    skip: int = 0,
    sampling: str | None = None,
) -> Panel:
    """Every trait of the record that has ``layer``: one ``trait_matrix`` row each.

    Example:
        >>> from trait_lab.testing import tiny_record
        >>> rec = tiny_record()
        >>> traits_panel(rec, 8).rows
        ['t']
    """
    names = sorted(t for t, per in record.projections.items() if layer in per)
    if not names:
        have = sorted({lay for per in record.projections.values() for lay in per})
        raise ValueError(f"no trait of this record has layer {layer}; layers: {have}")
    rows, norm_rows = [], []
    for name in names:
        _, values, norms = trait_matrix(
            record,
            name,
            clean=clean,
            mode=mode,
            smoothing=smoothing,
            centre=centre,
            layers=[layer],
            skip=skip,
        )
        rows.append(values[0])
        norm_rows.append(norms[0])
    return Panel(
        kind="tokens × traits",
        rows=names,
        values=np.stack(rows),
        norms=np.stack(norm_rows),
        tokens=record.tokens[skip:],
        boundary=max(record.boundary - skip, 0),
        title=_title(
            "all traits",
            mode,
            clean,
            smoothing,
            centre,
            f"layer L{layer} · {_tokens_note(record, skip)}",
        ),
        row_title="trait",
        value_title=VALUE_TITLES[mode],
        start=skip,
        subtitle=_subtitle(record, sampling),
    )
