"""Typed records shared across trait_lab: which vector, how to combine vectors, results, metadata.

Every record is a frozen dataclass that checks itself when built and round-trips through a
JSON-safe dict. ``from_dict`` is strict: unknown or missing keys are errors, never ignored.
``save_json`` / ``load_json`` wrap a record in the :data:`RECORD_SCHEMA` envelope and write files
atomically.

Example:
    >>> spec = VectorSpec(layer=9, component="residual", method="probe")
    >>> VectorSpec.from_dict(spec.to_dict()) == spec
    True
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from trait_lab.core.atomic import atomic_write_json
from trait_lab.core.paths import check_name
from trait_lab.core.records import (
    Record,
    check_choice,
    check_float,
    check_int,
    check_items,
    check_opt_float,
    check_str,
    invalid,
    set_field,
)
from trait_lab.core.schema import Schema

RECORD_SCHEMA = Schema("trait_lab.record", 1, kind_key=None, remake="save_json(record, path)")
"""The file :func:`save_json` writes: ``{"schema_version": 1, "type": "VectorSpec", "data": ...}``.

The record's class goes under ``"type"``; :func:`load_json` refuses any other version."""

COMPONENTS: tuple[str, ...] = (
    "residual",
    "block_input",
    "attn_contribution",
    "mlp_contribution",
    "k_proj",
    "v_proj",
)
SOURCES: tuple[str, ...] = ("extraction", "steering")
DTYPES: tuple[str, ...] = ("float16", "bfloat16", "float32", "float64")

_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]+")
T = TypeVar("T", bound=Record)


def _location(owner: str, obj: Any) -> None:
    """Check the layer/component/position/method fields shared by VectorSpec and VectorResult."""
    set_field(obj, "layer", check_int(owner, "layer", obj.layer))
    check_choice(owner, "component", obj.component, COMPONENTS)
    check_str(owner, "position", obj.position)
    check_str(owner, "method", obj.method)


# --- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VectorSpec(Record):
    """One trait vector: where it was taken and how much it counts.

    ``weight`` is the steering coefficient, or the relative weight inside a projection ensemble.

    Example:
        >>> VectorSpec(9, "attn_contribution", "response[:]", "probe", 0.5).layer
        9
    """

    layer: int
    component: str = "residual"
    position: str = "response[:]"
    method: str = "probe"
    weight: float = 1.0

    def __post_init__(self) -> None:
        _location("VectorSpec", self)
        set_field(self, "weight", check_float("VectorSpec", "weight", self.weight))


@dataclass(frozen=True)
class ProjectionConfig(Record):
    """A weighted set of vectors to project onto; one vector is just an ensemble of one.

    Example:
        >>> ProjectionConfig.single(9, "residual", "response[:]", "probe").is_ensemble
        False
    """

    vectors: tuple[VectorSpec, ...]

    def __post_init__(self) -> None:
        fix = "Pass [VectorSpec(...), ...], or use ProjectionConfig.single(...) for one vector."
        if isinstance(self.vectors, VectorSpec):
            raise invalid("ProjectionConfig", "vectors", self.vectors, "a list of VectorSpec", fix)
        vecs = check_items("ProjectionConfig", "vectors", self.vectors, ["VectorSpec(9)"])
        for i, vec in enumerate(vecs):
            if not isinstance(vec, VectorSpec):
                raise invalid("ProjectionConfig", f"vectors[{i}]", vec, "a VectorSpec", fix)
        set_field(self, "vectors", tuple(vecs))

    @classmethod
    def single(
        cls,
        layer: int,
        component: str = "residual",
        position: str = "response[:]",
        method: str = "probe",
        weight: float = 1.0,
    ) -> ProjectionConfig:
        """Build a config holding one vector.

        Example:
            >>> ProjectionConfig.single(9, weight=0.9).vectors[0].weight
            0.9
        """
        return cls((VectorSpec(layer, component, position, method, weight),))

    @property
    def is_ensemble(self) -> bool:
        """True when the config combines more than one vector."""
        return len(self.vectors) > 1

    @property
    def normalized_weights(self) -> list[float]:
        """Weights scaled to sum to 1, for a weighted-average projection.

        Raises ValueError if a weight is negative or all weights are 0.

        Example:
            >>> config = ProjectionConfig([VectorSpec(1, weight=3.0), VectorSpec(2, weight=1.0)])
            >>> config.normalized_weights
            [0.75, 0.25]
        """
        weights = [v.weight for v in self.vectors]
        for i, w in enumerate(weights):
            if w < 0:
                raise ValueError(
                    f"ProjectionConfig.vectors[{i}].weight={w!r} is negative; normalized_weights "
                    f"needs weights >= 0 because they are shares of a weighted average. Use a "
                    f"positive weight and, to flip the direction, negate the vector itself."
                )
        if sum(weights) == 0:
            raise ValueError(
                f"ProjectionConfig weights {weights} sum to 0, so they cannot be normalised. "
                f"Give at least one vector a positive weight."
            )
        return [w / sum(weights) for w in weights]

    @classmethod
    def _decode(cls, data: dict[str, Any]) -> dict[str, Any]:
        if isinstance(data["vectors"], (list, tuple)):
            vecs = []
            for i, item in enumerate(data["vectors"]):
                try:
                    vecs.append(
                        item if isinstance(item, VectorSpec) else VectorSpec.from_dict(item)
                    )
                except ValueError as err:
                    raise ValueError(f"ProjectionConfig.vectors[{i}]: {err}") from err
            data["vectors"] = vecs
        return data


