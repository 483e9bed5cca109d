"""The calibration's files: ``calibration.json`` and the collector's resume state, checked.

:func:`load_calibration` reads a calibration (:data:`CALIBRATION_SCHEMA`) and refuses, with a
:class:`CalibrationError` that names the file and the fix, anything a collector could not have
written: truncated JSON, another schema, missing keys, values of the wrong type or shape, dims
outside the model's width. :func:`read_state` reads ``collector_state.json``
(:data:`STATE_SCHEMA`), the running statistics a
:class:`~trait_lab.dynamics.massive.MassiveDimCollector` saves after every counted forward, and
refuses a state saved for another model, other layers or other inputs.

Example:
    >>> load_calibration("/nonexistent/calibration.json")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    FileNotFoundError: no calibration file at /nonexistent/calibration.json; run ...
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trait_lab.core.schema import Schema

__all__ = [
    "CALIBRATION_SCHEMA",
    "STATE_SCHEMA",
    "CalibrationError",
    "CollectorState",
    "load_calibration",
    "read_state",
]

_LAYER_KEYS = (
    "layer",
    "top_dims",
    "top_max_abs",
    "top_mean_abs",
    "top_ratio",
    "median_mean_abs",
    "mean_norm",
)
_KEYS = (
    "model",
    "hidden_size",
    "n_layers",
    "tokens_seen",
    "candidate_ratio",
    "layers",
    "candidates",
)


class CalibrationError(ValueError):
    """A calibration file that cannot be used; the message names the file and the problem."""


CALIBRATION_SCHEMA = Schema(
    "trait_lab.massive_calibration",
    1,
    remake="delete it and call ensure_calibration(...)",
    error=CalibrationError,
)
"""The format of ``calibration.json``: its ``schema`` and ``schema_version`` keys come first."""

STATE_SCHEMA = Schema(
    "trait_lab.massive_collector_state",
    1,
    remake="it is ignored and recollected",
    error=CalibrationError,
)
"""The collector's running state, ``collector_state.json`` (a resume cache beside the file)."""

_STATS = ("max_abs", "sum_abs")


