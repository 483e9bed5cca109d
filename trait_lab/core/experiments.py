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
from functools import partial
from pathlib import Path
from typing import Any

from trait_lab.core.paths import CONFIG_NAME, check_name, config_path, experiments_root
from trait_lab.core.types import ModelVariant

__all__ = [
    "CONFIG_NAME",
    "ExperimentConfig",
    "experiments_root",
    "get_model_variant",
    "load_experiment_config",
]

_KEYS = {"model_variants", "default_variant", "use_chat_template", "description"}
_EXAMPLE = '{"model_variants": {"instruct": {"model": null}}}'


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
        ValueError: bytes that are not UTF-8 JSON, a key written twice, unknown / missing keys
            or values of the wrong type (file and key named), or an experiment or variant name
            that cannot be a folder name.
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
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise ValueError(
            f"{path} must hold a JSON object such as {_EXAMPLE}, got {type(raw).__name__}"
        )
    unknown = set(raw) - _KEYS
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    variants_raw = raw.get("model_variants")
    if not isinstance(variants_raw, dict) or not variants_raw:
        raise ValueError(
            f'{path}: "model_variants" must be a non-empty object such as {_EXAMPLE}, got '
            f"{_short(variants_raw)}"
        )
    variants = {name: _variant(path, name, spec) for name, spec in variants_raw.items()}
    default = raw.get("default_variant", next(iter(variants)))
    if not isinstance(default, str) or default not in variants:
        raise ValueError(
            f"{path}: default_variant {_short(default)} is not one of the variants "
            f"{sorted(variants)}; set it to one of those names"
        )
    use_chat = raw.get("use_chat_template")
    if use_chat is not None and not isinstance(use_chat, bool):
        raise ValueError(
            f"{path}: use_chat_template must be true, false or null, got {_short(use_chat)}"
        )
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise ValueError(
            f"{path}: description must be a string, got {_short(description)}; write it in quotes"
        )
    return ExperimentConfig(
        name=experiment,
        path=path,
        variants=variants,
        default_variant=default,
        use_chat_template=use_chat,
        description=description,
    )


def _read_json(path: Path) -> Any:
    """The JSON value in ``path``; undecodable bytes, bad JSON or repeated keys name the file."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path} is not UTF-8 text ({exc}); save the config as UTF-8 JSON"
        ) from exc
    repeated: list[str] = []
    try:
        value = json.loads(text, object_pairs_hook=partial(_object, repeated))
    except RecursionError as exc:
        raise ValueError(
            f"{path} is nested too deeply to be an experiment config; write it as {_EXAMPLE}"
        ) from exc
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        raise ValueError(
            f"{path} is not valid JSON ({exc}); fix the file, e.g. {_EXAMPLE}"
        ) from exc
    if repeated:
        raise ValueError(
            f"{path}: key(s) {sorted(set(repeated))} appear twice in one object, and JSON would "
            "silently keep the last; keep one of each"
        )
    return value


def _object(repeated: list[str], pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object as a dict, noting in ``repeated`` any key written twice."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            repeated.append(key)
        out[key] = value
    return out


def _variant(path: Path, name: str, spec: Any) -> ModelVariant:
    """``model_variants[name]`` checked: a folder-safe name and an object of model/lora."""
    check_name(f"{path}: model_variants", "variant name", name)
    if not isinstance(spec, dict):
        raise ValueError(
            f'{path}: model_variants.{name} must be an object such as {{"model": null}}, '
            f"got {_short(spec)}"
        )
    if "name" in spec:
        raise ValueError(
            f"{path}: model_variants.{name} has a 'name' key; the variant's name is its key "
            f"{name!r}: remove 'name'"
        )
    try:
        return ModelVariant.from_dict({"name": name, **spec})
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: model_variants.{name}: {exc}") from exc


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (a config value can be huge or deep)."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"<a deeply nested {type(value).__name__}>"
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def get_model_variant(
    experiment: str, variant: str | None = None, root: str | os.PathLike[str] | None = None
) -> ModelVariant:
    """The model variant of an experiment (its ``default_variant`` when ``variant`` is None)."""
    return load_experiment_config(experiment, root).variant(variant)
