"""The ``argparse`` types of the ``trait-lab`` command: values checked where they are parsed.

A bad value is a usage error that names it and what is allowed, before anything loads.

Example:
    >>> whole(1)("3")
    3
    >>> percent("70")
    70.0
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

from trait_lab.core.paths import check_name
from trait_lab.prompts.positions import Position

__all__ = ["PROG", "folder_name", "percent", "position", "whole"]

PROG = "trait-lab"


def whole(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number ``>= minimum``, refused with a usage error."""

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"expected a whole number >= {minimum}, got {text!r}; e.g. {minimum + 1}"
            )
        return value

    return convert


def percent(text: str) -> float:
    """An argparse ``type``: a finite number in [0, 100] (a coherence score)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= 100):
        raise argparse.ArgumentTypeError(f"expected a number in [0, 100], got {text!r}; e.g. 70")
    return value


def folder_name(what: str) -> Callable[[str], str]:
    """An argparse ``type``: a name that becomes a folder (:func:`check_name`)."""

    def convert(text: str) -> str:
        try:
            return check_name(PROG, what, text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    return convert


def position(text: str) -> str:
    """An argparse ``type``: a position in the DSL (checked, passed on as written)."""
    try:
        Position.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return text
