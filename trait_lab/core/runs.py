"""Resumable runs: a unit whose output exists and loads is skipped; every other unit is redone.

Extraction (one vector per component, method and layer) and inference (one record per prompt)
are runs of independent units whose outputs are files written atomically
(:mod:`trait_lab.core.atomic`): a file that exists is whole unless something else damaged it.
A :class:`ResumableRun` decides which units are done by *loading* their outputs — a file that
exists but fails to load is logged as a warning and recomputed, never trusted — and counts the
units it skipped and computed, so a killed run resumes where it stopped.

Example:
    >>> import json, tempfile
    >>> from trait_lab.core.atomic import atomic_write_text
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "0.json").write_text("[0]")
    >>> paths = [folder / f"{i}.json" for i in range(3)]
    >>> run = ResumableRun("demo")
    >>> read = lambda path: json.loads(path.read_text())
    >>> todo = run.pending(range(3), lambda i: run.done(paths[i], read))
    >>> todo, run.skipped
    ([1, 2], 1)
    >>> for i in todo:
    ...     _ = run.save(paths[i], lambda path: atomic_write_text(path, f"[{i}]"))
    >>> run.computed, paths[2].read_text()
    (2, '[2]')
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

__all__ = ["ResumableRun"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
K = TypeVar("K")


@dataclass
class ResumableRun:
    """Which units of a run are done (their outputs load), and counts of skipped and computed.

    Args:
        label: names the run in log messages (e.g. ``"extraction of optimism"``).
        errors: the exceptions a loader raises for an unusable file; any other exception
            propagates (a bug is not mistaken for a corrupt file).

    Attributes:
        skipped: units found done by :meth:`pending`.
        computed: units written by :meth:`save`.

    Example:
        >>> run = ResumableRun("demo")
        >>> run.pending(["a", "b"], lambda unit: unit == "a"), run.skipped
        (['b'], 1)
    """

    label: str
    errors: tuple[type[Exception], ...] = (OSError, ValueError)
    skipped: int = 0
    computed: int = 0

    def load(self, path: str | os.PathLike[str], load: Callable[[Path], T]) -> T | None:
        """``load(path)`` when the file exists and loads; ``None`` when missing or unusable.

        An unusable file (``load`` raised one of :attr:`errors`) is logged as a warning that
        names the file and the problem; the caller recomputes it.

        Example:
            >>> ResumableRun("demo").load("/nonexistent.json", Path.read_text) is None
            True
        """
        path = Path(path)
        if not path.exists():
            return None
        try:
            return load(path)
        except self.errors as exc:
            logger.warning("%s: recomputing %s, which does not load: %s", self.label, path, exc)
            return None

    def done(self, path: str | os.PathLike[str], load: Callable[[Path], object]) -> bool:
        """Whether ``path`` exists and ``load`` reads it to something not ``None`` (:meth:`load`).

        Example:
            >>> ResumableRun("demo").done("/nonexistent.json", Path.read_text)
            False
        """
        return self.load(path, load) is not None

    def pending(self, units: Iterable[K], done: Callable[[K], bool]) -> list[K]:
        """The units, in order, for which ``done(unit)`` is false; the others count as skipped.

        Example:
            >>> ResumableRun("demo").pending(range(4), lambda i: i % 2 == 0)
            [1, 3]
        """
        every = list(units)
        todo = [unit for unit in every if not done(unit)]
        self.skipped += len(every) - len(todo)
        logger.info("%s: %d of %d units to compute", self.label, len(todo), len(every))
        return todo

    def save(self, path: str | os.PathLike[str], save: Callable[[Path], object]) -> Path:
        """Write one unit's output with ``save(path)``; counts one computed unit.

        ``save`` must write atomically, through :mod:`trait_lab.core.atomic` as trait_lab's own
        savers do (``save_vector``, ``ProjectionRecord.save``, ``atomic_write_json``), so a
        kill leaves the old file or none, never half of one.

        Example:
            >>> import tempfile
            >>> from trait_lab.core.atomic import atomic_write_text
            >>> run = ResumableRun("demo")
            >>> _ = run.save(tempfile.mkdtemp() + "/a.txt", lambda p: atomic_write_text(p, "a"))
            >>> run.computed
            1
        """
        path = Path(path)
        save(path)
        self.computed += 1
        return path
