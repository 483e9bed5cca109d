"""Atomic file writes: a reader sees the old file or the new one, never a half-written one.

Every file trait_lab writes (activation files, shard manifests, record JSON, the model cache)
goes through :func:`atomic_write`: the data goes to a hidden temporary file in the target's
folder, is fsynced, then moved over the target with ``os.replace``, and the folder is fsynced so
the rename survives a crash. On any failure the temporary file is deleted and an old file at
the target is left untouched. Temporary files are named ``.<name>.<random>.tmp``
(:data:`TEMP_GLOB` finds those an interrupted process left behind).

Example:
    >>> import tempfile
    >>> path = atomic_write_text(tempfile.mkdtemp() + "/note.txt", "hello\\n")
    >>> path.read_text()
    'hello\\n'
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["TEMP_GLOB", "atomic_write", "atomic_write_json", "atomic_write_text", "make_folder"]

TEMP_GLOB = ".*.tmp"
"""Glob matching the temporary files :func:`atomic_write` creates (and deletes on failure)."""


def _fsync_folder(folder: Path) -> None:
    """Persist a rename in ``folder``; a no-op where the OS cannot open folders (Windows)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def make_folder(
    folder: str | os.PathLike[str], target: str | os.PathLike[str] | None = None
) -> Path:
    """Create ``folder`` and its parents (if missing); returns it as a ``Path``.

    A file where a folder must be (``folder`` itself or one of its parents) raises
    ``NotADirectoryError`` naming that file, and ``target`` (what is being written) if given,
    before anything is created.

    Example:
        >>> import tempfile
        >>> make_folder(tempfile.mkdtemp() + "/a/b").is_dir()
        True
    """
    folder = Path(folder)
    for place in (folder, *folder.parents):  # the nearest existing one decides
        try:  # one stat: another process may create the folder between two checks
            kind = place.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISDIR(kind):
            break
        what = f"write {os.fspath(target)!r}" if target else f"create the folder {str(folder)!r}"
        raise NotADirectoryError(
            f"cannot {what}: {str(place)!r} is a file, not a folder; choose a path in another "
            f"folder, or move or rename the file {str(place)!r}"
        )
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Create ``path`` through ``write(tmp)``, atomically; returns ``path`` as a ``Path``.

    ``write`` gets the path of a temporary file that does not exist yet, in the same folder as
    ``path``, and must create it (so ``open(tmp, "xb")`` and libraries that take a filename both
    work). The file is then fsynced and moved over ``path``. If ``write``, the fsync or the
    rename raises, the temporary file is removed, the exception propagates, and any old file at
    ``path`` is unchanged. Missing parent folders are created; a ``path`` that is a folder
    (``IsADirectoryError``) or whose parent is a file (``NotADirectoryError``) is refused
    before anything is written, naming ``path`` and the fix.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "data.bin"
        >>> atomic_write(target, lambda tmp: tmp.write_bytes(b"abc")).read_bytes()
        b'abc'
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(
            f"cannot write {str(path)!r}: it is a folder, not a file; pass a file path (e.g. "
            f"{str(path / 'name')!r}), or move the folder away"
        )
    make_folder(path.parent, path)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`); returns ``path``.

    Example:
        >>> import tempfile
        >>> atomic_write_text(tempfile.mkdtemp() + "/a.txt", "hi").read_text()
        'hi'
    """

    def write(tmp: Path) -> None:
        with open(tmp, "x", encoding=encoding) as fh:
            fh.write(text)

    return atomic_write(path, write)


def atomic_write_json(path: str | os.PathLike[str], obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``obj`` as strict JSON plus a final newline, atomically; returns ``path``.

    The text is built before anything touches the disk, so an object JSON cannot hold (NaN,
    infinity, a set, ...) raises ``ValueError``/``TypeError`` and leaves any old file intact.

    Example:
        >>> import tempfile
        >>> atomic_write_json(tempfile.mkdtemp() + "/a.json", {"n": 1}, indent=None).read_text()
        '{"n": 1}\\n'
    """
    text = json.dumps(obj, indent=indent, allow_nan=False) + "\n"
    return atomic_write_text(path, text)
