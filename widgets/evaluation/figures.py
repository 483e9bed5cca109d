"""The steering-evaluation figure: trait score and coherence against steering strength.

:func:`steering_curves` draws the :class:`~trait_lab.evaluation.SteeringResults` of a
coefficient search as two rows sharing the x axis — the judge's trait score on top, coherence
below — with one line per steered layer set (both directions on one line), the unsteered
baseline dashed, the coherence threshold dotted, incoherent points hollow and the recommended
configurations starred. Hovering a point shows its numbers and its first answers. The result is
a plain ``go.Figure``, so :func:`widgets.export_figure` and ``ExportBar`` save it.

Example:
    >>> from trait_lab.core import JudgeResult
    >>> from trait_lab.evaluation import SteeringEntry, SteeringResults, SteeringRunRecord
    >>> run = SteeringRunRecord("demo", "optimism", "instruct", "f" * 16, {"kind": "x"})
    >>> up = SteeringEntry((12,), (4.0,), "residual", "probe", 60.0, 85.0, 4, True, 40.0,
    ...                    fraction=0.02)
    >>> fig = steering_curves(SteeringResults(run, JudgeResult(20.0, 90.0, 4), [up]))
    >>> [trace.name for trace in fig.data]
    ['L12 probe', 'L12 probe', 'baseline', 'baseline', 'recommended +', 'recommended +']
"""

from __future__ import annotations

import html
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from trait_lab.evaluation import DEFAULT_THRESHOLD, SteeringEntry, SteeringResults
from widgets.common.colours import NEGATIVE_RGB, POSITIVE_RGB

__all__ = ["AXES", "Answers", "Responses", "answers_html", "curve_name", "steering_curves"]

AXES = ("fraction", "coefficient")
"""What the x axis shows: the signed strength as a fraction of each layer's typical residual
norm, or the signed coefficient itself (single-layer sets only)."""

Answers = Sequence[Mapping[str, Any]]
"""One entry's saved answers: dicts with ``question``, ``answer``, ``trait``, ``coherence``."""
Responses = Mapping[str, Answers] | Callable[[str], Answers]
"""Saved answers by entry key (or ``"baseline"``): a dict, or ``ResultsLog.responses``."""

SHOWN_ANSWERS = 2  # answers shown in a point's hover
ANSWER_CHARS = 160  # an answer is cut to this many characters in the hover
QUESTION_CHARS = 100
WRAP = 64  # hover line width, in characters

_ROWS = (("trait_mean", "trait score"), ("coherence_mean", "coherence"))
_COLOURS = qualitative.Plotly + qualitative.Dark24
_STARS = {  # the one colour convention: red toward the positive pole, blue toward the negative
    1: ("recommended +", "rgb({}, {}, {})".format(*POSITIVE_RGB)),
    -1: ("recommended −", "rgb({}, {}, {})".format(*NEGATIVE_RGB)),
}
_BASELINE = "#7f7f7f"


def curve_name(entry: SteeringEntry, component: bool = False) -> str:
    """The legend name of an entry's line: its layer set and method (and ``component``, when
    the results mix several components).

    Example:
        >>> curve_name(SteeringEntry((12, 9), (3.0, 2.0), "residual", "probe", 50, 80, 4, True))
        'L9+L12 probe'
    """
    name = "+".join(f"L{layer}" for layer in sorted(entry.layers)) + f" {entry.method}"
    return f"{name} {entry.component}" if component else name


def answers_html(answers: Answers, limit: int = SHOWN_ANSWERS) -> str:
    """The first ``limit`` answers as hover HTML: question → answer (cut to ~160 characters),
    each line escaped and wrapped with ``<br>``, then the answer's own scores.

    Example:
        >>> answers_html([{"question": "Hi?", "answer": "<b>Hello</b>", "trait": 80.0,
        ...                "coherence": None}])
        '<i>Hi?</i><br>→ &lt;b&gt;Hello&lt;/b&gt;<br>  trait 80 · coherence –'
    """
    parts = []
    for item in list(answers)[:limit]:
        question = _wrapped(item.get("question", ""), QUESTION_CHARS)
        answer = _wrapped(item.get("answer", ""), ANSWER_CHARS)
        scores = f"trait {_score(item.get('trait'))} · coherence {_score(item.get('coherence'))}"
        parts.append(f"<i>{question}</i><br>→ {answer}<br>  {scores}")
    return "<br>".join(parts)


