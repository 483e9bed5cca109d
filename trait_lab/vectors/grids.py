"""A labelled set of trait vectors: every (trait, layer, method) of one or more extractions.

:func:`load_vector_grid` reads the vectors that :func:`trait_lab.extraction.pipeline.run_extraction`
wrote for several traits into a :class:`VectorGrid`: keys ``(trait, layer, method)`` in a
stable order (traits as given, then layers, then methods) and one float32 ``[N, hidden]``
matrix, row i belonging to key i. The grid answers the usual geometry questions through
:mod:`trait_lab.math.linalg`: the traits' cosine table at a layer, the most aligned trait pairs,
how far each trait's direction turns from layer to layer, and how similarity between traits
and agreement between methods change with depth.

Example:
    >>> import torch
    >>> grid = VectorGrid.from_mapping({("joy", 6, "probe"): torch.tensor([1.0, 0.0]),
    ...                                 ("calm", 6, "probe"): torch.tensor([1.0, 1.0])})
    >>> grid.labels, grid.matrix.shape
    (['joy·L6·probe', 'calm·L6·probe'], torch.Size([2, 2]))
    >>> round(float(grid.trait_cosines(6, "probe").loc["joy", "calm"]), 4)
    0.7071
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TypeAlias

import numpy as np
import pandas as pd
import torch

from trait_lab.extraction.methods import METHODS
from trait_lab.extraction.outputs import extraction_dir, read_log, vector_path
from trait_lab.io.vectors import load_vector
from trait_lab.math.linalg import cosine_similarity, pairwise_cosine_matrix

Key: TypeAlias = "tuple[str, int, str]"
logger = logging.getLogger(__name__)
DEFAULT_EXCLUDED = ("random_baseline",)  # a chance-level control, not a trait direction


def label(key: Key) -> str:
    """The display label of a key, e.g. ``optimism·L15·probe``."""
    trait, layer, method = key
    return f"{trait}·L{layer}·{method}"


def _unique(values: Iterable[object]) -> list:
    return list(dict.fromkeys(values))


@dataclass(frozen=True)
class VectorGrid:
    """Vectors keyed by ``(trait, layer, method)``; ``matrix[i]`` is the vector of ``keys[i]``.

    Build one with :func:`load_vector_grid` or :meth:`from_mapping`; ``traits``, ``layers`` and
    ``methods`` list the distinct values in key order.
    """

    keys: tuple[Key, ...]
    matrix: torch.Tensor

    def __post_init__(self) -> None:
        if self.matrix.dim() != 2 or self.matrix.shape[0] != len(self.keys):
            raise ValueError(
                f"matrix has shape {tuple(self.matrix.shape)} but there are {len(self.keys)} "
                "keys; pass one [hidden] row per key"
            )
        if len(set(self.keys)) != len(self.keys):
            raise ValueError("keys has duplicates; each (trait, layer, method) may appear once")

    @classmethod
    def from_mapping(cls, vectors: Mapping[Key, torch.Tensor | np.ndarray]) -> VectorGrid:
        """A grid from ``{(trait, layer, method): [hidden] vector}``, in the mapping's order."""
        if not isinstance(vectors, Mapping) or not vectors:
            raise TypeError(
                f"vectors must be a non-empty {{(trait, layer, method): vector}} dict, got "
                f"{type(vectors).__name__}{' (empty)' if isinstance(vectors, Mapping) else ''}"
            )
        keys: list[Key] = []
        rows: list[torch.Tensor] = []
        for key, vector in vectors.items():
            ok = isinstance(key, tuple) and len(key) == 3
            if not ok or not (isinstance(key[0], str) and isinstance(key[2], str)):
                raise ValueError(
                    f"key {key!r} is not (trait, layer, method), e.g. ('optimism', 15, 'probe')"
                )
            if isinstance(key[1], bool) or not isinstance(key[1], (int, np.integer)):
                raise ValueError(f"key {key!r}: the layer must be an int, got {key[1]!r}")
            row = torch.as_tensor(vector).detach().cpu().float()
            if row.dim() != 1:
                raise ValueError(
                    f"vector {label(key)} has shape {tuple(row.shape)}; each must be [hidden]"
                )
            if rows and row.shape != rows[0].shape:
                raise ValueError(
                    f"vector {label(key)} has {row.shape[0]} dims but {label(keys[0])} has "
                    f"{rows[0].shape[0]}: every vector must come from the same model"
                )
            keys.append((key[0], int(key[1]), key[2]))
            rows.append(row)
        return cls(tuple(keys), torch.stack(rows))

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def traits(self) -> list[str]:
        return _unique(k[0] for k in self.keys)

    @property
    def layers(self) -> list[int]:
        return _unique(k[1] for k in self.keys)

    @property
    def methods(self) -> list[str]:
        return _unique(k[2] for k in self.keys)

    @property
    def labels(self) -> list[str]:
        """``trait·L<layer>·method`` for every key, in order."""
        return [label(k) for k in self.keys]

    def to_dict(self) -> dict[Key, torch.Tensor]:
        return dict(zip(self.keys, self.matrix, strict=True))

    def vector(self, trait: str, layer: int, method: str) -> torch.Tensor:
        """The vector of one key; a missing key is an error listing what the grid holds."""
        try:
            return self.matrix[self.keys.index((trait, layer, method))]
        except ValueError:
            raise KeyError(
                f"no vector {label((trait, layer, method))} in this grid; it holds traits "
                f"{self.traits}, layers {self.layers}, methods {self.methods}"
            ) from None

    def select(
        self,
        traits: Iterable[str] | None = None,
        layers: Iterable[int] | None = None,
        methods: Iterable[str] | None = None,
    ) -> VectorGrid:
        """The sub-grid with the given traits, layers and methods (``None``: all), in grid
        order; a value the grid lacks is an error. An empty result is allowed."""
        wanted = []
        for name, chosen, held in (
            ("traits", traits, self.traits),
            ("layers", layers, self.layers),
            ("methods", methods, self.methods),
        ):
            chosen_set = set(held if chosen is None else chosen)
            unknown = sorted(chosen_set - set(held), key=str)
            if unknown:
                raise ValueError(f"{name} {unknown} are not in this grid; it has {name} {held}")
            wanted.append(chosen_set)
        rows = [
            i
            for i, k in enumerate(self.keys)
            if all(v in s for v, s in zip(k, wanted, strict=True))
        ]
        return VectorGrid(tuple(self.keys[i] for i in rows), self.matrix[rows])

    def trait_cosines(self, layer: int, method: str) -> pd.DataFrame:
        """Traits × traits cosine table of the vectors at one layer and method."""
        part = self.select(layers=[layer], methods=[method])
        if len(part) == 0:
            raise ValueError(f"no vectors at layer {layer} with method {method!r} in this grid")
        sim = pairwise_cosine_matrix({k[0]: v for k, v in part.to_dict().items()}).numpy()
        return pd.DataFrame(sim, index=part.traits, columns=part.traits)

    def trait_pairs(self, layer: int, method: str) -> pd.DataFrame:
        """Every pair of different traits at one layer and method with its cosine, most
        aligned first: columns ``trait_a``, ``trait_b``, ``cosine``."""
        table = self.trait_cosines(layer, method)
        names = list(table.index)
        pairs = [
            {"trait_a": a, "trait_b": b, "cosine": float(table.loc[a, b])}
            for i, a in enumerate(names)
            for b in names[i + 1 :]
        ]
        frame = pd.DataFrame(pairs, columns=["trait_a", "trait_b", "cosine"])
        return frame.sort_values("cosine", ascending=False, ignore_index=True)

    def layer_to_layer(self, method: str) -> pd.DataFrame:
        """How much each trait's direction turns with depth: traits × consecutive layer pairs
        (columns like ``L6→L9``), the cosine of the trait's vectors at the two layers."""
        steps = list(pairwise(self.layers))
        table = {
            f"L{a}→L{b}": [
                float(cosine_similarity(self.vector(t, a, method), self.vector(t, b, method)))
                for t in self.traits
            ]
            for a, b in steps
        }
        return pd.DataFrame(table, index=pd.Index(self.traits, name="trait"))

    def similarity_by_layer(self) -> pd.DataFrame:
        """Per layer and method: the mean and largest |cosine| between different traits, and
        the mean cosine of each trait's vector with its own vectors from the other methods
        (``method_agreement``, NaN with one method)."""
        rows = []
        for layer in self.layers:
            for method in self.methods:
                pairs = self.trait_pairs(layer, method)["cosine"].abs()
                others = [
                    float(
                        cosine_similarity(self.vector(t, layer, method), self.vector(t, layer, m))
                    )
                    for t in self.traits
                    for m in self.methods
                    if m != method and (t, layer, m) in self.keys
                ]
                rows.append(
                    {
                        "layer": layer,
                        "method": method,
                        "mean_abs_cosine": float(pairs.mean()) if len(pairs) else np.nan,
                        "max_abs_cosine": float(pairs.max()) if len(pairs) else np.nan,
                        "method_agreement": float(np.mean(others)) if others else np.nan,
                    }
                )
        return pd.DataFrame(rows)


