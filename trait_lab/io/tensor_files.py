"""Opening tensor files that may be damaged or hostile, without ever unpickling.

Each reader looks at a file's first bytes before parsing it. Bytes that are not what the suffix
promises (safetensors, ``.npy``, ``.npz``, a torch archive), or a file cut short, raise a
``ValueError`` naming the file, what it should be and how to re-create it; only a file that
really is a well-formed pickle stream of objects is refused as "needs pickle". Nothing here
runs an unpickler: ``.npy``/``.npz`` load with ``allow_pickle=False``, torch files with
``weights_only=True``, and pickle streams are only scanned opcode by opcode (``pickletools``).

Example:
    >>> import tempfile
    >>> from safetensors.torch import load_file
    >>> path = tempfile.mkdtemp() + "/v.safetensors"
    >>> _ = open(path, "wb").write(b"not a tensor file")
    >>> with safetensors_errors(path, "Re-create it."):  # doctest: +ELLIPSIS
    ...     load_file(path)
    Traceback (most recent call last):
    ...
    ValueError: '...v.safetensors' is not a readable safetensors file (...): ... Re-create it.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import pickletools
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from safetensors import SafetensorError

__all__ = [
    "NPY_MAGIC",
    "ZIP_MAGIC",
    "damaged",
    "load_npy",
    "load_torch",
    "needs_pickle",
    "npz_member_error",
    "safetensors_errors",
    "sniff",
]

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK\x03\x04"
_LOAD_ERRORS = (ValueError, EOFError, OSError, RuntimeError, zipfile.BadZipFile, KeyError)


def damaged(path: str | os.PathLike[str], kind: str, detail: str, fix: str) -> ValueError:
    """The error for a file that is not a readable ``kind`` file: path, what it is, the fix."""
    return ValueError(
        f"{os.fspath(path)!r} is not a readable {kind} file ({detail}): it is truncated or "
        f"corrupt (an interrupted write or copy?), or another kind of file. {fix}"
    )


def needs_pickle(path: str | os.PathLike[str], fix: str) -> ValueError:
    """The error for a file that holds pickled objects, which trait_lab never loads."""
    return ValueError(
        f"{os.fspath(path)!r} needs pickle to load, which can run arbitrary code, so it was "
        f"refused. {fix}"
    )


def sniff(path: str | os.PathLike[str], size: int = 8) -> bytes:
    """The first ``size`` bytes of a file (fewer for a shorter file)."""
    with open(path, "rb") as fh:
        return fh.read(size)


@contextlib.contextmanager
def safetensors_errors(path: str | os.PathLike[str], fix: str) -> Iterator[None]:
    """Turn a ``SafetensorError`` raised inside the block into :func:`damaged` for ``path``."""
    try:
        yield
    except SafetensorError as exc:
        raise damaged(path, "safetensors", str(exc), fix) from exc


def _is_pickle_stream(fh: IO[bytes]) -> bool:
    """True when ``fh`` starts with a complete, well-formed pickle (scanned, not executed)."""
    try:
        for _ in pickletools.genops(fh):
            pass
    except Exception:  # any malformed opcode, argument or end of data: not a pickle
        return False
    return True


def _npy_has_objects(fh: IO[bytes]) -> bool:
    """True when ``fh`` holds a well-formed ``.npy`` header of an object dtype (pickled data)."""
    try:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0
        if version != (1, 0):
            read = np.lib.format.read_array_header_2_0
        return bool(read(fh)[2].hasobject)
    except Exception:  # any malformed header: damaged, not pickled
        return False


def load_npy(path: Path, fix: str) -> np.ndarray:
    """A ``.npy`` file's array (``allow_pickle=False``), or a clear error naming ``path``."""
    if sniff(path, len(NPY_MAGIC)) != NPY_MAGIC:
        raise damaged(path, ".npy", "no .npy header", fix)
    try:
        return np.load(path, allow_pickle=False)
    except _LOAD_ERRORS as exc:
        with open(path, "rb") as fh:
            pickled = _npy_has_objects(fh)
        raise (
            needs_pickle(path, fix) if pickled else damaged(path, ".npy", str(exc), fix)
        ) from exc


def npz_member_error(path: Path, z: Any, key: str, exc: Exception, fix: str) -> ValueError:
    """Why member ``key`` of the open ``.npz`` ``z`` did not load: pickled, or damaged."""
    try:
        with z.zip.open(f"{key}.npy") as fh:
            pickled = _npy_has_objects(fh)
    except Exception:  # the archive itself is damaged
        pickled = False
    if pickled:
        return ValueError(
            f"{os.fspath(path)!r}: entry {key!r} is an object array that needs pickle to load; "
            f"trait_lab never unpickles (it can run arbitrary code). {fix}"
        )
    return damaged(path, ".npz", f"entry {key!r}: {exc}", fix)


def load_torch(path: Path, fix: str) -> object:
    """What a torch file holds, loaded with ``weights_only=True``, or a clear error.

    A torch archive (zip) or a legacy torch pickle whose tensors-only load fails is refused as
    needing pickle when its pickle stream is well formed, else reported as damaged; any other
    bytes are damaged without calling ``torch.load`` at all.
    """
    head = sniff(path, 4)
    is_zip = head == ZIP_MAGIC
    if not is_zip and not (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5):
        raise damaged(path, "torch (.pt)", "neither a torch archive nor a torch pickle", fix)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if _torch_pickle_ok(path, is_zip):
            raise needs_pickle(path, fix) from exc
        raise damaged(path, "torch (.pt)", str(exc).splitlines()[0], fix) from exc
    except _LOAD_ERRORS as exc:
        raise damaged(path, "torch (.pt)", str(exc).splitlines()[0], fix) from exc


def _torch_pickle_ok(path: Path, is_zip: bool) -> bool:
    """Whether the pickle stream of a torch file is well formed (so only its content failed)."""
    if not is_zip:
        with open(path, "rb") as fh:
            return _is_pickle_stream(fh)
    try:
        with zipfile.ZipFile(path) as z:
            name = next(n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
            with z.open(name) as fh:
                return _is_pickle_stream(fh)
    except Exception:  # no data.pkl, or a damaged archive
        return False
