"""The experiments folder layout, in one place: every path trait_lab builds under it.

::

    <experiments>/                                  experiments_root()
      <experiment>/                                 experiment_dir()
        config.json                                 config_path()
        extraction/<trait>/<variant>/               extraction_dir()
          activations/<component>.safetensors       activations_path()
          metadata.json                             metadata_path()
          vectors/<component>/<method>/layer_<L>.safetensors     vector_path()
        steering/<trait>/<variant>/<run>/           steering_dir()
          search/results.jsonl, report/results.jsonl, summary.json
        inference/<variant>/                        inference_dir()
          massive_activations/calibration.json      calibration_path()
          massive_activations/research/<name>/      research_dir()
          projections/<prompt_set>/<i>.json         records_dir(), record_path()

The experiments folder is ``$TRAIT_LAB_EXPERIMENTS`` when set, else the nearest
``experiments/`` folder at or above the working directory (so notebooks in ``notebooks/`` find
the repo's ``experiments/``). Every name put into a path is checked by :func:`check_name`
(non-empty, printable, no ``/`` or ``\\``, no ``..``, no leading dot) and every layer by
``check_int``, so a name can never point outside its folder.

Example:
    >>> extraction_dir("demo", "optimism", "instruct", root="/x").as_posix()
    '/x/demo/extraction/optimism/instruct'
    >>> vector_path(Path("out"), "residual", "probe", 12).as_posix()
    'out/vectors/residual/probe/layer_12.safetensors'
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from trait_lab.core.records import check_int, invalid

__all__ = [
    "CONFIG_NAME",
    "activations_dir",
    "activations_path",
    "calibration_path",
    "check_name",
    "config_path",
    "experiment_dir",
    "experiments_root",
    "extraction_dir",
    "inference_dir",
    "metadata_path",
    "record_path",
    "records_dir",
    "research_dir",
    "steering_dir",
    "vector_path",
    "vectors_dir",
]

CONFIG_NAME = "config.json"

_ALLOWED = "a non-empty, printable folder name without '/', '\\' or '..' and not starting with '.'"


def check_name(owner: str, name: str, value: Any) -> str:
    """``value`` when it is safe as one folder or file name, else a ``ValueError`` naming it.

    Example:
        >>> check_name("extraction_dir", "trait", "optimism")
        'optimism'
        >>> check_name("extraction_dir", "trait", "../x")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: extraction_dir.trait='../x' is invalid: expected a non-empty, ... e.g. to 'x'.
    """
    if (
        not isinstance(value, str)
        or not value.strip()
        or not value.isprintable()
        or "/" in value
        or "\\" in value
        or ".." in value
        or value.startswith(".")
    ):
        if isinstance(value, str):
            hint = re.sub(r"[^\w-]+", "_", value).strip("_") or "my_name"
            fix = f"The {name} becomes a folder on disk; rename it, e.g. to {hint!r}."
        else:
            fix = f"Pass the {name} as a str."
        raise invalid(owner, name, value, _ALLOWED, fix)
    return value


def experiments_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding experiments: ``root``, else ``$TRAIT_LAB_EXPERIMENTS``, else searched.

    Example:
        >>> experiments_root("/data/experiments").as_posix()
        '/data/experiments'
    """
    if root is not None:
        return Path(root)
    env = os.environ.get("TRAIT_LAB_EXPERIMENTS")
    if env:
        return Path(env)
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        candidate = folder / "experiments"
        if candidate.is_dir():
            return candidate
    return here / "experiments"


def experiment_dir(experiment: str, root: str | os.PathLike[str] | None = None) -> Path:
    """``<experiments>/<experiment>``.

    Example:
        >>> experiment_dir("demo", root="/x").as_posix()
        '/x/demo'
    """
    return experiments_root(root) / check_name("experiment_dir", "experiment", experiment)


def config_path(experiment: str, root: str | os.PathLike[str] | None = None) -> Path:
    """``<experiments>/<experiment>/config.json``.

    Example:
        >>> config_path("demo", root="/x").as_posix()
        '/x/demo/config.json'
    """
    return experiment_dir(experiment, root) / CONFIG_NAME


def extraction_dir(
    experiment: str, trait: str, variant: str, root: str | os.PathLike[str] | None = None
) -> Path:
    """``<experiments>/<experiment>/extraction/<trait>/<variant>``.

    Example:
        >>> extraction_dir("demo", "optimism", "instruct", root="/x").name
        'instruct'
    """
    trait = check_name("extraction_dir", "trait", trait)
    variant = check_name("extraction_dir", "variant", variant)
    return experiment_dir(experiment, root) / "extraction" / trait / variant