def _wrapped(text: Any, limit: int) -> str:
    flat = " ".join(str(text).split())
    if len(flat) > limit:
        flat = flat[: limit - 1].rstrip() + "…"
    return "<br>".join(html.escape(line, quote=False) for line in textwrap.wrap(flat, WRAP))


def _score(value: Any) -> str:
    return "–" if value is None else f"{float(value):.0f}"


def _fetcher(responses: Responses | None) -> Callable[[str], Answers]:
    """``key -> answers``; a key the source does not hold has none."""
    if responses is None:
        return lambda key: ()
    if isinstance(responses, Mapping):
        saved = responses
        return lambda key: saved.get(key, ())
    if not callable(responses):
        raise TypeError(
            f"responses is a {type(responses).__name__}; pass a dict {{key: answers}}, a "
            "function key -> answers (e.g. ResultsLog.responses) or None"
        )

    def fetch(key: str) -> Answers:
        try:
            return responses(key)
        except KeyError:  # the log holds no such key (e.g. no baseline yet)
            return ()

    return fetch


def _x(entry: SteeringEntry, x: str) -> float:
    if x == "fraction":
        if entry.fraction is None:
            raise ValueError(
                f"entry {entry.key} has no fraction (a results log written before fractions "
                "were recorded), so x='fraction' cannot place it; draw it with "
                "x='coefficient' (single-layer entries only) or rerun the search"
            )
        return entry.fraction
    if len(entry.layers) > 1:
        raise ValueError(
            f"entry {entry.key} steers layers {list(entry.layers)}, each with its own "
            "coefficient, so x='coefficient' has no single value for it; use x='fraction' "
            "(the strength as a fraction of each layer's typical residual norm)"
        )
    return entry.coefficients[0]


def _numbers(trait: float, coherence: float, n: int, delta: float | None) -> str:
    change = "" if delta is None else f" (Δ {delta:+.1f})"
    return f"trait {trait:.1f}{change}<br>coherence {coherence:.1f} · n {n}"


def _hover(entry: SteeringEntry, answers: Answers) -> str:
    strength = ", ".join(
        f"L{layer} {coef:+.4g}"
        for layer, coef in zip(entry.layers, entry.coefficients, strict=True)
    )
    if entry.fraction is not None:
        strength = f"fraction {entry.fraction:+.2%} · coefficient {strength}"
    lines = [
        f"<b>{html.escape(entry.key)}</b>",
        strength,
        _numbers(entry.trait_mean, entry.coherence_mean, entry.n, entry.delta),
    ]
    if not entry.coherent:
        lines.append("<b>incoherent</b>")
    if answers:
        lines.append(answers_html(answers))
    return "<br>".join(lines)


def _point_trace(name: str, row: int, **spec: Any) -> go.Scatter:
    """A trace of one legend group: shown in the legend from the top row only."""
    return go.Scatter(
        name=name,
        legendgroup=name,
        showlegend=row == 1,
        hovertemplate="%{hovertext}<extra>" + html.escape(name) + "</extra>",
        **spec,
    )


def _curves(fig: go.Figure, entries: list[SteeringEntry], x: str, hovers: dict[str, str]) -> None:
    """One line per (layer set, method, component), points sorted by x, same colour per row."""
    mixed = len({e.component for e in entries}) > 1
    groups: dict[tuple[tuple[int, ...], str, str], list[SteeringEntry]] = {}
    for entry in entries:
        group = (tuple(sorted(entry.layers)), entry.method, entry.component)
        groups.setdefault(group, []).append(entry)
    order = sorted(groups, key=lambda g: (len(g[0]), g))  # single layers first, then by layer
    for i, group in enumerate(order):
        points = sorted(groups[group], key=lambda e: (_x(e, x), e.key))
        name, colour = curve_name(points[0], mixed), _COLOURS[i % len(_COLOURS)]
        marker = {
            "color": colour,
            "size": 8,
            "symbol": ["circle" if e.coherent else "circle-open" for e in points],
            "opacity": [1.0 if e.coherent else 0.55 for e in points],
            "line": {"color": colour, "width": 2},
        }
        for row, (field, _) in enumerate(_ROWS, start=1):
            trace = _point_trace(
                name,
                row,
                x=[_x(e, x) for e in points],
                y=[getattr(e, field) for e in points],
                mode="lines+markers",
                line={"color": colour, "width": 2},
                marker=marker,
                hovertext=[hovers[e.key] for e in points],
            )
            fig.add_trace(trace, row=row, col=1)


