"""What a model is, as a record: ``ModelConfig`` (name, architecture, depth, width, dtype).

The fields are those :func:`trait_lab.models.identity.model_identity` reads from a loaded model;
:meth:`ModelConfig.from_identity` turns that dict into the record.

Example:
    >>> cfg = ModelConfig("HuggingFaceTB/SmolLM2-135M-Instruct", "llama", 30, 576, "bfloat16")
    >>> ModelConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trait_lab.core.records import Record, check_choice, check_int, check_str, invalid, set_field
from trait_lab.core.types import DTYPES

__all__ = ["ModelConfig"]

_IDENTITY_KEYS = ("name_or_path", "model_type", "n_layers", "hidden", "dtype")


@dataclass(frozen=True)
class ModelConfig(Record):
    """A model's name (Hub id or path), ``model_type``, layer count, hidden size and dtype.

    Example:
        >>> ModelConfig("gpt2", "gpt2", 12, 768).dtype
        'float32'
    """

    name: str
    model_type: str
    n_layers: int
    hidden_dim: int
    dtype: str = "float32"

    def __post_init__(self) -> None:
        o = "ModelConfig"
        check_str(o, "name", self.name)
        check_str(o, "model_type", self.model_type)
        for name in ("n_layers", "hidden_dim"):
            set_field(self, name, check_int(o, name, getattr(self, name), minimum=1))
        dtype = self.dtype.removeprefix("torch.") if isinstance(self.dtype, str) else self.dtype
        set_field(self, "dtype", check_choice(o, "dtype", dtype, DTYPES))

    @classmethod
    def from_identity(cls, identity: Mapping[str, Any]) -> ModelConfig:
        """The record of a :func:`trait_lab.models.identity.model_identity` dict.

        Example:
            >>> ModelConfig.from_identity({"name_or_path": "", "model_type": "llama",
            ...     "n_layers": 3, "hidden": 32, "dtype": "torch.float32"}).name
            'llama'
        """
        if not isinstance(identity, Mapping) or any(k not in identity for k in _IDENTITY_KEYS):
            allowed = f"a dict with keys {list(_IDENTITY_KEYS)}"
            fix = "Pass trait_lab.models.identity.model_identity(model)."
            raise invalid("ModelConfig", "identity", identity, allowed, fix)
        return cls(
            name=str(identity["name_or_path"] or identity["model_type"]),
            model_type=identity["model_type"],
            n_layers=identity["n_layers"],
            hidden_dim=identity["hidden"],
            dtype=identity["dtype"],
        )
