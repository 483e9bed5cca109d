"""What an extraction run does: its settings, and the plan checked against the trait and model.

:class:`ExtractionSettings` is what a user chooses (methods, components, layers, position,
split), checked when made (known methods and components, a position that parses, distinct
non-negative layers); :func:`plan_extraction` checks them against a trait and a model before
anything is written (layers within the model's depth, enough validation pairs, enough training
pairs per method, a system-prompt trait for generated responses) and returns an
:class:`ExtractionPlan`: the layers, the position, the train/validation split, the jobs, and the
``inputs.json`` record whose hash tells a rerun whether the outputs on disk were made from the
same inputs. The model enters that hash by its content (:func:`model_fingerprint`: the
weights' hashes), not by the folder it was loaded from, so moving the model cache keeps every
finished extraction.

Example:
    >>> from trait_lab.testing import tiny_model
    >>> from trait_lab.traits.dataset import load_trait
    >>> settings = ExtractionSettings(methods=("mean_diff",), layers=(1,))
    >>> plan = plan_extraction(tiny_model(), load_trait("optimism"), settings)
    >>> plan.jobs
    [('residual', 'mean_diff', 1)]
"""

from __future__ import annotations

import hashlib
import json
import numbers
from dataclasses import asdict, dataclass
from typing import Any

from trait_lab.core.records import check_choice, check_int, invalid, set_field
from trait_lab.extraction.methods import METHODS, get_method
from trait_lab.models.architectures import COMPONENTS
from trait_lab.models.identity import model_identity
from trait_lab.models.manifest import model_fingerprint
from trait_lab.prompts.positions import Position
from trait_lab.traits.dataset import TraitDataset

__all__ = ["ExtractionPlan", "ExtractionSettings", "check_backend", "plan_extraction"]


@dataclass(frozen=True)
class ExtractionSettings:
    """What an extraction run does; part of the inputs hash."""

    methods: tuple[str, ...] = METHODS
    components: tuple[str, ...] = ("residual",)
    layers: tuple[int, ...] | None = None
    position: str | None = None
    val_fraction: float = 0.2
    seed: int = 0
    batch_size: int = 8
    generate_responses: bool = False
    max_new_tokens: int = 32

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"unknown methods {unknown or '[]'}; choose from {', '.join(METHODS)}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        owner = "ExtractionSettings"
        if isinstance(self.components, str) or not self.components:
            raise invalid(
                owner, "components", self.components, "a non-empty list", "Pass e.g. ['residual']."
            )
        for component in self.components:
            check_choice(owner, "components", component, COMPONENTS)
        if self.layers is not None:
            if isinstance(self.layers, (str, int)) or not self.layers:
                fix = "Pass a list such as [6, 12], or None for every layer."
                raise invalid(owner, "layers", self.layers, "a non-empty list of ints", fix)
            for layer in self.layers:
                if isinstance(layer, bool) or not isinstance(layer, numbers.Integral):
                    fix = "Pass ints such as [6, 12], or None for every layer."
                    raise invalid(owner, "layers", layer, "layer indices (ints from 0)", fix)
            layers = tuple(int(layer) for layer in self.layers)
            if len(set(layers)) != len(layers):
                fix = "Name each layer once."
                raise invalid(owner, "layers", self.layers, "distinct layers", fix)
            set_field(self, "layers", layers)
        if self.position is not None:
            Position.parse(self.position)  # a position that does not parse raises here
        check_int(owner, "batch_size", self.batch_size, 1)
        check_int(owner, "max_new_tokens", self.max_new_tokens, 1)
        check_int(owner, "seed", self.seed, -(2**63))