def _baseline(fig: go.Figure, results: SteeringResults, fetch: Callable[[str], Answers]) -> None:
    """A dashed line at the unsteered scores in each row, and a marker at x = 0."""
    base = results.baseline
    if base is None:
        return
    lines = [
        "<b>baseline</b> (unsteered)",
        _numbers(base.trait_mean, base.coherence_mean, base.n, 0),
    ]
    answers = fetch("baseline")
    hover = "<br>".join(lines + ([answers_html(answers)] if answers else []))
    for row, (field, _) in enumerate(_ROWS, start=1):
        value = getattr(base, field)
        dashed = {"color": _BASELINE, "width": 1, "dash": "dash"}
        fig.add_hline(y=value, line=dashed, row=row, col=1, exclude_empty_subplots=False)
        marker = {"color": _BASELINE, "size": 10, "symbol": "diamond"}
        trace = _point_trace(
            "baseline",
            row,
            x=[0.0],
            y=[value],
            mode="markers",
            marker=marker,
            hovertext=[hover],
        )
        fig.add_trace(trace, row=row, col=1)


def _stars(fig: go.Figure, results: SteeringResults, x: str, hovers: dict[str, str]) -> None:
    """A star at each recommended entry (``results.best(+1)``, ``results.best(-1)``), both rows."""
    for direction, (name, colour) in _STARS.items():
        best = results.best(direction)
        if best is None:
            continue
        marker = {
            "color": colour,
            "size": 18,
            "symbol": "star",
            "line": {"color": "black", "width": 1},
        }
        for row, (field, _) in enumerate(_ROWS, start=1):
            trace = _point_trace(
                name,
                row,
                x=[_x(best, x)],
                y=[getattr(best, field)],
                mode="markers",
                marker=marker,
                hovertext=[f"<b>{name}</b><br>{hovers[best.key]}"],
            )
            fig.add_trace(trace, row=row, col=1)


def steering_curves(
    results: SteeringResults,
    responses: Responses | None = None,
    *,
    x: str = "fraction",
    threshold: float | None = None,
    title: str | None = None,
) -> go.Figure:
    """Trait score (top) and coherence (bottom) against steering strength, one line per layer set.

    Args:
        results: a coefficient search's results (``ResultsLog.results()``).
        responses: the saved answers shown on hover — ``log.responses`` or a dict
            ``{key: answers}`` (``"baseline"`` for the unsteered ones); None shows none.
        x: ``"fraction"`` (strength ÷ each layer's typical norm) or ``"coefficient"``
            (single-layer sets only).
        threshold: the coherence needed to count as coherent, drawn dotted (default
            :data:`trait_lab.evaluation.DEFAULT_THRESHOLD`).
        title: the figure's title (default names the trait).

    Returns:
        A ``go.Figure``: per line two traces (one per row, one legend group), then the baseline's
        two, then two per recommended entry (``"recommended +"``, ``"recommended −"``).

    Example:
        >>> from trait_lab.evaluation import SteeringRunRecord
        >>> run = SteeringRunRecord("demo", "optimism", "instruct", "f" * 16, {"kind": "x"})
        >>> fig = steering_curves(SteeringResults(run, None, []), x="coefficient")
        >>> fig.layout.xaxis2.title.text, len(fig.data)
        ('coefficient', 0)
    """
    if x not in AXES:
        raise ValueError(f"x={x!r}; use one of {AXES}")
    limit = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    fetch = _fetcher(responses)
    hovers = {e.key: _hover(e, fetch(e.key)) for e in results.entries}
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06)
    _curves(fig, results.entries, x, hovers)
    _baseline(fig, results, fetch)
    _stars(fig, results, x, hovers)
    fig.add_hline(
        y=limit,
        line={"color": "#b00020", "width": 1, "dash": "dot"},
        annotation_text=f"coherence threshold {limit:g} (hollow points: incoherent)",
        annotation_position="bottom right",
        row=2,
        col=1,
        exclude_empty_subplots=False,
    )
    if x == "fraction":
        fig.update_xaxes(tickformat=".2~%")
    label = "steering strength (fraction of the residual norm)" if x == "fraction" else x
    fig.update_xaxes(zeroline=True)
    fig.update_xaxes(title_text=label, row=2, col=1)
    for row, (_, axis_title) in enumerate(_ROWS, start=1):
        fig.update_yaxes(title_text=axis_title, range=[-3, 103], row=row, col=1)
    fig.update_layout(
        title=title or f"{results.run.trait}: trait score and coherence by steering strength",
        height=640,
        hovermode="closest",
        hoverlabel={"align": "left"},
        legend={"title": {"text": "layers · method"}},
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
    )
    return fig
