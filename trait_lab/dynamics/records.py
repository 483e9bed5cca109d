"""One versioned record of a prompt's per-token trait projections, with its cleaning data.

A :class:`ProjectionRecord` holds, for every token of prompt + response: the raw projection
``h·v̂`` of each trait at each layer (for an ensemble, ``Σ w_i h·v̂_i`` with normalized
weights), the per-layer norms ``‖h‖``, and the per-layer values ``h[candidate_dims]`` of the
calibration's massive-dim candidates. With the unit vectors' values at those dims
(``vector_dims``) this is everything :mod:`trait_lab.dynamics.cleaning` needs, so
:meth:`ProjectionRecord.cleaned` works on every record ever written. A record cannot be built
or loaded without the cleaning data: ``__post_init__`` refuses it.

JSON layout (:data:`PROJECTION_SCHEMA`, ``schema_version`` 1): layer keys are strings;
``projections[trait][layer]`` is ``[tokens]``; ``vector_dims[trait][layer]`` is
``[members, n_candidates]`` and ``weights[trait][layer]`` ``[members]``; ``norms[layer]`` is
``[tokens]``; ``dim_values[layer]`` is ``[tokens, n_candidates]``; ``calibration`` holds
``fingerprint``, ``candidates`` and the top-5 dims per calibrated layer (``top_dims``).

Example:
    >>> rec = load_record("projections/p/0.json")  # doctest: +SKIP
    >>> scores, norms = rec.cleaned("optimism", 9, "top5")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trait_lab.core.atomic import atomic_write_json
from trait_lab.core.schema import Schema
from trait_lab.dynamics.cleaning import clean_norms, clean_projection, dims_to_clean
from trait_lab.dynamics.summary import calibration_summary, cleaning_dims

__all__ = ["PROJECTION_SCHEMA", "ProjectionRecord", "RecordError", "build_record", "load_record"]


class RecordError(ValueError):
    """A projection record that cannot be used; the message names the problem (and file)."""


PROJECTION_SCHEMA = Schema(
    "trait_lab.projection_record",
    1,
    kind_key=None,
    remake="run_inference(...) rewrites it",
    error=RecordError,
)
"""The record file: written by :meth:`ProjectionRecord.save`, checked by :func:`load_record`."""

Members = dict[int, list[tuple[float, torch.Tensor]]]
"""A resolved trait: ``{layer: [(normalized weight, vector [hidden]), ...]}``."""


def _as_calibration(summary: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "candidates": summary["candidates"],
        "layers": [{"top_dims": top} for top in summary["top_dims"]],
    }


def _fail(problem: str) -> RecordError:
    return RecordError(f"invalid ProjectionRecord: {problem}")


def _layer_map(name: str, value: Any) -> dict[int, Any]:
    if not isinstance(value, Mapping) or not value:
        raise _fail(f"{name} must be a non-empty {{layer: ...}} mapping, got {value!r:.80}")
    try:
        return {int(k): v for k, v in value.items()}
    except (TypeError, ValueError) as exc:
        raise _fail(f"{name} has a non-integer layer key ({exc})") from exc


def _array(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise _fail(f"{name} is not a numeric array ({exc})") from exc
    if arr.shape != shape:
        raise _fail(f"{name} has shape {arr.shape}, expected {shape}")
    if not np.isfinite(arr).all():
        raise _fail(f"{name} holds NaN or infinite values")
    return arr


@dataclass
class ProjectionRecord:
    """Per-token projections of one prompt + response, with the data to clean them.

    Every field is required (no defaults but ``schema_version``, which :data:`PROJECTION_SCHEMA`
    checks), so a record without ``dim_values``, ``candidate_dims`` or ``vector_dims`` cannot
    exist. Build one with :func:`build_record` (or
    :func:`trait_lab.dynamics.inference.project_prompts`).

    Example:
        >>> rec.boundary == len(rec.prompt_tokens)  # doctest: +SKIP
        True
    """

    prompt: str
    response: str
    prompt_tokens: list[str]
    response_tokens: list[str]
    prompt_ids: list[int]
    response_ids: list[int]
    boundary: int
    projections: dict[str, dict[int, list[float]]]
    vector_dims: dict[str, dict[int, list[list[float]]]]
    weights: dict[str, dict[int, list[float]]]
    norms: dict[int, list[float]]
    dim_values: dict[int, list[list[float]]]
    candidate_dims: list[int]
    calibration: dict[str, Any]
    schema_version: int = PROJECTION_SCHEMA.version

    def __post_init__(self) -> None:
        PROJECTION_SCHEMA.check(vars(self), "ProjectionRecord")
        for name in ("prompt", "response"):
            if not isinstance(getattr(self, name), str):
                raise _fail(f"{name} must be a string")
        for name in ("prompt_tokens", "response_tokens"):
            toks = getattr(self, name)
            if not isinstance(toks, list) or not all(isinstance(t, str) for t in toks):
                raise _fail(f"{name} must be a list of strings")
            ids = getattr(self, name.replace("tokens", "ids"))
            if (
                not isinstance(ids, list)
                or len(ids) != len(toks)
                or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
            ):
                raise _fail(f"{name.replace('tokens', 'ids')} must list one id per token")
        n = len(self.prompt_tokens) + len(self.response_tokens)
        if self.boundary != len(self.prompt_tokens):
            raise _fail(
                f"boundary {self.boundary} != number of prompt tokens {len(self.prompt_tokens)}"
            )
        dims = self.candidate_dims
        if (
            not isinstance(dims, list)
            or not dims
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in dims)
        ):
            raise _fail(f"candidate_dims must be a non-empty list of dims, got {dims!r:.80}")
        if len(set(dims)) != len(dims):
            raise _fail(f"candidate_dims has duplicates: {dims}")
        cal = self.calibration
        if not isinstance(cal, Mapping) or any(
            k not in cal for k in ("fingerprint", "candidates", "top_dims")
        ):
            raise _fail("calibration must hold 'fingerprint', 'candidates' and 'top_dims'")
        missing = sorted(set(cleaning_dims(cal)) - set(dims))
        if missing:
            raise _fail(f"calibration dims {missing} are missing from candidate_dims")
        self.norms = _layer_map("norms", self.norms)
        self.dim_values = _layer_map("dim_values", self.dim_values)
        layers = set(self.norms)
        if set(self.dim_values) != layers:
            raise _fail(
                f"dim_values layers {sorted(self.dim_values)} != norms layers {sorted(layers)}"
            )
        for layer in layers:
            _array(f"norms[{layer}]", self.norms[layer], (n,))
            _array(f"dim_values[{layer}]", self.dim_values[layer], (n, len(dims)))
        if not isinstance(self.projections, Mapping) or not self.projections:
            raise _fail("projections must be a non-empty {trait: {layer: [tokens]}} mapping")
        for kind in ("vector_dims", "weights"):
            if not isinstance(getattr(self, kind), Mapping):
                raise _fail(f"{kind} must be a {{trait: {{layer: ...}}}} mapping")
        for trait in list(self.projections):
            self._check_trait(trait, n, layers)

    def _check_trait(self, trait: str, n: int, layers: set[int]) -> None:
        for kind in ("vector_dims", "weights"):
            if trait not in getattr(self, kind):
                raise _fail(f"{kind} has no entry for trait {trait!r}")
        proj = self.projections[trait] = _layer_map(
            f"projections[{trait}]", self.projections[trait]
        )
        vd = self.vector_dims[trait] = _layer_map(f"vector_dims[{trait}]", self.vector_dims[trait])
        w = self.weights[trait] = _layer_map(f"weights[{trait}]", self.weights[trait])
        for layer in proj:
            if layer not in layers:
                raise _fail(f"trait {trait!r} layer {layer} has no norms / dim_values")
            if layer not in vd or layer not in w:
                raise _fail(f"trait {trait!r} layer {layer} lacks vector_dims or weights")
            _array(f"projections[{trait}][{layer}]", proj[layer], (n,))
            weights = _array(f"weights[{trait}][{layer}]", w[layer], (len(w[layer]),))
            if not len(weights) or abs(weights.sum() - 1) > 1e-6 or (weights < 0).any():
                raise _fail(f"weights[{trait}][{layer}] must be >= 0 and sum to 1")
            shape = (len(weights), len(self.candidate_dims))
            v = _array(f"vector_dims[{trait}][{layer}]", vd[layer], shape)
            if ((v**2).sum(-1) > 1 + 1e-4).any():
                raise _fail(f"vector_dims[{trait}][{layer}] is not part of a unit vector")

    @property
    def n_tokens(self) -> int:
        """Prompt + response tokens."""
        return self.boundary + len(self.response_tokens)

    @property
    def tokens(self) -> list[str]:
        """Prompt tokens followed by response tokens."""
        return self.prompt_tokens + self.response_tokens

    def raw(self, trait: str, layer: int) -> tuple[np.ndarray, np.ndarray]:
        """``(projections [tokens], norms [tokens])`` before cleaning, as float64."""
        self._check_key(trait, layer)
        return np.asarray(self.projections[trait][layer], float), np.asarray(self.norms[layer])

    def _check_key(self, trait: str, layer: int) -> None:
        if trait not in self.projections:
            raise KeyError(f"no trait {trait!r} in this record; traits: {sorted(self.projections)}")
        if layer not in self.projections[trait]:
            raise KeyError(
                f"trait {trait!r} has no layer {layer}; layers: {sorted(self.projections[trait])}"
            )

    def cleaned(self, trait: str, layer: int, option: str) -> tuple[np.ndarray, np.ndarray]:
        """``(projections, norms)`` with the option's massive dims removed (float64 ``[tokens]``).

        ``option`` is a key of :data:`trait_lab.dynamics.cleaning.CLEAN_OPTIONS` (``"none"``,
        ``"top5"`` or ``"all"``; a UI label raises a ``ValueError``); the dims come
        from the record's own calibration summary via
        :func:`~trait_lab.dynamics.cleaning.dims_to_clean`.

        Example:
            >>> s, n = rec.cleaned("optimism", 9, "top5")  # doctest: +SKIP
            >>> cosine = s / n  # doctest: +SKIP
        """
        scores, _ = self.raw(trait, layer)
        _, cols, values = self._clean_values(layer, option)
        out = scores
        members = zip(self.weights[trait][layer], self.vector_dims[trait][layer], strict=True)
        for weight, vd in members:
            v = np.asarray(vd, float)
            # A unit vector over the candidate columns plus one slack entry holding the rest of
            # its norm: clean_projection's normalisation leaves the candidate values unchanged.
            proxy = np.append(v, math.sqrt(max(0.0, 1.0 - float(v @ v))))
            out = out + weight * clean_projection(np.zeros_like(scores), values, proxy, cols)
        return out, self.cleaned_norms(layer, option)

    def _clean_values(self, layer: int, option: str) -> tuple[list[int], list[int], np.ndarray]:
        dims = dims_to_clean(_as_calibration(self.calibration), option)
        cols = [self.candidate_dims.index(d) for d in dims]
        return dims, cols, np.asarray(self.dim_values[layer], float)[:, cols]

    def cleaned_norms(self, layer: int, option: str) -> np.ndarray:
        """The residual norms ``‖h‖`` at ``layer`` with the option's massive dims removed.

        Example:
            >>> from trait_lab.testing import tiny_record
            >>> tiny_record().cleaned_norms(4, "none").shape
            (3,)
        """
        if layer not in self.norms:
            raise KeyError(f"no layer {layer} in this record; layers: {sorted(self.norms)}")
        dims, _, values = self._clean_values(layer, option)
        return clean_norms(np.asarray(self.norms[layer], float), values, dims)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (layer keys as strings)."""
        data = {k: getattr(self, k) for k in _KEYS}
        for k in ("projections", "vector_dims", "weights"):
            data[k] = {t: {str(i): v for i, v in per.items()} for t, per in data[k].items()}
        for k in ("norms", "dim_values"):
            data[k] = {str(i): v for i, v in data[k].items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProjectionRecord:
        """Build a record from :meth:`to_dict` output, strictly; ``data`` is not modified.

        Missing or unknown keys, another ``schema_version`` or bad values raise
        :class:`RecordError`.

        Example:
            >>> from trait_lab.testing import tiny_record
            >>> rec = tiny_record()
            >>> ProjectionRecord.from_dict(rec.to_dict()) == rec
            True
        """
        if not isinstance(data, Mapping):
            raise _fail(f"from_dict expects a dict (to_dict() output), got {type(data).__name__}")
        missing = [k for k in _KEYS if k not in data]
        unknown = sorted(set(data) - set(_KEYS))
        if missing or unknown:
            raise _fail(
                f"missing keys {missing}, unknown keys {unknown}; a record needs exactly "
                f"{list(_KEYS)} (re-run inference to rewrite it)"
            )
        # top-level copies: __post_init__ normalises the layer maps in place
        copies: dict[str, Any] = {
            k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()
        }
        try:
            return cls(**copies)
        except TypeError as exc:
            raise _fail(str(exc)) from exc

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the record as JSON atomically; returns the path.

        Example:
            >>> rec.save("/tmp/0.json").name  # doctest: +SKIP
            '0.json'
        """
        return atomic_write_json(path, self.to_dict(), indent=None)


_KEYS: tuple[str, ...] = tuple(f.name for f in fields(ProjectionRecord))


def load_record(path: str | os.PathLike[str]) -> ProjectionRecord:
    """Read and strictly validate a record; :class:`RecordError` names the file and problem.

    Example:
        >>> load_record("/nonexistent.json")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: no projection record at /nonexistent.json; ...
    """
    source = Path(path)
    data = PROJECTION_SCHEMA.read(
        source,
        missing=f"no projection record at {source}; run run_inference(...)",
        corrupt=lambda problem: RecordError(f"{source}: {problem}; delete it and re-run"),
    )
    try:
        return ProjectionRecord.from_dict(data)
    except RecordError as exc:
        raise RecordError(f"{source}: {exc}") from exc


def _strings(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """Token strings; an id the tokenizer cannot name becomes ``"[id]"``."""
    names = tokenizer.convert_ids_to_tokens([int(i) for i in ids])
    return [n if isinstance(n, str) else f"[{i}]" for n, i in zip(names, ids, strict=True)]


def build_record(
    prompt: str,
    response: str,
    prompt_ids: Sequence[int],
    response_ids: Sequence[int],
    tokenizer: Any,
    activations: Mapping[int, torch.Tensor],
    traits: Mapping[str, Members],
    calibration: Mapping[str, Any],
) -> ProjectionRecord:
    """A record from residual activations ``{layer: [tokens, hidden]}`` (prompt + response).

    Token strings come from ``tokenizer.convert_ids_to_tokens``.
    ``traits`` maps a name to ``{layer: [(weight, vector), ...]}`` (weights normalized; vectors
    are normalized here). Projections, norms and dim values are computed in float64 from the
    activations. ``calibration`` is a :func:`~trait_lab.dynamics.massive.load_calibration` record.

    Example:
        >>> h = {1: torch.randn(3, 32)}  # doctest: +SKIP
        >>> traits = {"t": {1: [(1.0, v)]}}  # doctest: +SKIP
        >>> build_record("hi", "yo", [1, 2], [3], tok, h, traits, cal)  # doctest: +SKIP
    """
    summary = calibration_summary(calibration)
    dims = cleaning_dims(summary)
    n = len(prompt_ids) + len(response_ids)
    acts = {int(k): v.detach().cpu().double() for k, v in activations.items()}
    for layer, h in acts.items():
        if h.dim() != 2 or h.shape[0] != n:
            raise ValueError(
                f"activations[{layer}] has shape {tuple(h.shape)}, expected [{n}, hidden] "
                "(one row per prompt + response token)"
            )
    projections: dict[str, dict[int, list[float]]] = {}
    vector_dims: dict[str, dict[int, list[list[float]]]] = {}
    weights: dict[str, dict[int, list[float]]] = {}
    for name, per_layer in traits.items():
        projections[name], vector_dims[name], weights[name] = {}, {}, {}
        for layer, members in per_layer.items():
            if layer not in acts:
                raise ValueError(f"trait {name!r} needs layer {layer}, which was not captured")
            h = acts[layer]
            total = torch.zeros(n, dtype=torch.float64)
            vd: list[list[float]] = []
            for weight, vector in members:
                v = vector.detach().cpu().double().flatten()
                v = v / v.norm()
                total += weight * (h @ v)
                vd.append(v[dims].tolist())
            projections[name][layer] = total.tolist()
            vector_dims[name][layer] = vd
            weights[name][layer] = [float(w) for w, _ in members]
    return ProjectionRecord(
        prompt=prompt,
        response=response,
        prompt_tokens=_strings(tokenizer, prompt_ids),
        response_tokens=_strings(tokenizer, response_ids),
        prompt_ids=[int(i) for i in prompt_ids],
        response_ids=[int(i) for i in response_ids],
        boundary=len(prompt_ids),
        projections=projections,
        vector_dims=vector_dims,
        weights=weights,
        norms={layer: h.norm(dim=-1).tolist() for layer, h in acts.items()},
        dim_values={layer: h[:, dims].tolist() for layer, h in acts.items()},
        candidate_dims=dims,
        calibration=summary,
    )
