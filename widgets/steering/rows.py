"""The state of one steering run (baseline and steered rows) and its per-token figure.

``SteeringPanel`` fills ``Row`` objects from ``LocalBackend.stream`` events with ``absorb``;
``steering_figure`` draws them.

Example:
    >>> row = Row()
    >>> row.pieces = [["Hi", 0.2], ["!", -0.1]]
    >>> len(steering_figure({"baseline": row.pieces, "steered": []}, "demo").data)
    2
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import plotly.graph_objects as go

from trait_lab.generation import GenerationConfig, SteeringSpec, StreamToken, precision_of
from widgets.steering.labels import sampling_text


@dataclass
class Request:
    """One job for the panel's runner: generate (``kind="generate"``) or recolour the texts
    shown (``"recolour"``). ``settings`` identifies what the steered text depends on (prompt,
    sliders, layers, mode, positions, sampling); ``ticket`` orders requests, so only the latest
    one writes the status line."""

    prompt: str
    specs: list[SteeringSpec]
    config: GenerationConfig
    colour: tuple[str, int]
    label: str
    submitted: float = field(default_factory=time.monotonic)
    kind: str = "generate"
    settings: tuple[Any, ...] = ()
    ticket: int = 0

    @property
    def baseline_key(self) -> tuple[Any, ...]:
        """What the baseline depends on: the prompt and the sampling (not the colour)."""
        return (self.prompt, repr(self.config))


@dataclass
class Row:
    """One column's tokens; ``colour`` is the (trait, layer) its cosines are with, and
    ``complete`` is set once the row finished without being stopped."""

    ids: list[int] = field(default_factory=list)
    pieces: list[list[Any]] = field(default_factory=list)  # [text, cosine or None]
    status: str = ""
    colour: tuple[str, int] | None = None
    complete: bool = False


def token_cosine(projection: float, norm: float) -> float:
    """A token's cosine with a unit vector from its projection on it and its norm (0 for an
    all-zero token): the one rule for colouring the panel's tokens.

    Example:
        >>> token_cosine(3.0, 6.0), token_cosine(1.0, 0.0)
        (0.5, 0.0)
    """
    return projection / norm if norm else 0.0


def absorb(row: Row, event: StreamToken, i: int, layer: int) -> None:
    """Add row ``i``'s new token with its cosine (the event scores its own token)."""
    token = event.token_ids[i]
    if token is not None:
        cosine = None
        if event.projections and event.norms:
            cosine = token_cosine(float(event.projections[layer][i]), float(event.norms[layer][i]))
        row.ids.append(int(token))
        row.pieces.append([event.texts[i], cosine])
    row.status = f"generating… {len(row.ids)} tokens"


def finish(rows: list[Row], word: str, seconds: float, backend: Any) -> None:
    """Mark rows ``done`` (complete) or ``stopped``; their status says how they ended, their
    length and speed, and what the ``backend`` computed with (``LocalBackend.compute``: the
    precision, and whether the decode step was compiled; else ``precision_of`` its model).

    Example:
        >>> import torch
        >>> from trait_lab.generation import LocalBackend
        >>> from trait_lab.testing import tiny_model
        >>> row = Row(ids=[5] * 32)
        >>> finish([row], "done", 2.0, LocalBackend(tiny_model(dtype=torch.bfloat16), None))
        >>> row.status, row.complete
        ('done · 32 tokens · 2.0 s · 16.0 tok/s · bf16', True)
    """
    compute = getattr(backend, "compute", None)
    label = compute if isinstance(compute, str) else precision_of(backend.model)
    for row in rows:
        row.complete = word == "done"
        rate = len(row.ids) / seconds if seconds > 0 else 0.0
        row.status = (
            f"{word} · {len(row.ids)} tokens · {seconds:.1f} s · {rate:.1f} tok/s · {label}"
        )


def stream_columns(
    rows: dict[str, tuple[list[tuple[str, float | None]], str]], request: Request
) -> list[tuple[str, str, list[tuple[str, float | None]], str]]:
    """The ``TokenStream`` columns: ``rows`` is ``{key: (pieces, status)}``; the titles name
    the sampling and, for the steered text, everything ``request.label`` says.

    Example:
        >>> from trait_lab.generation import GenerationConfig
        >>> req = Request("Hi", [], GenerationConfig(), ("joy", 3), "add: joy +0.50 @ L3")
        >>> [c[1] for c in stream_columns({"baseline": ([], ""), "steered": ([], "")}, req)]
        ['baseline (no steering) · greedy', 'steered — add: joy +0.50 @ L3']
    """
    base = f"baseline (no steering) · {sampling_text(request.config)}"
    return [
        ("baseline", base, *rows["baseline"]),
        ("steered", f"steered — {request.label}", *rows["steered"]),
    ]


def steering_figure(rows: dict[str, list[list[Any]]], title: str) -> go.Figure:
    """Lines of each row's per-token cosine; hover shows the token."""
    fig = go.Figure()
    for key, colour in (("baseline", "#555"), ("steered", "#d62728")):
        pieces = rows.get(key, [])
        fig.add_trace(
            go.Scatter(
                x=list(range(len(pieces))),
                y=[s for _, s in pieces],
                name=key,
                mode="lines+markers",
                text=[repr(t) for t, _ in pieces],
                line={"color": colour},
                hovertemplate="token %{x}: %{text}<br>cosine %{y:.3f}<extra>" + key + "</extra>",
            )
        )
    fig.update_layout(
        title=title,
        xaxis_title="generated token",
        yaxis_title="cosine with the trait",
        height=360,
        margin={"l": 60, "r": 20, "t": 60, "b": 50},
    )
    return fig
