"""One activations file: ``.npz`` (plain arrays for any numpy tool) or ``.safetensors`` (exact).

``save_activations`` keeps KempnerForge's one-call API and removes its limits. An ``.npz`` holds
one plain array per name and nothing else, so ``np.load(path)[name]`` is the data: bf16 tensors
(which numpy lacks) are written as float32, which holds every bf16 value exactly, instead of
failing. ``.safetensors`` keeps every dtype bit for bit, and lists of variable-length tensors
(``as_list=True``). Writes are atomic (:mod:`trait_lab.core.atomic`) and loading never
unpickles; .npz files of the older format (bf16 as uint16 bits plus ``__trait_lab__.`` keys)
still load. :func:`trait_lab.io.load_activations` reads these files and shard folders.

Example:
    >>> import tempfile, numpy as np, torch
    >>> d = tempfile.mkdtemp()
    >>> save_activations({"h": torch.ones(2, 3, dtype=torch.bfloat16)}, f"{d}/a.npz")
    >>> np.load(f"{d}/a.npz")["h"].dtype
    dtype('float32')
"""

from __future__ import annotations

import itertools
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeAlias

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from trait_lab.core.atomic import atomic_write
from trait_lab.io.tensor_files import (
    NPY_MAGIC,
    ZIP_MAGIC,
    damaged,
    npz_member_error,
    safetensors_errors,
    sniff,
)

__all__ = ["SUFFIXES", "Activations", "Loaded", "load_activation_file", "save_activations"]

SUFFIXES: tuple[str, ...] = (".npz", ".safetensors")
_PREFIX = "__trait_lab__."
_OFFSETS = _PREFIX + "offsets."  # int64 [n + 1]: a list of n variable-length tensors, flattened
_DTYPE = _PREFIX + "dtype."  # older .npz files only: "bfloat16" marks a uint16 bit pattern
_REMAKE = (
    "Re-create it: rerun the extraction or save_activations call that wrote it (for a shard, "
    "delete its folder and extract again), or delete the file."
)
Activations: TypeAlias = Mapping[str, torch.Tensor | np.ndarray | Sequence[torch.Tensor]]
Loaded: TypeAlias = dict[str, torch.Tensor | list[torch.Tensor]]


def _suffix(path: Path) -> str:
    if path.suffix not in SUFFIXES:
        raise ValueError(
            f"unsupported activation file suffix {path.suffix or '(none)'!r} in {str(path)!r}; "
            f"use one of {', '.join(SUFFIXES)} (.npz for numpy tools, .safetensors for "
            "memory-mapped loading), or a folder written by ActivationWriter"
        )
    return path.suffix


def cpu_copy(t: torch.Tensor) -> torch.Tensor:
    """``t`` detached, on CPU, contiguous, and owning exactly its own bytes (safe to save)."""
    t = t.detach().cpu().contiguous()
    # A view of a bigger buffer would save the whole buffer (safetensors refuses shared storage).
    if t.untyped_storage().nbytes() != t.numel() * t.element_size():
        t = t.clone()
    return t


def _encode(acts: Activations) -> dict[str, torch.Tensor | np.ndarray]:
    """Flatten lists into ``name`` + ``offsets`` entries; tensors come back on CPU, contiguous."""
    if not isinstance(acts, Mapping):
        raise TypeError(f"activations must be a dict name -> tensor, got {type(acts).__name__}")
    out: dict[str, torch.Tensor | np.ndarray] = {}
    for name, value in acts.items():
        if not isinstance(name, str) or not name or name.startswith(_PREFIX):
            raise ValueError(
                f"invalid activation name {name!r}: use a non-empty str not "
                f"starting with {_PREFIX!r}"
            )
        if isinstance(value, torch.Tensor):
            out[name] = cpu_copy(value)
        elif isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                raise TypeError(
                    f"{name!r} is an object array, which needs pickle; convert it "
                    "to a numeric dtype first"
                )
            out[name] = np.ascontiguousarray(value)
        elif isinstance(value, (list, tuple)):
            parts = [cpu_copy(torch.as_tensor(v)) for v in value]
            if any(p.ndim == 0 for p in parts):
                raise ValueError(f"{name!r}: list items must be tensors of ndim >= 1")
            kinds = {(p.dtype, tuple(p.shape[1:])) for p in parts}
            if len(kinds) > 1:
                raise ValueError(
                    f"{name!r}: list items must share dtype and trailing shape, "
                    f"got {sorted(map(str, kinds))}"
                )
            out[name] = torch.cat(parts) if parts else torch.empty(0)
            lengths = torch.tensor([0] + [len(p) for p in parts], dtype=torch.int64)
            out[_OFFSETS + name] = torch.cumsum(lengths, 0)
        else:
            raise TypeError(
                f"{name!r} is a {type(value).__name__}; save a torch.Tensor, a numpy "
                "array, or a list of tensors"
            )
    return out


def _decode(entries: Mapping[str, torch.Tensor]) -> Loaded:
    out: Loaded = {}
    for name, t in entries.items():
        if name.startswith(_PREFIX):
            continue
        offsets = entries.get(_OFFSETS + name)
        if offsets is None:
            out[name] = t
        else:
            bounds = offsets.tolist()
            out[name] = [t[a:b] for a, b in itertools.pairwise(bounds)]
    return out