@dataclass(frozen=True)
class VectorResult(Record):
    """A scored vector, as returned by vector selection.

    Extraction scores (``accuracy``, ``effect_size``, ``polarity_correct``) are optional;
    ``delta``, ``coherence`` and the recommended steering ``coefficient`` (signed, residual
    units) are required when ``source == "steering"`` and forbidden otherwise.

    Example:
        >>> r = VectorResult(9, "residual", "response[:]", "probe", "steering", delta=12.0,
        ...                  coherence=80.0, coefficient=24.0)
        >>> r.to_vector_spec().weight, r.to_vector_spec(weight=2.0).weight
        (24.0, 2.0)
    """

    layer: int
    component: str
    position: str
    method: str
    source: str
    accuracy: float | None = None
    effect_size: float | None = None
    polarity_correct: bool | None = None
    delta: float | None = None
    coherence: float | None = None
    path: str | None = None
    coefficient: float | None = None

    def __post_init__(self) -> None:
        o = "VectorResult"
        _location(o, self)
        check_choice(o, "source", self.source, SOURCES)
        set_field(self, "accuracy", check_opt_float(o, "accuracy", self.accuracy, lo=0.0, hi=1.0))
        for name in ("effect_size", "delta", "coherence", "coefficient"):
            set_field(self, name, check_opt_float(o, name, getattr(self, name)))
        if self.polarity_correct is not None and not isinstance(self.polarity_correct, bool):
            fix = "Wrap numpy/torch values in bool(...)."
            raise invalid(o, "polarity_correct", self.polarity_correct, "True, False or None", fix)
        path = os.fspath(self.path) if isinstance(self.path, os.PathLike) else self.path
        set_field(self, "path", check_str(o, "path", path, optional=True))
        scores = {"delta": self.delta, "coherence": self.coherence, "coefficient": self.coefficient}
        given = [v is not None for v in scores.values()]
        if given != ([True] * 3 if self.source == "steering" else [False] * 3):
            raise ValueError(
                f"VectorResult(source={self.source!r}) got {scores}: steering results need "
                f"delta, coherence and coefficient, extraction results none of them. Pass all "
                f"three with source='steering', or none with source='extraction'."
            )

    def to_vector_spec(self, weight: float | None = None) -> VectorSpec:
        """The :class:`VectorSpec` of this vector; ``weight`` defaults to the recommended
        coefficient of a steering result, else 1.0."""
        if weight is None:
            weight = 1.0 if self.coefficient is None else self.coefficient
        return VectorSpec(self.layer, self.component, self.position, self.method, weight)


@dataclass(frozen=True)
class JudgeResult(Record):
    """Summary of judge scores over ``n`` responses.

    Example:
        >>> JudgeResult(trait_mean=71.5, coherence_mean=88.0, n=20, trait_std=9.1).n
        20
    """

    trait_mean: float
    coherence_mean: float
    n: int
    trait_std: float | None = None
    coherence_std: float | None = None

    def __post_init__(self) -> None:
        o = "JudgeResult"
        set_field(self, "trait_mean", check_float(o, "trait_mean", self.trait_mean))
        set_field(self, "coherence_mean", check_float(o, "coherence_mean", self.coherence_mean))
        set_field(self, "n", check_int(o, "n", self.n, minimum=1))
        set_field(self, "trait_std", check_opt_float(o, "trait_std", self.trait_std, lo=0.0))
        set_field(
            self, "coherence_std", check_opt_float(o, "coherence_std", self.coherence_std, lo=0.0)
        )


@dataclass(frozen=True)
class ModelVariant(Record):
    """A named model, optionally with a LoRA adapter; ``model=None`` means the embedded default.

    Example:
        >>> ModelVariant("base").model is None
        True
    """

    name: str
    model: str | None = None
    lora: str | None = None

    def __post_init__(self) -> None:
        name = self.name
        if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or name in (".", ".."):
            hint = re.sub(r"[^A-Za-z0-9._-]+", "-", str(name)).strip("-.") or "variant"
            allowed = "a folder name of letters, digits, '-', '_' and '.' (not '.' or '..')"
            fix = f"The name becomes a folder on disk; try {hint!r}."
            raise invalid("ModelVariant", "name", name, allowed, fix)
        check_name("ModelVariant", "name", name)  # and, like every folder name: no '..', no '.x'
        check_str("ModelVariant", "model", self.model, optional=True)
        check_str("ModelVariant", "lora", self.lora, optional=True)


