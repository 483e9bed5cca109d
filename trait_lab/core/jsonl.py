"""Append-only JSON-lines logs: one fsynced line per finished unit, a cut-off last line repaired.

A run that logs each finished unit as one line can be killed at any moment: every complete
line is durable (``fsync`` after each append), and a kill in the middle of a write leaves at
most one cut-off last line, which :func:`read_jsonl` drops (rewriting the file atomically,
with a warning) so that unit is simply redone; a whole last line missing only its newline gets
it back. A bad line anywhere else is damage, not a kill, and raises.

Example:
    >>> import tempfile
    >>> log = Path(tempfile.mkdtemp()) / "metrics.jsonl"
    >>> append_jsonl(log, {"layer": 1}); append_jsonl(log, {"layer": 2})
    >>> read_jsonl(log)
    [{'layer': 1}, {'layer': 2}]
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from trait_lab.core.atomic import atomic_write_text

__all__ = ["append_jsonl", "read_jsonl"]

logger = logging.getLogger(__name__)


def append_jsonl(path: str | os.PathLike[str], row: dict[str, Any]) -> None:
    """Append ``row`` as one JSON line and fsync it (creates the file and its folder).

    Example:
        >>> import tempfile
        >>> append_jsonl(Path(tempfile.mkdtemp()) / "a.jsonl", {"x": 1})
    """
    path = Path(path)
    line = json.dumps(row, allow_nan=False)  # NaN is not JSON: refuse it rather than write it
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every row of a log (``[]`` when there is no file); a cut-off last line is dropped.

    Raises:
        ValueError: a line other than the last is not a JSON object (the file is damaged);
            the message names the file and line and says to delete it to start over.

    Example:
        >>> read_jsonl("/nonexistent.jsonl")
        []
    """
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    rows: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError(f"a JSON {type(row).__name__}, not an object")
        except ValueError as exc:
            if i == len(lines) - 1:  # a write cut short by a kill: drop it, that unit is redone
                logger.warning("dropping the cut-off last line of %s", path)
                atomic_write_text(path, "".join(kept + "\n" for kept in lines[:i]))
                break
            raise ValueError(
                f"{path} line {i + 1} is not a JSON object ({exc}); the log is damaged. "
                "Delete the file to redo the run from scratch."
            ) from exc
        rows.append(row)
    else:
        if text and not text.endswith("\n"):  # killed just before the newline: complete it
            atomic_write_text(path, text + "\n")
    return rows
