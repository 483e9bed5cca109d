"""Reading the ``ActivationMetadata`` an extraction wrote: ``load_activation_metadata``.

``trait-lab extract`` (:func:`trait_lab.extraction.pipeline.extract_trait`) writes
``<experiments>/<experiment>/extraction/<trait>/<variant>/metadata.json`` when it finishes:
the model's depth and width, the captured layers and the mean activation norm per layer.

Example:
    >>> meta = load_activation_metadata("demo", "optimism", "instruct")  # doctest: +SKIP
    >>> meta.n_layers, meta.hidden_dim, meta.captured_layers  # doctest: +SKIP
    (30, 576, (6, 9, 12))
"""

from __future__ import annotations

import os

from trait_lab.core.experiments import get_model_variant
from trait_lab.core.paths import extraction_dir, metadata_path
from trait_lab.core.types import ActivationMetadata, ModelVariant, load_json

__all__ = ["load_activation_metadata"]


def load_activation_metadata(
    experiment: str,
    trait: str,
    variant: str | ModelVariant | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
) -> ActivationMetadata:
    """The :class:`ActivationMetadata` of an experiment's extracted trait.

    ``variant`` is a variant name of the experiment's config, a :class:`ModelVariant` (as
    ``get_model_variant`` returns), or ``None`` for the config's default variant. Read from
    the extraction folder under ``root`` (default: the experiments folder, see
    :mod:`trait_lab.core.paths`).

    Raises:
        FileNotFoundError: nothing extracted yet (the message names the path and the command),
            or no experiment config (when ``variant`` is not a ``ModelVariant``).
        ValueError: an unknown variant, a name that cannot be a folder, or a damaged or
            foreign ``metadata.json``.

    Example:
        >>> v = ModelVariant("instruct")
        >>> load_activation_metadata("demo", "optimism", v, root="/x")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: no activation metadata at /x/...; run `trait-lab extract ...` first ...
    """
    if isinstance(variant, ModelVariant):
        name = variant.name
    else:  # checked against the experiment's config: an unknown name lists the variants
        name = get_model_variant(experiment, variant, root).name
    path = metadata_path(extraction_dir(experiment, trait, name, root))
    if not path.is_file():
        raise FileNotFoundError(
            f"no activation metadata at {path}; run `trait-lab extract --experiment "
            f"{experiment} --trait {trait} --variant {name}` first (it writes this file when "
            "the extraction finishes)"
        )
    return load_json(ActivationMetadata, path)
