"""What the trait-dynamics view draws, built only from :func:`trait_lab.dynamics.trait_matrix`.

A :class:`Panel` holds the rows, values and norms of one view of a record (tokens × layers for
one trait, tokens × traits at one layer, or one line per layer) plus the labels that go with
them. :func:`draw` puts a panel into a plotly figure *in place* (a ``FigureWidget`` keeps its
identity, so a notebook's output updates without flicker); :func:`read` gets back what a figure
shows, so tests can compare it with ``trait_matrix``.

Example:
    >>> from trait_lab.testing import tiny_record
    >>> rec = tiny_record()
    >>> panel = layers_panel(rec, "t", clean="all", mode="cosine")
    >>> fig = go.Figure()
    >>> draw(fig, panel)
    >>> read(fig).rows == panel.rows == ["L4", "L8"]
    True
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from trait_lab.dynamics import CLEAN_LABELS, ProjectionRecord, trait_matrix

__all__ = [
    "VIEWS",
    "Panel",
    "Shown",
    "draw",
    "dynamics_figure",
    "layers_panel",
    "read",
    "record_label",
    "token_labels",
    "traits_panel",
]

VIEWS: tuple[str, ...] = ("tokens × layers", "tokens × traits", "lines")
"""The view's layouts: a heatmap per trait, a heatmap per layer, or one line per layer."""

_VALUE_TITLES = {"raw": "projection h·v̂", "normalized": "h·v̂ ÷ mean norm", "cosine": "cosine"}
_TOKEN_CHARS = {"Ġ": " ", "▁": " ", "Ċ": "↵", "ĉ": "⇥"}


@dataclass(frozen=True)
class Shown:
    """What a figure shows: row labels, values ``[rows, tokens]`` and norms ``[rows, tokens]``."""

    rows: list[str]
    values: np.ndarray
    norms: np.ndarray


@dataclass(frozen=True)
class Panel:
    """One view of one record, ready to draw: ``values``/``norms`` are ``[rows, tokens]``."""

    kind: str
    rows: list[str]
    values: np.ndarray
    norms: np.ndarray
    tokens: list[str]
    boundary: int
    title: str
    row_title: str
    value_title: str


def token_labels(tokens: Sequence[str], width: int = 12) -> list[str]:
    """Unique, readable x labels ``"<position>:<token>"`` (byte-level BPE markers shown as
    space / ↵, HTML-escaped so plotly does not take ``<|im_start|>`` for a tag).

    Example:
        >>> token_labels(["<s>", "Ġhello", "Ċ"])
        ['0:&lt;s&gt;', '1: hello', '2:↵']
    """
    out = []
    for i, token in enumerate(tokens):
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