def _available(folder: Path, component: str) -> dict[str, list[int]]:
    """``{method: [layers]}`` of the vector files in one extraction folder."""
    methods_dir = vector_path(folder, component, "_", 0).parent.parent
    found: dict[str, list[int]] = {}
    if not methods_dir.is_dir():
        return found
    for method_dir in sorted(p for p in methods_dir.iterdir() if p.is_dir()):
        layers = []
        for file in method_dir.iterdir():
            tail = file.stem.rsplit("_", 1)[-1]
            layer = int(tail) if tail.isdigit() else -1
            if layer >= 0 and vector_path(folder, component, method_dir.name, layer) == file:
                layers.append(layer)
        if layers:
            found[method_dir.name] = sorted(layers)
    return found


def _degenerate(folder: Path, component: str) -> dict[tuple[str, int], str]:
    """``{(method, layer): reason}`` of the vectors an extraction skipped as degenerate."""
    return {
        (method, layer): str(row["degenerate"])
        for (comp, method, layer), row in read_log(folder).items()
        if comp == component and "degenerate" in row
    }


def _method_order(name: str) -> tuple[int, str]:
    return (METHODS.index(name) if name in METHODS else len(METHODS), name)


def load_vector_grid(
    experiment: str,
    traits: Sequence[str],
    layers: Sequence[int] | range | None = None,
    methods: Sequence[str] | None = None,
    variant: str = "instruct",
    component: str = "residual",
    root: str | None = None,
) -> VectorGrid:
    """Load every (trait, layer, method) vector of an experiment's extractions into a grid.

    ``layers=None`` takes every layer found for the traits and ``methods=None`` every method
    found except the random baseline (in :data:`trait_lab.extraction.methods.METHODS` order). Every
    combination must exist; a missing trait, method or layer is an error that names it, what
    is there, and the ``run_extraction`` call that writes it. Vectors come back as float32.
    A layer the extraction skipped as degenerate (no direction there, see
    :class:`~trait_lab.extraction.methods.DegenerateLayerError`) is left out of
    ``layers=None`` with a warning, and named with its reason when asked for explicitly.

    Example:
        >>> grid = load_vector_grid("default", ["optimism", "humour"], layers=[9, 15],
        ...                         methods=["mean_diff", "probe"])  # doctest: +SKIP
        >>> grid.labels[:2], grid.matrix.shape  # doctest: +SKIP
        (['optimism·L9·mean_diff', 'optimism·L9·probe'], torch.Size([8, 576]))
    """
    if isinstance(traits, str) or not traits:
        raise ValueError(f"traits must be a non-empty list of trait names, got {traits!r}")
    if len(set(traits)) != len(traits):
        raise ValueError(f"traits {list(traits)} has duplicates; name each trait once")
    folders = {t: extraction_dir(experiment, t, variant, root) for t in traits}
    available = {t: _available(folder, component) for t, folder in folders.items()}
    for trait, found in available.items():
        if not found:
            raise FileNotFoundError(
                f"no {component} vectors for trait {trait!r} in experiment {experiment!r} "
                f"(variant {variant!r}) at {folders[trait]}; run "
                f"run_extraction({experiment!r}, {trait!r}, {variant!r}) first"
            )
    if methods is None:
        found_methods = {m for found in available.values() for m in found}
        methods = sorted(found_methods - set(DEFAULT_EXCLUDED), key=_method_order)
    skipped = {t: _degenerate(folder, component) for t, folder in folders.items()}
    if layers is None:
        layers = sorted({la for found in available.values() for ls in found.values() for la in ls})
        bad = sorted({la for t in traits for m, la in skipped[t] if m in methods})
        if bad:
            logger.warning("leaving out layer(s) %s: skipped as degenerate by an extraction", bad)
            layers = [la for la in layers if la not in bad]
    if not methods or not list(layers):
        raise ValueError(f"nothing to load: methods={list(methods)}, layers={list(layers)}")
    keys: list[Key] = []
    for trait in traits:
        found = available[trait]
        for method in methods:
            if method not in found and method not in METHODS:
                raise ValueError(
                    f"unknown method {method!r}; extraction methods are {list(METHODS)} and "
                    f"trait {trait!r} has {sorted(found, key=_method_order)}"
                )
            if method not in found:
                raise FileNotFoundError(
                    f"trait {trait!r} has no {method!r} vectors in {folders[trait]}; it has "
                    f"methods {sorted(found, key=_method_order)}. Run run_extraction("
                    f"{experiment!r}, {trait!r}, {variant!r}, methods=[{method!r}]) first, or "
                    "pick from those"
                )
            missing = [la for la in layers if la not in found[method]]
            hit = [la for la in missing if (method, la) in skipped[trait]]
            if hit:
                raise ValueError(
                    f"trait {trait!r} has no {method!r} vector at layer(s) {hit}: the extraction "
                    f"skipped them as degenerate ({skipped[trait][(method, hit[0])]}). Choose "
                    f"other layers; it has layers {found[method]}"
                )
            if missing:
                raise FileNotFoundError(
                    f"trait {trait!r} has no {method!r} vector at layer(s) {missing} in "
                    f"{folders[trait]}; it has layers {found[method]}. Pick from those, or run "
                    f"run_extraction({experiment!r}, {trait!r}, {variant!r}, layers=[...]) "
                    "with the missing layers first"
                )
        keys.extend((trait, int(la), method) for la in layers for method in methods)
    vectors = {}
    for key in keys:
        loaded = load_vector(vector_path(folders[key[0]], component, key[2], key[1]))
        assert isinstance(loaded, torch.Tensor)
        vectors[key] = loaded
    return VectorGrid.from_mapping(vectors)
