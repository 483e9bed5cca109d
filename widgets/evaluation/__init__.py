"""The steering-evaluation figure: trait score and coherence against steering strength."""

from __future__ import annotations

from widgets.evaluation.figures import (
    AXES,
    Answers,
    Responses,
    answers_html,
    curve_name,
    steering_curves,
)

__all__ = [
    "AXES",
    "Answers",
    "Responses",
    "answers_html",
    "curve_name",
    "steering_curves",
]
