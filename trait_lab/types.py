"""Typed records shared across trait_lab: which vector, how to combine vectors, results, metadata.

Every record is a frozen dataclass that checks itself when built and round-trips through a
JSON-safe dict. ``from_dict`` is strict: unknown or missing keys are errors, never ignored.
``save_json`` / ``load_json`` wrap a record with a schema version and write files atomically.

Example:
    >>> spec = VectorSpec(layer=9, component="residual", method="probe")
    >>> VectorSpec.from_dict(spec.to_dict()) == spec
    True
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

SCHEMA_VERSION = 1
"""Version written by :func:`save_json`; :func:`load_json` refuses any other."""

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
T = TypeVar("T", bound="Record")


# --- validation helpers: each returns the normalised value or raises a ValueError ------------


def _fail(owner: str, name: str, value: Any, allowed: str, fix: str) -> ValueError:
    return ValueError(f"{owner}.{name}={value!r} is invalid: expected {allowed}. {fix}")


def _set(obj: object, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)  # normalise a field of a frozen dataclass


def _int(owner: str, name: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        fix = "Pass a whole number (not a bool, float or string)."
        raise _fail(owner, name, value, f"an int >= {minimum}", fix)
    return int(value)


def _float(
    owner: str, name: str, value: Any, lo: float | None = None, hi: float | None = None
) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (lo is not None and value < lo) or (hi is not None and value > hi):
        span = f" in [{lo}, {hi}]" if hi is not None else (f" >= {lo}" if lo is not None else "")
        fix = "Pass a plain float (use float(x) on tensors); NaN and infinity are not allowed."
        raise _fail(owner, name, value, f"a finite number{span}", fix)
    return float(value)


def _opt_float(
    owner: str, name: str, value: Any, lo: float | None = None, hi: float | None = None
) -> float | None:
    return None if value is None else _float(owner, name, value, lo, hi)


def _str(owner: str, name: str, value: Any, optional: bool = False) -> str | None:
    if optional and value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        allowed = "a non-empty string" + (" or None" if optional else "")
        raise _fail(owner, name, value, allowed, f"Give {name} a value.")
    return value


def _choice(owner: str, name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise _fail(owner, name, value, f"one of {list(choices)}", "Use one of those spellings.")
    return str(value)


def _items(owner: str, name: str, value: Any, example: list[Any]) -> list[Any]:
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise _fail(owner, name, value, "a non-empty list", f"Pass a list such as {example}.")
    return list(value)


def _location(owner: str, obj: Any) -> None:
    """Check the layer/component/position/method fields shared by VectorSpec and VectorResult."""
    _set(obj, "layer", _int(owner, "layer", obj.layer))
    _choice(owner, "component", obj.component, COMPONENTS)
    _str(owner, "position", obj.position)
    _str(owner, "method", obj.method)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


# --- records ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    """Base of every record: a JSON-safe ``to_dict`` and a strict ``from_dict``.

    Example:
        >>> JudgeResult.from_dict({"trait_mean": 70.0, "coherence_mean": 85.0, "n": 20}).n
        20
    """

    def to_dict(self) -> dict[str, Any]:
        """Return plain JSON types: tuples become lists, int dict keys become strings."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
        """Build the record from ``to_dict`` output; unknown or missing keys raise ValueError."""
        if not isinstance(data, Mapping):
            raise ValueError(
                f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}: {data!r}. "
                f"Pass the output of {cls.__name__}.to_dict()."
            )
        allowed = [f.name for f in fields(cls)]
        required = [f.name for f in fields(cls) if MISSING is f.default is f.default_factory]
        unknown = [k for k in data if k not in allowed]
        missing = [k for k in required if k not in data]
        if unknown or missing:
            problems = [f"unknown key(s) {unknown}"] if unknown else []
            problems += [f"missing required key(s) {missing}"] if missing else []
            raise ValueError(
                f"{cls.__name__}.from_dict: {' and '.join(problems)}. Allowed keys: {allowed} "
                f"(required: {required}). Rename or remove the keys; none are ignored."
            )
        return cls(**cls._decode(dict(data)))

    @classmethod
    def _decode(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Turn JSON values back into field values (overridden where JSON loses types)."""
        return data


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
        _set(self, "weight", _float("VectorSpec", "weight", self.weight))


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
            raise _fail("ProjectionConfig", "vectors", self.vectors, "a list of VectorSpec", fix)
        vecs = _items("ProjectionConfig", "vectors", self.vectors, ["VectorSpec(9)"])
        for i, vec in enumerate(vecs):
            if not isinstance(vec, VectorSpec):
                raise _fail("ProjectionConfig", f"vectors[{i}]", vec, "a VectorSpec", fix)
        _set(self, "vectors", tuple(vecs))

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
    ``delta`` and ``coherence`` are required when ``source == "steering"`` and forbidden otherwise.

    Example:
        >>> r = VectorResult(9, "residual", "response[:]", "probe", "steering", delta=12.0,
        ...                  coherence=80.0)
        >>> r.to_vector_spec(weight=2.0).weight
        2.0
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

    def __post_init__(self) -> None:
        o = "VectorResult"
        _location(o, self)
        _choice(o, "source", self.source, SOURCES)
        _set(self, "accuracy", _opt_float(o, "accuracy", self.accuracy, lo=0.0, hi=1.0))
        for name in ("effect_size", "delta", "coherence"):
            _set(self, name, _opt_float(o, name, getattr(self, name)))
        if self.polarity_correct is not None and not isinstance(self.polarity_correct, bool):
            fix = "Wrap numpy/torch values in bool(...)."
            raise _fail(o, "polarity_correct", self.polarity_correct, "True, False or None", fix)
        path = os.fspath(self.path) if isinstance(self.path, os.PathLike) else self.path
        _set(self, "path", _str(o, "path", path, optional=True))
        scores = {"delta": self.delta, "coherence": self.coherence}
        given = [v is not None for v in scores.values()]
        if given != ([True, True] if self.source == "steering" else [False, False]):
            raise ValueError(
                f"VectorResult(source={self.source!r}) got {scores}: steering results need both "
                f"delta and coherence, extraction results neither. Pass both scores with "
                f"source='steering', or neither with source='extraction'."
            )

    def to_vector_spec(self, weight: float = 1.0) -> VectorSpec:
        """Return the :class:`VectorSpec` that identifies this vector, with ``weight``."""
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
        _set(self, "trait_mean", _float(o, "trait_mean", self.trait_mean))
        _set(self, "coherence_mean", _float(o, "coherence_mean", self.coherence_mean))
        _set(self, "n", _int(o, "n", self.n, minimum=1))
        _set(self, "trait_std", _opt_float(o, "trait_std", self.trait_std, lo=0.0))
        _set(self, "coherence_std", _opt_float(o, "coherence_std", self.coherence_std, lo=0.0))


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
            raise _fail("ModelVariant", "name", name, allowed, fix)
        _str("ModelVariant", "model", self.model, optional=True)
        _str("ModelVariant", "lora", self.lora, optional=True)


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
        _str(o, "model", self.model)
        for name in ("n_layers", "hidden_dim", "n_samples"):
            _set(self, name, _int(o, name, getattr(self, name), minimum=1))
        _str(o, "position", self.position)
        _choice(o, "dtype", self.dtype, DTYPES)
        raw = _items(o, "captured_layers", self.captured_layers, [9, 12])
        layers = tuple(_int(o, f"captured_layers[{i}]", x) for i, x in enumerate(raw))
        for i, layer in enumerate(layers):
            if layer >= self.n_layers:
                allowed = f"a layer < n_layers={self.n_layers}"
                raise _fail(o, f"captured_layers[{i}]", layer, allowed, "Fix the layer list.")
        raw = _items(o, "components", self.components, ["residual"])
        comps = tuple(_choice(o, f"components[{i}]", c, COMPONENTS) for i, c in enumerate(raw))
        for name, items in (("captured_layers", layers), ("components", comps)):
            if len(set(items)) != len(items):
                raise _fail(o, name, list(items), "no repeated entries", "Remove the repeats.")
            _set(self, name, items)
        if self.activation_norms is not None:
            if not isinstance(self.activation_norms, Mapping):
                fix = "Pass {layer: norm, ...} or None."
                raise _fail(o, "activation_norms", self.activation_norms, "a dict or None", fix)
            norms: dict[int, float] = {}
            for key, value in self.activation_norms.items():
                layer = _int(o, "activation_norms key", key)
                if layer not in layers:
                    fix = "Record norms only for captured layers."
                    raise _fail(o, "activation_norms key", key, f"one of {list(layers)}", fix)
                norms[layer] = _float(o, f"activation_norms[{layer}]", value, lo=0.0)
            _set(self, "activation_norms", norms)

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

    The text is built first, written to a temporary file in the same folder, fsynced and then
    moved over ``path`` with ``os.replace``. Missing parent folders are created.

    Example:
        >>> save_json(VectorSpec(9), "/tmp/spec.json").name
        'spec.json'
    """
    if not isinstance(obj, Record):
        raise TypeError(
            f"save_json saves trait_lab records (VectorSpec, ProjectionConfig, ...), got "
            f"{type(obj).__name__}. Build a record first, e.g. VectorSpec.from_dict(d)."
        )
    target = Path(path)
    envelope = {"schema_version": SCHEMA_VERSION, "type": type(obj).__name__, "data": obj.to_dict()}
    text = json.dumps(envelope, indent=2, allow_nan=False) + "\n"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target


def load_json(cls: type[T], path: str | os.PathLike[str]) -> T:
    """Read a file written by :func:`save_json` and validate it as ``cls``.

    Raises ValueError naming the file if it is not valid JSON, has another schema version,
    holds another record type or fails validation.

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
    expected = ["data", "schema_version", "type"]
    if not isinstance(payload, dict) or sorted(payload) != expected:
        got = sorted(payload) if isinstance(payload, dict) else type(payload).__name__
        raise ValueError(
            f"{source}: not a trait_lab record file: expected a JSON object with keys "
            f"{expected}, got {got}. Write it with save_json(record, path)."
        )
    version, kind = payload["schema_version"], payload["type"]
    if type(version) is not int or version != SCHEMA_VERSION:
        raise ValueError(
            f"{source}: schema_version {version!r}, but this trait_lab reads version "
            f"{SCHEMA_VERSION}. Re-create the file with this trait_lab, or read it with the "
            f"trait_lab that wrote it."
        )
    if kind != cls.__name__:
        raise ValueError(
            f"{source}: holds a {kind!r} record, not {cls.__name__!r}. "
            f"Load it with load_json({kind}, path)."
        )
    try:
        return cls.from_dict(payload["data"])
    except ValueError as err:
        raise ValueError(f"{source}: invalid {cls.__name__}: {err}") from err
