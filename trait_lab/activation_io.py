"""Activations on disk: one ``.npz`` / ``.safetensors`` file, or a streamed folder of shards.

The public entry point for both: :func:`save_activations` and the file format live in
:mod:`trait_lab.activation_files`, :class:`ActivationWriter` / :class:`ActivationReader` (a
folder of shards plus ``manifest.json``) in :mod:`trait_lab.activation_shards`, and
:func:`load_activations` reads either.

Example:
    >>> import tempfile, torch
    >>> d = tempfile.mkdtemp()
    >>> save_activations({"h": torch.ones(2, 3, dtype=torch.bfloat16)}, f"{d}/a.npz")
    >>> load_activations(f"{d}/a.npz")["h"].dtype
    torch.bfloat16
"""

from __future__ import annotations

import os
from pathlib import Path

from trait_lab.activation_files import (
    SUFFIXES,
    Activations,
    Loaded,
    load_activation_file,
    save_activations,
)
from trait_lab.activation_shards import MANIFEST, ActivationReader, ActivationWriter, update_digest

__all__ = [
    "MANIFEST",
    "SUFFIXES",
    "ActivationReader",
    "ActivationWriter",
    "Activations",
    "Loaded",
    "load_activations",
    "save_activations",
    "update_digest",
]


def load_activations(path: str | os.PathLike[str]) -> Loaded:
    """Load what :func:`save_activations` or :class:`ActivationWriter` wrote.

    Returns ``{name: tensor}``, or ``{name: list of tensors}`` for lists that were saved. A
    folder with a ``manifest.json`` loads all its shards. Pickle is never used: a file that needs
    it raises ``ValueError``.

    Example:
        >>> import tempfile, torch
        >>> p = tempfile.mkdtemp() + "/a.npz"
        >>> save_activations({"h": torch.arange(3.0)}, p)
        >>> load_activations(p)["h"].tolist()
        [0.0, 1.0, 2.0]
    """
    path = Path(path)
    if path.is_dir():
        return ActivationReader(path).load()
    return load_activation_file(path)