@dataclass(frozen=True)
class ExtractionPlan:
    """One checked extraction: layers, position, split (indices into ``dataset.pairs``)."""

    dataset: TraitDataset
    settings: ExtractionSettings
    model_id: dict[str, Any]
    layers: tuple[int, ...]
    position: str
    train: tuple[int, ...]
    val: tuple[int, ...]
    model_content: str | None = None
    #: the backend that generates the responses (``backend_identity``); None: the model itself
    responses_by: dict[str, Any] | None = None

    @property
    def jobs(self) -> list[tuple[str, str, int]]:
        """``(component, method, layer)`` of every vector, in the order they are computed."""
        s = self.settings
        return [(c, m, layer) for c in s.components for m in s.methods for layer in self.layers]

    def _hash(self, model: dict[str, Any]) -> str:
        trait = {
            "kind": self.dataset.kind,
            "position": self.dataset.recommended_position,
            "pairs": [asdict(p) for p in self.dataset.pairs],
        }
        payload = {"trait": trait, "settings": asdict(self.settings), "model": model}
        if self.responses_by is not None:  # absent otherwise: earlier runs keep their hash
            payload["responses_by"] = self.responses_by
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    @property
    def legacy_hash(self) -> str:
        """The hash earlier trait_lab versions wrote: the model named by its folder path."""
        return self._hash(self.model_id)

    def inputs(self) -> dict[str, Any]:
        """The ``inputs.json`` record: what the outputs are made from, and its ``hash``.

        The hash names the model by its content (``model_content``) when it was loaded from
        a folder, so the same weights in another folder give the same hash.
        """
        model = self.model_id
        if self.model_content is not None:
            model = {**model, "name_or_path": f"sha256:{self.model_content}"}
        pair_ids = [p.id for p in self.dataset.pairs]
        backend = {} if self.responses_by is None else {"responses_by": self.responses_by}
        return {
            "hash": self._hash(model),
            "trait": self.dataset.name,
            "settings": asdict(self.settings),
            "position": self.position,
            "model": self.model_id,
            "model_content": self.model_content,
            "pair_ids": pair_ids,
            "split": {
                "train": [pair_ids[i] for i in self.train],
                "val": [pair_ids[i] for i in self.val],
            },
            **backend,
        }


def check_backend(settings: ExtractionSettings, responses_by: dict[str, Any] | None) -> None:
    """Refuse a responses backend (its identity, ``responses_by``) without generated responses.

    Example:
        >>> check_backend(ExtractionSettings(generate_responses=True), {"backend": "vllm"})
    """
    if responses_by is not None and not settings.generate_responses:
        raise ValueError(
            f"a backend for the responses ({responses_by.get('backend')!r}) is only used with "
            "generate_responses=True; without it the trait's own texts are captured. Pass "
            "generate_responses=True (--generate-responses), or drop the backend."
        )


def plan_extraction(
    model: Any,
    dataset: TraitDataset,
    settings: ExtractionSettings,
    responses_by: dict[str, Any] | None = None,
) -> ExtractionPlan:
    """Check ``settings`` against the trait and the model; raises before any work is done.

    ``responses_by`` identifies the backend that generates the responses when it is not the
    model itself (``generate_responses=True`` only); it enters the inputs hash, so outputs
    made from another backend's responses are never reused.

    Raises:
        ValueError: a layer outside the model, generated responses for a trait that is not a
            system-prompt trait, a responses backend without generated responses, fewer than
            2 validation pairs, or fewer training pairs than a method needs (each message
            says what to change).
    """
    check_backend(settings, responses_by)
    if settings.generate_responses and dataset.kind != "system_prompt":
        raise ValueError(
            f"generate_responses=True needs a system_prompt trait; {dataset.name!r} is a "
            f"{dataset.kind!r} trait whose pairs already carry their responses"
        )
    n_layers = int(model.config.num_hidden_layers)
    layers = tuple(range(n_layers)) if settings.layers is None else tuple(settings.layers)
    outside = [layer for layer in layers if not 0 <= layer < n_layers]
    if outside:
        fix = f"Choose layers from 0 to {n_layers - 1}, or None for all."
        if any(layer < 0 for layer in outside) and all(-n_layers <= la for la in outside):
            fix += f" Layers count from 0: layer -1 is {n_layers - 1}."
        allowed = f"layers of this {n_layers}-layer model (0..{n_layers - 1})"
        raise invalid("ExtractionSettings", "layers", outside, allowed, fix)
    default_position = "response[:]" if settings.generate_responses else None
    position = settings.position or default_position or dataset.recommended_position
    Position.parse(position)  # the trait's own position too
    train_pairs, val_pairs = dataset.split(settings.val_fraction, settings.seed)
    if len(val_pairs) < 2:
        raise ValueError(
            f"trait {dataset.name!r} has {len(dataset.pairs)} pairs, so val_fraction="
            f"{settings.val_fraction} holds out {len(val_pairs)}; effect sizes need at least 2 "
            "validation pairs. Add pairs (20 or more is a good start) or raise val_fraction."
        )
    for name in settings.methods:
        needed = get_method(name).min_per_class
        if len(train_pairs) < needed:
            raise ValueError(
                f"method {name!r} needs at least {needed} training pairs, but trait "
                f"{dataset.name!r} leaves {len(train_pairs)} for training; add pairs or drop "
                "the method"
            )
    index = {pair.id: i for i, pair in enumerate(dataset.pairs)}
    return ExtractionPlan(
        dataset=dataset,
        settings=settings,
        model_id=model_identity(model),
        model_content=model_fingerprint(model_identity(model)["name_or_path"]),
        layers=layers,
        position=position,
        train=tuple(index[p.id] for p in train_pairs),
        val=tuple(index[p.id] for p in val_pairs),
        responses_by=responses_by,
    )