def _write_npz(arrays: Mapping[str, np.ndarray], tmp: Path) -> None:
    # Our own zip writer: np.savez(**arrays) breaks on a key named "file", and pickles objects.
    with open(tmp, "xb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for key, arr in arrays.items():
            with z.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def _to_numpy(name: str, t: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(t, np.ndarray):
        return t
    if t.dtype == torch.bfloat16:  # numpy has no bf16; float32 holds every bf16 value exactly
        return t.float().numpy()
    try:
        return t.numpy()
    except TypeError as err:
        raise TypeError(
            f"{name!r} has dtype {t.dtype}, which .npz cannot hold; save to "
            ".safetensors instead or cast it"
        ) from err


def _check_npz(acts: Activations, path: Path) -> None:
    """Refuse what a plain ``.npz`` cannot hold as one array per name: lists of tensors."""
    for name, value in acts.items() if isinstance(acts, Mapping) else ():
        if isinstance(value, (list, tuple)):
            raise ValueError(
                f"{name!r} is a list of {len(value)} tensors; {str(path)!r} would need extra "
                "keys to hold it, and an .npz holds one plain array per name. Save to "
                ".safetensors (keeps the list), stack equal-length tensors with torch.stack, "
                "or extract with pad=True for one padded tensor"
            )


def save_activations(acts: Activations, path: str | os.PathLike[str]) -> None:
    """Save ``{name: tensor | array | list of tensors}`` to one file, atomically.

    The format follows the suffix. ``.npz``: one plain numpy array per name, keys exactly the
    names, readable with ``np.load(path)[name]``; bf16 tensors are written as float32 (numpy has
    no bf16; every bf16 value is exact in float32, the file is twice the size, and loading gives
    float32; no warning), other dtypes as they are; lists are refused. ``.safetensors``: every
    dtype bit for bit, and a list of variable-length tensors (``as_list=True``) is stored
    concatenated with an offsets entry and loads back as a list. The file is written to a tmp
    file in the same folder, fsynced, then moved over ``path``: a failed write leaves any old
    file intact. Parent folders are created.

    Example:
        >>> import tempfile, torch
        >>> p = tempfile.mkdtemp() + "/acts.safetensors"
        >>> save_activations({"h": [torch.zeros(3, 4), torch.zeros(5, 4)]}, p)
        >>> [t.shape[0] for t in load_activation_file(p)["h"]]
        [3, 5]
    """
    path = Path(path)
    suffix = _suffix(path)
    if suffix == ".npz":
        _check_npz(acts, path)
    entries = _encode(acts)
    if suffix == ".npz":
        arrays = {name: _to_numpy(name, t) for name, t in entries.items()}
        atomic_write(path, lambda tmp: _write_npz(arrays, tmp))
    else:
        tensors = {
            k: v if isinstance(v, torch.Tensor) else torch.from_numpy(v) for k, v in entries.items()
        }
        atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))


def _load_npz(path: Path) -> dict[str, torch.Tensor]:
    head = sniff(path)
    if head.startswith(NPY_MAGIC):
        raise ValueError(
            f"{str(path)!r} is not an .npz archive (a plain .npy?); "
            "re-save it with save_activations"
        )
    if not head.startswith(ZIP_MAGIC):
        raise damaged(path, ".npz", "not a zip archive", _REMAKE)
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise damaged(path, ".npz", str(exc), _REMAKE) from exc
    fix = "Re-save the data as numeric arrays, e.g. with save_activations."
    entries: dict[str, torch.Tensor] = {}
    with z:
        arrays = {}
        for key in z.files:
            try:
                arrays[key] = z[key]
            except (ValueError, EOFError, OSError, zipfile.BadZipFile) as exc:
                raise npz_member_error(path, z, key, exc, fix) from exc
        # files of the older format: bf16 as uint16 bits, marked by a "__trait_lab__.dtype." key
        markers = {k[len(_DTYPE) :]: str(v) for k, v in arrays.items() if k.startswith(_DTYPE)}
        for key, arr in arrays.items():
            if key.startswith(_DTYPE):
                continue
            if markers.get(key) == "bfloat16":
                entries[key] = torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
            else:
                entries[key] = torch.from_numpy(arr)
    return entries


def load_activation_file(path: str | os.PathLike[str]) -> Loaded:
    """Load one file written by :func:`save_activations` (no pickle; no folders).

    Returns ``{name: tensor}``, or ``{name: list of tensors}`` for lists that were saved
    (.safetensors, or .npz of the older format). bf16 saved to .npz comes back as float32. Use
    :func:`trait_lab.io.load_activations` to read a shard folder as well.

    Example:
        >>> import tempfile, torch
        >>> p = tempfile.mkdtemp() + "/a.npz"
        >>> save_activations({"h": torch.arange(3.0)}, p)
        >>> load_activation_file(p)["h"].tolist()
        [0.0, 1.0, 2.0]
    """
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no activations file at {str(path)!r}; check the path (read a shard folder with "
            "trait_lab.io.load_activations), or run the extraction that writes it"
        )
    if suffix == ".npz":
        return _decode(_load_npz(path))

    with safetensors_errors(path, _REMAKE):
        return _decode(load_file(str(path)))
