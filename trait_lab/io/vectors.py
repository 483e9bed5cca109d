"""Save and load trait vectors safely: safetensors by default, never a pickle.

``save_vector`` writes a ``.safetensors`` file atomically with string metadata (layer, method,
…). ``load_vector`` reads ``.safetensors``, ``.npy`` (``allow_pickle=False``) and ``.pt`` /
``.pth`` files with ``torch.load(weights_only=True)``, so a file that would run code when
unpickled is refused with an explanation instead of executed.

Example:
    >>> import tempfile, torch
    >>> path = tempfile.mkdtemp() + "/v.safetensors"
    >>> save_vector(torch.ones(4, dtype=torch.bfloat16), path, layer=3, method="probe")
    >>> vec, meta = load_vector(path, with_metadata=True)
    >>> vec.dtype, meta["layer"]
    (torch.bfloat16, '3')
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from trait_lab.core.atomic import atomic_write
from trait_lab.io.tensor_files import load_npy, load_torch, safetensors_errors
from trait_lab.math.checks import tensor_arg

SUFFIXES = (".safetensors", ".pt", ".pth", ".npy")
_KEY = "vector"
_REMAKE = (
    "Re-create it: rerun the extraction that wrote it (trait-lab extract), or delete the file "
    "and save the vector again with trait_lab.io.vectors.save_vector."
)
_RESAVE = (
    "If you trust where it came from, load it yourself and re-save the tensor with "
    "trait_lab.io.vectors.save_vector(tensor, 'name.safetensors'); if it is damaged, delete it "
    "and rerun the extraction that wrote it."
)


def save_vector(
    vector: torch.Tensor | np.ndarray, path: str | os.PathLike[str], **metadata: Any
) -> None:
    """Write one vector (any real dtype, bf16 included) to ``.safetensors``, atomically.

    ``metadata`` values are stored as strings in the safetensors header. A vector with NaN or
    infinite entries, complex values or no entries is refused before anything is written.
    """

    target = Path(path)
    if target.suffix != ".safetensors":
        raise ValueError(
            f"save_vector writes .safetensors files, got {target.name!r}; use a name ending "
            "in .safetensors (it stores bf16 and metadata, and loads without pickle)"
        )
    name = f"the vector to save at {str(target)!r}"
    tensor_arg(vector, name, (1, 2), "[hidden] or [n, hidden] (a vector file holds one of those)")
    tensor = torch.as_tensor(vector).detach().to("cpu").contiguous()
    meta = {str(k): str(v) for k, v in metadata.items()}
    atomic_write(target, lambda tmp: save_file({_KEY: tensor}, str(tmp), metadata=meta))


def load_vector(
    path: str | os.PathLike[str], *, with_metadata: bool = False
) -> torch.Tensor | tuple[torch.Tensor, dict[str, str]]:
    """Load a vector without ever unpickling arbitrary objects.

    Raises:
        FileNotFoundError: no such file.
        ValueError: an unsupported suffix, a file holding several tensors under unknown keys,
            a damaged file (truncated, or not the format its suffix says), or a file that
            needs pickle (which could run code) — re-save it with ``save_vector`` from a
            trusted session.
    """
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"no vector file at {source}")
    suffix = source.suffix
    meta: dict[str, str] = {}
    if suffix == ".safetensors":
        with safetensors_errors(source, _REMAKE), safe_open(str(source), framework="pt") as handle:
            keys = list(handle.keys())
            meta = dict(handle.metadata() or {})
            key = _KEY if _KEY in keys else (keys[0] if len(keys) == 1 else None)
            if key is None:
                raise ValueError(
                    f"{source} holds {len(keys)} tensors {keys[:5]}; a vector file holds one "
                    f"(named {_KEY!r}). Use trait_lab.load_activations for tensor collections."
                )
            tensor = handle.get_tensor(key)
    elif suffix == ".npy":
        tensor = torch.from_numpy(load_npy(source, _RESAVE))
    elif suffix in (".pt", ".pth"):
        loaded = load_torch(source, _RESAVE)
        if isinstance(loaded, dict) and len(loaded) == 1:
            loaded = next(iter(loaded.values()))
        if not isinstance(loaded, torch.Tensor):
            raise ValueError(
                f"{source} holds a {type(loaded).__name__}, not a tensor; save the vector "
                "itself (save_vector) rather than a dict or object"
            )
        tensor = loaded
    else:
        raise ValueError(
            f"unsupported vector file {source.name!r}; allowed suffixes: {', '.join(SUFFIXES)}"
        )
    return (tensor, meta) if with_metadata else tensor
