"""One declaration per on-disk format: its kind, its version and the keys that carry them.

Every JSON file trait_lab writes records the version of its layout (and, where the layout has
a key for it, its kind). A :class:`Schema` declares a format once: :meth:`Schema.stamp` adds
those keys to a payload before it is written, :meth:`Schema.check` refuses a loaded payload of
another kind or version with an error that names the file, what it found, what this trait_lab
reads and the fix. Each format keeps the key names it has always used (``schema`` /
``schema_version``, ``format`` / ``version``, ...), so files written before still load.

Example:
    >>> CAL = Schema("demo.calibration", 1)
    >>> CAL.stamp({"model": "m"})
    {'schema': 'demo.calibration', 'schema_version': 1, 'model': 'm'}
    >>> CAL.check({"schema": "demo.calibration", "schema_version": 2}, "c")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    trait_lab.core.schema.SchemaError: c: schema 'demo.calibration', schema_version 2, ...
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

__all__ = ["Schema", "SchemaError"]


class SchemaError(ValueError):
    """A payload of another kind or version than the one this trait_lab reads."""


@dataclass(frozen=True)
class Schema:
    """An on-disk format: its kind, its current version, and the keys holding them in a file.

    Args:
        kind: The format's name, e.g. ``"trait_lab.massive_calibration"``; shown in errors and,
            when ``kind_key`` is set, written into the file.
        version: The layout version this trait_lab writes and reads (an int >= 1).
        kind_key: The key holding ``kind`` in a file, or ``None`` for a format that keeps no kind.
        version_key: The key holding ``version`` in a file.
        remake: How a user re-creates such a file (shown in the fix), e.g.
            ``"ensure_calibration(...)"``.
        error: The ``ValueError`` subclass :meth:`check` raises, so a module keeps its own.

    Example:
        >>> SHARDS = Schema("demo.shards", 1, kind_key="format", version_key="version")
        >>> SHARDS.problem(SHARDS.stamp({}), "manifest.json") is None
        True
    """

    kind: str
    version: int
    kind_key: str | None = "schema"
    version_key: str = "schema_version"
    remake: str = ""
    error: type[ValueError] = field(default=SchemaError, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind:
            raise ValueError(f"Schema.kind must be a non-empty string, got {self.kind!r}")
        if type(self.version) is not int or self.version < 1:
            raise ValueError(f"Schema.version must be an int >= 1, got {self.version!r}")
        if self.kind_key == self.version_key:
            raise ValueError(f"Schema {self.kind!r}: kind_key and version_key are the same key")

    def stamp(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """``payload`` with the kind and version keys first, ready to be written.

        A payload that already names another kind or version is refused (ValueError).

        Example:
            >>> Schema("demo", 3, kind_key=None).stamp({"a": 1})
            {'schema_version': 3, 'a': 1}
        """
        stamps: dict[str, Any] = {self.kind_key: self.kind} if self.kind_key else {}
        stamps[self.version_key] = self.version
        clash = {k: payload[k] for k in stamps if k in payload and payload[k] != stamps[k]}
        if clash:
            raise ValueError(
                f"cannot stamp {self.kind!r} version {self.version} on a payload that holds "
                f"{clash}; remove those keys (stamp writes them)"
            )
        return {**stamps, **payload}

    def problem(self, payload: object, source: str | os.PathLike[str]) -> str | None:
        """Why ``payload`` (read from ``source``) is not this kind and version; ``None`` if it is.

        Example:
            >>> Schema("demo", 1).problem({"schema": "demo"}, "d.json")  # doctest: +ELLIPSIS
            "d.json: schema 'demo', no 'schema_version' key, but this trait_lab reads version 1..."
        """
        where = os.fspath(source)
        reads = f"this trait_lab reads version {self.version} of {self.kind!r} files"
        how = f" ({self.remake})" if self.remake else ""
        if not isinstance(payload, dict):
            got = type(payload).__name__
            return f"{where}: holds a {got}, not a JSON object, but {reads}. Re-create it{how}."
        found = self._found(payload)
        if self.kind_key is not None and payload.get(self.kind_key) != self.kind:
            fix = f"Pass a {self.kind!r} file, or re-create this one with this trait_lab{how}."
            return f"{where}: {found}, but {reads}. {fix}"
        version = payload.get(self.version_key)
        if type(version) is int and version == self.version:
            return None
        if type(version) is int and version > self.version:
            fix = "A newer trait_lab wrote it: read it with that version, or re-create it with "
            fix += f"this one{how}."
        else:
            fix = f"Re-create it with this trait_lab{how}, or read it with the trait_lab version "
            fix += "that wrote it."
        return f"{where}: {found}, but {reads}. {fix}"

    def check(self, payload: object, source: str | os.PathLike[str]) -> dict[str, Any]:
        """Return ``payload`` if it is this kind and version, else raise :attr:`error`.

        Example:
            >>> Schema("demo", 1, kind_key=None).check({"schema_version": 1, "x": 2}, "d.json")
            {'schema_version': 1, 'x': 2}
        """
        problem = self.problem(payload, source)
        if problem is not None:
            raise self.error(problem)
        return cast("dict[str, Any]", payload)

    def read(
        self,
        path: str | os.PathLike[str],
        *,
        missing: str,
        corrupt: Callable[[str], Exception],
        source: str | os.PathLike[str] | None = None,
    ) -> dict[str, Any]:
        """Load a JSON file of this format and :meth:`check` it (``source`` names it in errors).

        An absent file raises ``FileNotFoundError(missing)``; text that is not JSON raises
        ``corrupt("not valid JSON (...)")``, so each format keeps its own error and advice.

        Example:
            >>> Schema("demo", 1).read("/nonexistent.json", missing="no demo file; make one",
            ...     corrupt=ValueError)
            Traceback (most recent call last):
            ...
            FileNotFoundError: no demo file; make one
        """
        file = Path(path)
        if not file.exists():
            raise FileNotFoundError(missing)
        if file.is_dir():
            raise corrupt("a folder, not a JSON file")
        try:
            payload = json.loads(file.read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as exc:  # bad JSON, not UTF-8, too deep, huge ints
            raise corrupt(f"not valid JSON ({exc})") from exc
        return self.check(payload, file if source is None else source)

    def _found(self, payload: dict[str, Any]) -> str:
        """What ``payload`` says about its kind and version, for an error message."""
        parts = []
        for key in (self.kind_key, self.version_key):
            if key is None:
                continue
            if key not in payload:
                parts.append(f"no {key!r} key")
            elif key == self.version_key and type(payload[key]) is not int:
                value = payload[key]
                parts.append(f"{key} {value!r} (a {type(value).__name__}, not an int)")
            else:
                parts.append(f"{key} {payload[key]!r}")
        return ", ".join(parts)
