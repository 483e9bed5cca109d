"""One exclusive lock per piece of work that two processes must not do at once.

:func:`hold_lock` holds a ``filelock`` lock (``flock`` on Unix, works on every OS) on a lock file
and records the holder's pid next to it (``<lock>.pid``), so a second run says whom it waits
for — ``waiting for another run of this extraction (pid 4242) holding out/.lock`` — and, when
``timeout`` seconds pass, raises :class:`LockTimeoutError` naming the holder and the fix. Used
by the model cache (one conversion per model) and the extraction pipeline (one run per
extraction folder).

Example:
    >>> import tempfile
    >>> lock = Path(tempfile.mkdtemp()) / "demo.lock"
    >>> with hold_lock(lock, "demo"):
    ...     holder_pid(lock) == os.getpid()
    True
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from trait_lab.core.atomic import atomic_write_text

__all__ = ["LockTimeoutError", "hold_lock", "holder_pid"]

logger = logging.getLogger(__name__)


class LockTimeoutError(TimeoutError):
    """Another process held a lock longer than the caller would wait; the message names it."""


def _pid_file(lock_file: Path) -> Path:
    return lock_file.with_name(lock_file.name + ".pid")


def holder_pid(lock_file: str | os.PathLike[str]) -> int | None:
    """The pid the current (or last) holder of ``lock_file`` recorded, or ``None`` if unknown.

    Example:
        >>> holder_pid("/nonexistent.lock") is None
        True
    """
    try:
        return int(_pid_file(Path(lock_file)).read_text().strip())
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def hold_lock(
    lock_file: str | os.PathLike[str], what: str, timeout: float | None = None
) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` (created with its folder) for the ``with`` body.

    When another process holds it, logs ``waiting for another <what> (pid N) holding <lock>``
    and waits: forever when ``timeout`` is ``None``, else up to ``timeout`` seconds and then
    raises :class:`LockTimeoutError`.

    Example:
        >>> import tempfile
        >>> with hold_lock(Path(tempfile.mkdtemp()) / "a.lock", "demo", timeout=1):
        ...     pass
    """
    path = Path(lock_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        pid = holder_pid(path)
        holder = f"pid {pid}" if pid is not None else "pid unknown"
        logger.warning("waiting for another %s (%s) holding %s", what, holder, path)
        try:
            lock.acquire(timeout=-1 if timeout is None else timeout)
        except Timeout:
            raise LockTimeoutError(
                f"another {what} ({holder}) has held {path} for more than {timeout} s. Wait "
                f"for it to finish and run again, or stop it if it is stuck (a killed process "
                "releases the lock by itself); pass a larger timeout to wait longer."
            ) from None
    try:
        with contextlib.suppress(OSError):  # the pid is for messages only
            atomic_write_text(_pid_file(path), str(os.getpid()))
        yield
    finally:
        lock.release()
