"""What a model is, for fingerprints and records: one definition used by every output writer.

Example:
    >>> from trait_lab.testing import tiny_model
    >>> model_identity(tiny_model())["model_type"]
    'llama'
"""

from __future__ import annotations

from typing import Any

from torch import nn


def model_name(model: nn.Module) -> str:
    """The model's ``name_or_path``, or its ``model_type`` when it has none.

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> model_name(tiny_model("gpt2"))
        'gpt2'
    """
    config = getattr(model, "config", None)
    return str(getattr(config, "_name_or_path", "") or getattr(config, "model_type", "unknown"))


def model_identity(model: nn.Module) -> dict[str, Any]:
    """Name, architecture, depth, width and dtype of a Hugging Face model."""
    config: Any = model.config
    return {
        "name_or_path": str(getattr(config, "_name_or_path", "")),
        "model_type": config.model_type,
        "n_layers": int(config.num_hidden_layers),
        "hidden": int(config.hidden_size),
        "dtype": str(next(model.parameters()).dtype),
    }