def _numbers(value: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    """``value`` (numbers, not bools or strings) as a float64 array of ``shape``, else an error."""
    array = np.asarray(value, dtype=object)
    kinds = {type(x) for x in array.flat}
    if array.shape != shape or not kinds <= {int, float}:
        raise CalibrationError(f"{name} must be numbers of shape {shape}, got {value!r:.60}")
    return array.astype(np.float64)


def _fail(path: Path, problem: str) -> CalibrationError:
    return CalibrationError(
        f"calibration file {path} is corrupt: {problem}. Delete it or call "
        "ensure_calibration(...) to rebuild it."
    )


def load_calibration(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate ``calibration.json``; raises :class:`CalibrationError` naming the file.

    Example:
        >>> load_calibration("/nonexistent/calibration.json")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: no calibration file at /nonexistent/calibration.json; run ...
    """
    path = Path(path)
    record = CALIBRATION_SCHEMA.read(
        path,
        missing=f"no calibration file at {path}; run ensure_calibration(...)",
        corrupt=lambda problem: _fail(path, problem),
        source=f"calibration file {path}",
    )
    missing = [k for k in _KEYS if k not in record]
    if missing:
        raise _fail(path, f"missing keys {missing}")
    hidden = record["hidden_size"]
    optional = ("n_prompts",) if "n_prompts" in record else ()  # explicit calibrations only
    for key in ("hidden_size", "n_layers", "tokens_seen", *optional):
        if not isinstance(record[key], int) or isinstance(record[key], bool) or record[key] < 0:
            raise _fail(path, f"{key} must be a non-negative int, got {record[key]!r}")
    for key in ("model", "prompt_source"):
        if not isinstance(record.get(key, ""), str):
            raise _fail(path, f"{key} must be a string, got {record[key]!r:.60}")
    if not isinstance(record["layers"], list) or not record["layers"]:
        raise _fail(path, "layers must be a non-empty list")
    if not isinstance(record["candidates"], list):
        raise _fail(path, "candidates must be a list")
    try:
        _numbers(record["candidate_ratio"], (), "candidate_ratio")
        for entry in record["layers"]:
            _check_layer(entry, record["n_layers"], hidden)
        _check_dims(record["candidates"], hidden)
    except CalibrationError as exc:
        raise _fail(path, str(exc)) from None
    return record


def _check_layer(entry: Any, count: int, hidden: int) -> None:
    """One ``layers`` entry of a calibration file: its keys, layer index and top-* lists."""
    if not isinstance(entry, dict) or any(k not in entry for k in _LAYER_KEYS):
        raise CalibrationError(f"each layer needs keys {list(_LAYER_KEYS)}")
    layer, top = entry["layer"], entry["top_dims"]
    if type(layer) is not int or not 0 <= layer < count:
        raise CalibrationError(f"layer {layer!r:.40} is not an int in [0, n_layers={count})")
    if not isinstance(top, list):
        raise CalibrationError(f"layer {layer}: top_dims must be a list, got {top!r:.40}")
    for key in _LAYER_KEYS[2:5]:
        _numbers(entry[key], (len(top),), f"layer {layer}: {key} (one per top dim)")
    for key in _LAYER_KEYS[5:]:
        _numbers(entry[key], (), f"layer {layer}: {key}")
    _check_dims(top, hidden)


def _check_dims(dims: list[Any], hidden: int) -> None:
    for d in dims:
        if type(d) is not int or not 0 <= d < hidden:
            raise CalibrationError(f"dim {d!r} is not an int in [0, {hidden})")


@dataclass(frozen=True)
class CollectorState:
    """A collector's saved running statistics: ``stats[layer] = (max_abs, sum_abs, sum_norm)``."""

    tokens_seen: int
    forwards_seen: int
    stats: dict[int, tuple[np.ndarray, np.ndarray, float]]


def read_state(
    path: str | os.PathLike[str], model: str, layers: list[int], inputs: str | None
) -> CollectorState:
    """The state at ``path`` when it was saved for ``model``, ``layers`` and ``inputs``.

    Raises :class:`CalibrationError` saying why it cannot be resumed (not JSON, another schema,
    another model, layers or inputs, a missing or malformed value, arrays of unequal widths).

    Example:
        >>> read_state("/nonexistent.json", "m", [0], None)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: no collector state at /nonexistent.json
    """
    state = STATE_SCHEMA.read(
        path, missing=f"no collector state at {path}", corrupt=CalibrationError
    )
    if state.get("layers") != layers or state.get("model") != model:
        raise CalibrationError("it was saved for other layers or another model")
    if state.get("inputs") != inputs:
        raise CalibrationError(f"it was collected from other inputs than {inputs!r}")
    for name in ("tokens_seen", "forwards_seen"):
        value = state.get(name)
        if type(value) is not int or value < 0:
            raise CalibrationError(f"{name} must be a non-negative int, got {value!r:.40}")
    tokens, forwards = int(state["tokens_seen"]), int(state["forwards_seen"])
    stats = state.get("stats")
    expected = {str(layer) for layer in layers}
    if not isinstance(stats, dict) or ((stats or tokens) and set(stats) != expected):
        raise CalibrationError(f"stats must hold one entry per layer {layers}")
    loaded: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}
    width = None
    for key, entry in stats.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("max_abs"), list):
            raise CalibrationError(f"stats[{key}] must be an object of lists, got {entry!r:.40}")
        width = len(entry["max_abs"]) if width is None else width
        mx, sm = (_numbers(entry.get(k), (width,), f"stats[{key}].{k}") for k in _STATS)
        norm = _numbers(entry.get("sum_norm"), (), f"stats[{key}].sum_norm")
        loaded[int(key)] = mx, sm, float(norm)
    return CollectorState(tokens, forwards, loaded)
