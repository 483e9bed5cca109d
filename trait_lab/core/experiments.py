"""Experiment configs: ``experiments/<name>/config.json`` names the model variants.

A config looks like::

    {
      "model_variants": {
        "instruct": {"model": null},
        "base": {"model": "/models/SmolLM2-135M", "lora": null}
      },
      "default_variant": "instruct",
      "use_chat_template": null
    }

``"model": null`` is the embedded default model. Where the experiments folder is, and the
layout inside it, is :mod:`trait_lab.core.paths`.

Example:
    >>> import json, pathlib, tempfile
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> (root / "demo").mkdir()
    >>> _ = (root / "demo" / "config.json").write_text(json.dumps(
    ...     {"model_variants": {"instruct": {"model": None}}, "default_variant": "instruct"}))
    >>> get_model_variant("demo", root=root)
    ModelVariant(name='instruct', model=None, lora=None)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from trait_lab.core.paths import CONFIG_NAME, config_path, experiments_root
from trait_lab.core.types import ModelVariant

__all__ = [
    "CONFIG_NAME",
    "ExperimentConfig",
    "experiments_root",
    "get_model_variant",
    "load_experiment_config",
]

_KEYS = {"model_variants", "default_variant", "use_chat_template", "description"}


@dataclass(frozen=True)
class ExperimentConfig:
    """A parsed ``config.json``."""

    name: str
    path: Path
    variants: dict[str, ModelVariant]
    default_variant: str
    use_chat_template: bool | None = None
    description: str = ""

    def variant(self, name: str | None = None) -> ModelVariant:
        """The named variant (default: ``default_variant``), with the choices listed if unknown."""
        key = self.default_variant if name is None else name
        if key not in self.variants:
            raise ValueError(
                f"experiment {self.name!r} has no model variant {key!r}; variants: "
                f"{sorted(self.variants)} (defined in {self.path})"
            )
        return self.variants[key]


def load_experiment_config(
    experiment: str, root: str | os.PathLike[str] | None = None
) -> ExperimentConfig:
    """Read and validate ``<root>/<experiment>/config.json``.

    Raises:
        FileNotFoundError: no such experiment (the existing ones are listed).
        ValueError: malformed JSON, unknown / missing keys (file and key named), or an
            experiment name that cannot be a folder name.
    """
    base = experiments_root(root)
    path = config_path(experiment, root)
    if not path.is_file():
        existing = sorted(p.parent.name for p in base.glob(f"*/{CONFIG_NAME}"))
        raise FileNotFoundError(
            f"no experiment config at {path}; experiments under {base}: {existing or 'none'}. "
            f"Create {path} (see trait_lab.core.experiments for the format) or set "
            "TRAIT_LAB_EXPERIMENTS to the folder holding your experiments."
        )
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(raw).__name__}")
    unknown = set(raw) - _KEYS
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    variants_raw = raw.get("model_variants")
    if not isinstance(variants_raw, dict) or not variants_raw:
        raise ValueError(
            f'{path}: "model_variants" must be a non-empty object such as '
            '{"instruct": {"model": null}}'
        )
    variants = {}
    for name, spec in variants_raw.items():
        if not isinstance(spec, dict):
            raise ValueError(f"{path}: model_variants.{name} must be an object, got {spec!r}")
        try:
            variants[name] = ModelVariant.from_dict({"name": name, **spec})
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: model_variants.{name}: {exc}") from exc
    default = raw.get("default_variant", next(iter(variants)))
    if default not in variants:
        raise ValueError(
            f"{path}: default_variant {default!r} is not one of the variants {sorted(variants)}"
        )
    use_chat = raw.get("use_chat_template")
    if use_chat is not None and not isinstance(use_chat, bool):
        raise ValueError(f"{path}: use_chat_template must be true, false or null, got {use_chat!r}")
    return ExperimentConfig(
        name=experiment,
        path=path,
        variants=variants,
        default_variant=default,
        use_chat_template=use_chat,
        description=str(raw.get("description", "")),
    )


def get_model_variant(
    experiment: str, variant: str | None = None, root: str | os.PathLike[str] | None = None
) -> ModelVariant:
    """The model variant of an experiment (its ``default_variant`` when ``variant`` is None)."""
    return load_experiment_config(experiment, root).variant(variant)
