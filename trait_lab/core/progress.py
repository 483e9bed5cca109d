"""Progress for steps whose length is not known in advance: show a logger's INFO messages.

An adaptive search does not know how many rounds it will run, so a bar has no total; its
modules log one INFO line per round instead. ``log_progress`` shows those lines on stderr,
each with the seconds since the step started, for the duration of a ``with`` block, then
restores the loggers as they were.

Example:
    >>> import logging, sys
    >>> with log_progress("trait_lab.demo", stream=sys.stdout):
    ...     logging.getLogger("trait_lab.demo").info("round 1")  # doctest: +ELLIPSIS
    [...s] round 1
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


class _Elapsed(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self.start = time.monotonic()

    def format(self, record: logging.LogRecord) -> str:
        return f"[{time.monotonic() - self.start:5.1f}s] {record.getMessage()}"


@contextmanager
def log_progress(*names: str, stream: TextIO | None = None) -> Iterator[None]:
    """Show INFO messages of the loggers ``names`` on ``stream`` (default stderr) while inside.

    Example:
        >>> with log_progress("trait_lab.evaluation.search"):
        ...     pass
    """
    if not names:
        raise ValueError("log_progress needs at least one logger name, e.g. 'trait_lab.vectors'")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_Elapsed())
    handler.setLevel(logging.INFO)
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        if logger.getEffectiveLevel() > logging.INFO:
            logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)
