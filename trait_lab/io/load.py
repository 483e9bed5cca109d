"""Reading activations saved as one file or as a folder of shards.

Example:
    >>> import tempfile, torch
    >>> from trait_lab.io.activations import save_activations
    >>> d = tempfile.mkdtemp()
    >>> save_activations({"h": torch.ones(2, 3, dtype=torch.bfloat16)}, f"{d}/a.safetensors")
    >>> load_activations(f"{d}/a.safetensors")["h"].dtype
    torch.bfloat16
"""

from __future__ import annotations

import os
from pathlib import Path

from trait_lab.io.activations import Loaded, load_activation_file
from trait_lab.io.shards import ActivationReader


def load_activations(path: str | os.PathLike[str]) -> Loaded:
    """Load what :func:`save_activations` or :class:`ActivationWriter` wrote.

    Returns ``{name: tensor}``, or ``{name: list of tensors}`` for lists that were saved. A
    folder with a ``manifest.json`` loads all its shards. Pickle is never used: a file that needs
    it raises ``ValueError``, and so does a damaged file (truncated, or not the format its suffix
    names), naming the file and how to re-create it.

    Example:
        >>> import tempfile, torch
        >>> p = tempfile.mkdtemp() + "/a.npz"
        >>> from trait_lab.io.activations import save_activations
        >>> save_activations({"h": torch.arange(3.0)}, p)
        >>> load_activations(p)["h"].tolist()
        [0.0, 1.0, 2.0]
    """
    path = Path(path)
    if path.is_dir():
        return ActivationReader(path).load()
    return load_activation_file(path)