def _title(what: str, mode: str, clean: str, smoothing: int, centre: bool) -> str:
    extras = ([f"smoothed ×{smoothing}"] if smoothing > 1 else []) + (["centred"] if centre else [])
    return " · ".join([what, mode, CLEAN_LABELS[clean], *extras])


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
) -> Panel:
    """One trait's layers × tokens (``kind`` ``"tokens × layers"`` or ``"lines"``).

    Values and norms are exactly ``trait_matrix(record, trait, ...)`` with these arguments;
    ``clean`` is a key (``"none"``, ``"top5"``, ``"all"``) and the title shows its label.

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
    )
    return Panel(
        kind=kind,
        rows=[f"L{layer}" for layer in chosen],
        values=values,
        norms=norms,
        tokens=record.tokens,
        boundary=record.boundary,
        title=_title(trait, mode, clean, smoothing, centre),
        row_title="layer",
        value_title=_VALUE_TITLES[mode],
    )


def traits_panel(
    record: ProjectionRecord,
    layer: int,
    *,
    clean: str = "none",
    mode: str = "cosine",
    smoothing: int = 1,
    centre: bool = False,
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
        )
        rows.append(values[0])
        norm_rows.append(norms[0])
    return Panel(
        kind="tokens × traits",
        rows=names,
        values=np.stack(rows),
        norms=np.stack(norm_rows),
        tokens=record.tokens,
        boundary=record.boundary,
        title=_title(f"all traits at L{layer}", mode, clean, smoothing, centre),
        row_title="trait",
        value_title=_VALUE_TITLES[mode],
    )


def _heatmap(panel: Panel, labels: list[str]) -> dict:
    limit = float(np.abs(panel.values).max()) if panel.values.size else 0.0
    limit = limit if limit > 0 else 1.0
    return dict(
        z=panel.values,
        x=labels,
        y=panel.rows,
        customdata=panel.norms,
        colorscale="RdBu",
        zmid=0.0,
        zmin=-limit,
        zmax=limit,
        colorbar={"title": {"text": panel.value_title}},
        hovertemplate=f"token %{{x}}<br>{panel.row_title} %{{y}}<br>value %{{z:.3f}}"
        "<br>norm %{customdata:.1f}<extra></extra>",
    )


def _lines(panel: Panel, labels: list[str]) -> list[dict]:
    colors = sample_colorscale("Viridis", np.linspace(0, 0.9, max(len(panel.rows), 2)).tolist())
    x = np.arange(len(labels))
    return [
        dict(
            x=x,
            y=panel.values[i],
            customdata=panel.norms[i],
            text=labels,
            name=row,
            mode="lines+markers",
            line={"color": colors[i], "width": 1.5},
            marker={"size": 4, "color": colors[i]},
            hovertemplate=f"token %{{text}}<br>{row}<br>value %{{y:.3f}}<br>norm "
            "%{customdata:.1f}<extra></extra>",
        )
        for i, row in enumerate(panel.rows)
    ]


_TICK_PX = 13  # a vertical size-10 tick label needs ~13 px to stay clear of its neighbours
_MAX_WIDTH = 1100  # wider than this, labels are thinned instead of the figure growing


def draw(fig: go.Figure, panel: Panel) -> None:
    """Show ``panel`` in ``fig``, in place: traces are reused when the layout kind matches.

    The boundary is a dashed vertical line at ``boundary - 0.5`` with a "response →" note;
    tick labels turn vertical for long records, the height grows with the rows and the
    width with the tokens up to 1100 px, beyond which every k-th token is labelled (so
    labels never overlap; hover names every token).
    """
    labels = token_labels(panel.tokens)
    n = len(labels)
    heat = panel.kind != "lines"
    specs = [_heatmap(panel, labels)] if heat else _lines(panel, labels)
    trace_type = go.Heatmap if heat else go.Scatter
    same = len(fig.data) == len(specs) and all(isinstance(t, trace_type) for t in fig.data)
    with fig.batch_update():
        if same:
            for trace, spec in zip(fig.data, specs, strict=True):
                trace.update(spec, overwrite=True)
        else:
            fig.data = []
            fig.add_traces([trace_type(spec) for spec in specs])
        shapes, notes = [], []
        if 0 < panel.boundary < n:
            x = panel.boundary - 0.5
            shapes = [
                dict(
                    type="line",
                    x0=x,
                    x1=x,
                    y0=0,
                    y1=1,
                    yref="paper",
                    line={"color": "black", "width": 2, "dash": "dash"},
                )
            ]
            notes = [
                dict(
                    x=x,
                    y=1.0,
                    yref="paper",
                    text="response →",
                    showarrow=False,
                    xanchor="left",
                    yanchor="bottom",
                )
            ]
        ticks: dict[str, Any] = dict(
            tickangle=-90 if n > 30 else -45, tickfont={"size": 10 if n > 30 else 12}
        )
        xaxis: dict[str, Any]
        width = min(_MAX_WIDTH, 160 + _TICK_PX * n) if n > 45 else None
        shown = n if width is None else min(n, (width - 160) // _TICK_PX)
        if heat:
            xaxis = dict(type="category", tickvals=None, ticktext=None, nticks=shown, **ticks)
            yaxis = dict(type="category", title={"text": panel.row_title})
            height = 230 + 30 * len(panel.rows)
        else:
            every = -(-n // shown)  # label every k-th token when they would not fit
            xaxis = dict(
                type="linear",
                tickvals=list(range(0, n, every)),
                ticktext=labels[::every],
                **ticks,
            )
            yaxis = dict(type="linear", title={"text": panel.value_title})
            height = 460
        fig.update_layout(
            title={"text": panel.title},
            xaxis=dict(title={"text": "token"}, automargin=True, autorange=True, **xaxis),
            yaxis=dict(automargin=True, autorange=True, **yaxis),
            shapes=shapes,
            annotations=notes,
            height=height + (60 if n > 30 else 30),
            width=width,
            showlegend=not heat,
            margin={"l": 60, "r": 20, "t": 70, "b": 40},
        )


def dynamics_figure(
    record: ProjectionRecord,
    trait: str | None = None,
    *,
    view: str = "tokens × layers",
    layer: int | None = None,
    **options: Any,
) -> go.Figure:
    """A static figure of one view (what :class:`~widgets.dynamics.view.TraitDynamics` draws).

    ``trait`` is needed by the layer views, ``layer`` by ``"tokens × traits"``; ``options``
    (``clean``, ``mode``, ``smoothing``, ``centre``, and ``layers`` for the layer views) go to
    ``trait_matrix``.

    Example:
        >>> dynamics_figure(None, view="grid")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: unknown view 'grid'; choose one of ['tokens × layers', ...
    """
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; choose one of {list(VIEWS)}")
    if view == "tokens × traits":
        if layer is None:
            raise ValueError("the 'tokens × traits' view needs layer=; pass one of the layers")
        panel = traits_panel(record, layer, **options)
    else:
        if trait is None:
            raise ValueError(
                f"the {view!r} view needs trait=; traits: {sorted(record.projections)}"
            )
        panel = layers_panel(record, trait, kind=view, **options)
    fig = go.Figure()
    draw(fig, panel)
    return fig


def read(fig: go.Figure) -> Shown:
    """Rows, values and hover norms a figure drawn by :func:`draw` shows.

    Example:
        >>> read(go.Figure()).rows
        []
    """
    if not fig.data:
        return Shown([], np.zeros((0, 0)), np.zeros((0, 0)))
    if isinstance(fig.data[0], go.Heatmap):
        trace = fig.data[0]
        return Shown(list(trace.y), np.asarray(trace.z, float), np.asarray(trace.customdata, float))
    return Shown(
        [t.name for t in fig.data],
        np.stack([np.asarray(t.y, float) for t in fig.data]),
        np.stack([np.asarray(t.customdata, float) for t in fig.data]),
    )
