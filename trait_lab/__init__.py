"""trait_lab: trait vectors for language models — extract, measure, steer, watch, compare."""

from __future__ import annotations

__version__ = "0.1.0"