def steering_dir(
    experiment: str,
    trait: str,
    variant: str,
    run: str = "default",
    root: str | os.PathLike[str] | None = None,
) -> Path:
    """``<experiments>/<experiment>/steering/<trait>/<variant>/<run>`` (steering evaluation).

    Example:
        >>> steering_dir("demo", "optimism", "instruct", root="/x").as_posix()
        '/x/demo/steering/optimism/instruct/default'
    """
    names = {"trait": trait, "variant": variant, "run": run}
    trait, variant, run = (check_name("steering_dir", k, v) for k, v in names.items())
    return experiment_dir(experiment, root) / "steering" / trait / variant / run


def activations_dir(out_dir: str | os.PathLike[str]) -> Path:
    """``<extraction folder>/activations``.

    Example:
        >>> activations_dir("out").as_posix()
        'out/activations'
    """
    return Path(out_dir) / "activations"


def activations_path(out_dir: str | os.PathLike[str], component: str) -> Path:
    """``<extraction folder>/activations/<component>.safetensors``.

    Example:
        >>> activations_path("out", "residual").as_posix()
        'out/activations/residual.safetensors'
    """
    component = check_name("activations_path", "component", component)
    return activations_dir(out_dir) / f"{component}.safetensors"


def metadata_path(out_dir: str | os.PathLike[str]) -> Path:
    """``<extraction folder>/metadata.json``: the extraction's ``ActivationMetadata``.

    Example:
        >>> metadata_path("out").as_posix()
        'out/metadata.json'
    """
    return Path(out_dir) / "metadata.json"


def vectors_dir(out_dir: str | os.PathLike[str]) -> Path:
    """``<extraction folder>/vectors``.

    Example:
        >>> vectors_dir("out").as_posix()
        'out/vectors'
    """
    return Path(out_dir) / "vectors"


def vector_path(out_dir: str | os.PathLike[str], component: str, method: str, layer: int) -> Path:
    """``<extraction folder>/vectors/<component>/<method>/layer_<L>.safetensors``.

    Example:
        >>> vector_path("out", "residual", "probe", 12).name
        'layer_12.safetensors'
    """
    component = check_name("vector_path", "component", component)
    method = check_name("vector_path", "method", method)
    layer = check_int("vector_path", "layer", layer)
    return vectors_dir(out_dir) / component / method / f"layer_{layer}.safetensors"


def inference_dir(
    experiment: str, variant: str, root: str | os.PathLike[str] | None = None
) -> Path:
    """``<experiments>/<experiment>/inference/<variant>``.

    Example:
        >>> inference_dir("demo", "instruct", root="/x").as_posix()
        '/x/demo/inference/instruct'
    """
    variant = check_name("inference_dir", "variant", variant)
    return experiment_dir(experiment, root) / "inference" / variant


def calibration_path(
    experiment: str, variant: str, root: str | os.PathLike[str] | None = None
) -> Path:
    """``<experiments>/<experiment>/inference/<variant>/massive_activations/calibration.json``.

    Example:
        >>> calibration_path("demo", "instruct", root="/x").as_posix()
        '/x/demo/inference/instruct/massive_activations/calibration.json'
    """
    return inference_dir(experiment, variant, root) / "massive_activations" / "calibration.json"


def research_dir(
    experiment: str, variant: str, name: str, root: str | os.PathLike[str] | None = None
) -> Path:
    """``.../inference/<variant>/massive_activations/research/<name>`` (research calibrations).

    Example:
        >>> research_dir("demo", "instruct", "borderline", root="/x").as_posix()
        '/x/demo/inference/instruct/massive_activations/research/borderline'
    """
    name = check_name("research_dir", "name", name)
    return calibration_path(experiment, variant, root).parent / "research" / name


def records_dir(
    experiment: str, variant: str, prompt_set: str, root: str | os.PathLike[str] | None = None
) -> Path:
    """``<experiments>/<experiment>/inference/<variant>/projections/<prompt_set>``.

    Example:
        >>> records_dir("demo", "instruct", "smoke", root="/x").as_posix()
        '/x/demo/inference/instruct/projections/smoke'
    """
    prompt_set = check_name("records_dir", "prompt_set", prompt_set)
    return inference_dir(experiment, variant, root) / "projections" / prompt_set


def record_path(folder: str | os.PathLike[str], index: int) -> Path:
    """The projection record of prompt ``index`` in a :func:`records_dir` folder.

    Example:
        >>> record_path("smoke", 3).as_posix()
        'smoke/3.json'
    """
    return Path(folder) / f"{check_int('record_path', 'index', index)}.json"