@dataclass(frozen=True)
class ActivationMetadata(Record):
    """What an activation file holds, written next to it at capture time.

    Example:
        >>> meta = ActivationMetadata("SmolLM2-135M-Instruct", 30, 576, (9, 12), ("residual",),
        ...                           "response[:]", 100, activation_norms={9: 3.2, 12: 4.1})
        >>> ActivationMetadata.from_dict(meta.to_dict()).activation_norms
        {9: 3.2, 12: 4.1}
    """

    model: str
    n_layers: int
    hidden_dim: int
    captured_layers: tuple[int, ...]
    components: tuple[str, ...]
    position: str
    n_samples: int
    activation_norms: dict[int, float] | None = field(default=None, hash=False)
    dtype: str = "float32"

    def __post_init__(self) -> None:
        o = "ActivationMetadata"
        check_str(o, "model", self.model)
        for name in ("n_layers", "hidden_dim", "n_samples"):
            set_field(self, name, check_int(o, name, getattr(self, name), minimum=1))
        check_str(o, "position", self.position)
        check_choice(o, "dtype", self.dtype, DTYPES)
        raw = check_items(o, "captured_layers", self.captured_layers, [9, 12])
        layers = tuple(check_int(o, f"captured_layers[{i}]", x) for i, x in enumerate(raw))
        for i, layer in enumerate(layers):
            if layer >= self.n_layers:
                allowed = f"a layer < n_layers={self.n_layers}"
                raise invalid(o, f"captured_layers[{i}]", layer, allowed, "Fix the layer list.")
        raw = check_items(o, "components", self.components, ["residual"])
        comps = tuple(check_choice(o, f"components[{i}]", c, COMPONENTS) for i, c in enumerate(raw))
        for name, items in (("captured_layers", layers), ("components", comps)):
            if len(set(items)) != len(items):
                raise invalid(o, name, list(items), "no repeated entries", "Remove the repeats.")
            set_field(self, name, items)
        if self.activation_norms is not None:
            if not isinstance(self.activation_norms, Mapping):
                fix = "Pass {layer: norm, ...} or None."
                raise invalid(o, "activation_norms", self.activation_norms, "a dict or None", fix)
            norms: dict[int, float] = {}
            for key, value in self.activation_norms.items():
                layer = check_int(o, "activation_norms key", key)
                if layer not in layers:
                    fix = "Record norms only for captured layers."
                    raise invalid(o, "activation_norms key", key, f"one of {list(layers)}", fix)
                norms[layer] = check_float(o, f"activation_norms[{layer}]", value, lo=0.0)
            set_field(self, "activation_norms", norms)

    @classmethod
    def _decode(cls, data: dict[str, Any]) -> dict[str, Any]:
        norms = data.get("activation_norms")
        if isinstance(norms, Mapping):  # JSON object keys are strings: turn them back into ints
            data["activation_norms"] = {
                int(k) if isinstance(k, str) and k.isdigit() else k: v for k, v in norms.items()
            }
        return data


# --- files -----------------------------------------------------------------------------------


def save_json(obj: Record, path: str | os.PathLike[str]) -> Path:
    """Write ``obj`` as versioned JSON, atomically: an old file survives any failure.

    The text is built first, then written with :func:`trait_lab.core.atomic.atomic_write_json` (a
    temporary file in the same folder, fsynced, moved over ``path`` with ``os.replace``).
    Missing parent folders are created.

    Example:
        >>> save_json(VectorSpec(9), "/tmp/spec.json").name
        'spec.json'
    """
    if not isinstance(obj, Record):
        raise TypeError(
            f"save_json saves trait_lab records (VectorSpec, ProjectionConfig, ...), got "
            f"{type(obj).__name__}. Build a record first, e.g. VectorSpec.from_dict(d)."
        )
    envelope = RECORD_SCHEMA.stamp({"type": type(obj).__name__, "data": obj.to_dict()})
    return atomic_write_json(path, envelope, indent=2)


def load_json(cls: type[T], path: str | os.PathLike[str]) -> T:
    """Read a file written by :func:`save_json` and validate it as ``cls``.

    Raises ValueError naming the file if it is not valid JSON, is not version
    ``RECORD_SCHEMA.version`` of the envelope, holds another record type or fails validation.

    Example:
        >>> load_json(VectorSpec, save_json(VectorSpec(9), "/tmp/spec.json")).layer
        9
    """
    source = Path(path)
    try:
        payload = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{source}: not valid JSON ({err}). The file is damaged or was not written by "
            f"save_json; re-create it."
        ) from err
    payload = RECORD_SCHEMA.check(payload, source)
    expected = ["data", "schema_version", "type"]
    if sorted(payload) != expected:
        raise ValueError(
            f"{source}: not a trait_lab record file: expected a JSON object with keys "
            f"{expected}, got {sorted(payload)}. Write it with save_json(record, path)."
        )
    kind = payload["type"]
    if kind != cls.__name__:
        raise ValueError(
            f"{source}: holds a {kind!r} record, not {cls.__name__!r}. "
            f"Load it with load_json({kind}, path)."
        )
    try:
        return cls.from_dict(payload["data"])
    except ValueError as err:
        raise ValueError(f"{source}: invalid {cls.__name__}: {err}") from err
