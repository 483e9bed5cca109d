"""Explore the geometry of a set of trait vectors (traits × layers × methods) interactively.

Pick a subset of traits, layers and methods and one of four views: the pairwise ``cosine``
heatmap, a ``PCA`` scatter of the unit vectors, ``RSA`` (how similar the traits' cosine
matrices are from layer to layer) and k-means ``clusters``. Every number comes from
:mod:`trait_lab.math.linalg`; this module only selects, labels and draws.

Example:
    >>> import torch
    >>> gen = torch.Generator().manual_seed(0)
    >>> vectors = {(t, layer, "probe"): torch.randn(16, generator=gen)
    ...            for t in ("joy", "calm", "rage") for layer in (4, 8)}
    >>> explorer = GeometryExplorer(vectors)
    >>> shown = explorer.shown()
    >>> shown.labels[:2], shown.matrix.shape, float(shown.matrix[0, 0])
    (['joy·L4·probe', 'joy·L8·probe'], (6, 6), 1.0)
    >>> explorer.layer_picker.value = (8,)
    >>> explorer.figure.data[0].x
    ('joy·L8·probe', 'calm·L8·probe', 'rage·L8·probe')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

import ipywidgets as w
import numpy as np
import plotly.graph_objects as go
import torch

from trait_lab.math import (
    pairwise_cosine_matrix,
    pca,
    representational_similarity,
    tensor_arg,
    trait_clusters,
)
from trait_lab.vectors import VectorGrid
from widgets.common.export import ExportBar, default_stem
from widgets.common.figures import replace_figure
from widgets.geometry.figures import cosine_heatmap, message_figure, pca_scatter

VIEWS = ("cosine", "PCA", "RSA", "clusters")
MAX_DEFAULT = 30  # vectors selected at start: all, or as many middle layers as fit
K_CAP = 20  # the k slider's top: more clusters than this cannot be read off a heatmap


@dataclass(frozen=True)
class GeometryView:
    """What a view shows. ``matrix`` is the cosine matrix [N, N] (``cosine``; ``clusters``,
    rows reordered by cluster), PC scores [N, 2] (``PCA``) or the layer × layer RSA matrix
    (``RSA``, ``labels`` like ``L12``). ``explained`` holds PCA's variance ratios and
    ``groups`` each row's cluster (1, 2, …; clusters numbered in grid order). When the
    selection cannot be shown, ``message`` says why and ``labels`` is empty."""

    view: str
    labels: list[str]
    matrix: np.ndarray
    keys: list[tuple[str, int, str]] = field(default_factory=list)
    explained: np.ndarray | None = None
    groups: list[int] | None = None
    message: str = ""
    title: str = ""


def _empty(view: str, message: str) -> GeometryView:
    return GeometryView(view, [], np.zeros((0, 0)), message=message)


def _count(grid: VectorGrid) -> str:
    parts = [
        (len(grid.traits), "trait"),
        (len(grid.layers), "layer"),
        (len(grid.methods), "method"),
    ]
    return " × ".join(f"{n} {name}{'s' * (n != 1)}" for n, name in parts)


def _listed(names: Sequence[object], limit: int = 6) -> str:
    shown = [str(x) for x in names]
    return ", ".join(shown if len(shown) <= limit else [*shown[:limit], f"… ({len(shown)} in all)"])


def _which(grid: VectorGrid) -> str:
    """A title's second line: which traits, layers and methods are shown."""
    layers = [f"L{la}" for la in grid.layers]
    return (
        f"<br><sub>traits {_listed(grid.traits)} · layers {_listed(layers)} · "
        f"methods {_listed(grid.methods)}</sub>"
    )


def k_range(n: int) -> tuple[int, int]:
    """The k slider's (min, max) for ``n`` picked vectors: 2 … min(n − 1, ``K_CAP``), at least 2.

    Example:
        >>> k_range(90), k_range(6), k_range(2)
        ((2, 20), (2, 5), (2, 2))
    """
    return 2, max(2, min(n - 1, K_CAP))


def compute_view(grid: VectorGrid, view: str, k: int = 3) -> GeometryView:
    """The numbers behind one view of the vectors in ``grid``; see :class:`GeometryView`.

    Example:
        >>> grid = VectorGrid.from_mapping({("a", 1, "probe"): torch.tensor([1.0, 0.0]),
        ...                                 ("b", 1, "probe"): torch.tensor([0.6, 0.8])})
        >>> compute_view(grid, "cosine").matrix
        array([[1. , 0.6],
               [0.6, 1. ]], dtype=float32)
        >>> compute_view(grid, "RSA").message
        'RSA needs at least 3 traits (picked 2) and 2 layers (picked 1)'
    """
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; choose one of {list(VIEWS)}")
    n, keys, labels = len(grid), list(grid.keys), grid.labels
    if view == "RSA":
        return _rsa(grid)
    least = 3 if view == "PCA" else 2
    if n < least:
        return _empty(view, f"pick at least {least} vectors for the {view} view (picked {n})")
    named = dict(zip(labels, grid.matrix, strict=True))
    if view == "cosine":
        sim = pairwise_cosine_matrix(named).numpy()
        title = f"cosine similarity of {n} vectors ({_count(grid)}){_which(grid)}"
        return GeometryView(view, labels, sim, keys, title=title)
    if view == "PCA":
        unit = grid.matrix.double() / torch.linalg.vector_norm(grid.matrix.double(), dim=1)[:, None]
        _, ratio, coords = pca(unit, 2)
        title = f"PCA of {n} unit vectors ({_count(grid)}){_which(grid)}"
        return GeometryView(view, labels, coords.numpy(), keys, ratio.numpy(), title=title)
    if not 2 <= k <= n:
        return _empty(view, f"k={k} clusters needs 2 ≤ k ≤ {n} (the number of vectors picked)")
    raw, _, inertia = trait_clusters(named, k)
    first = list(dict.fromkeys(raw.tolist()))  # number clusters in grid order: 1, 2, …
    groups = [first.index(c) + 1 for c in raw.tolist()]
    order = sorted(range(n), key=lambda i: groups[i])  # stable: grid order within a cluster
    sim = pairwise_cosine_matrix(named).numpy()[np.ix_(order, order)]
    title = (
        f"{k} k-means clusters of {n} vectors (inertia {inertia:.2f}), cosine reordered"
        f"{_which(grid)}"
    )
    return GeometryView(
        view,
        [labels[i] for i in order],
        sim,
        [keys[i] for i in order],
        groups=[groups[i] for i in order],
        title=title,
    )


def _rsa(grid: VectorGrid) -> GeometryView:
    traits, layers, methods = grid.traits, grid.layers, grid.methods
    if len(traits) < 3 or len(layers) < 2:
        return _empty(
            "RSA",
            f"RSA needs at least 3 traits (picked {len(traits)}) and 2 layers "
            f"(picked {len(layers)})",
        )
    items = [(t, m) for t in traits for m in methods]
    missing = [f"{t}·L{la}·{m}" for la in layers for t, m in items if (t, la, m) not in grid.keys]
    if missing:
        return _empty("RSA", f"RSA needs every trait × method at every layer; missing {missing}")
    by_layer = {la: {f"{t}·{m}": grid.vector(t, la, m) for t, m in items} for la in layers}
    try:
        rsa, ordered = representational_similarity(by_layer)
    except ValueError as exc:  # e.g. all cosines tied at a layer
        return _empty("RSA", str(exc))
    what = f"{len(traits)} traits" if len(methods) == 1 else f"{len(items)} trait×method vectors"
    title = f"RSA: Spearman ρ between layers' cosine matrices ({what}){_which(grid)}"
    return GeometryView("RSA", [f"L{la}" for la in ordered], rsa.numpy(), title=title)


def view_figure(shown: GeometryView) -> go.Figure:
    """The figure of a computed view (a message figure when there is nothing to show)."""
    if shown.message:
        return message_figure(shown.message, f"{shown.view}: nothing to show")
    if shown.view == "PCA":
        assert shown.explained is not None
        return pca_scatter(shown.matrix, shown.explained.tolist(), shown.keys, shown.title)
    if shown.view == "RSA":
        return cosine_heatmap(
            shown.labels, shown.matrix, shown.title, axis_title="layer", value_name="Spearman ρ"
        )
    return cosine_heatmap(shown.labels, shown.matrix, shown.title, groups=shown.groups)


def _as_grid(vectors: object) -> VectorGrid:
    if isinstance(vectors, VectorGrid):
        grid = vectors
    elif isinstance(vectors, Mapping):
        for key, vector in vectors.items():  # from_mapping casts to float: complex would lose
            tensor_arg(vector, f"vectors[{key!r}]", (1,), "[hidden]")  # its imaginary part
        grid = VectorGrid.from_mapping(vectors)
    else:
        raise TypeError(
            f"GeometryExplorer needs a VectorGrid (trait_lab.vectors.grids.load_vector_grid) or a "
            f"{{(trait, layer, method): vector}} dict, got {type(vectors).__name__}"
        )
    if len(grid) == 0:
        raise ValueError("the vector set is empty; load at least one vector")
    zero = [lab for lab, v in zip(grid.labels, grid.matrix, strict=True) if not bool(v.any())]
    if zero:
        raise ValueError(f"vectors {zero} are all zeros and have no direction; drop them")
    return grid


def _default_layers(grid: VectorGrid) -> list[int]:
    layers = grid.layers
    fit = max(1, MAX_DEFAULT // max(1, len(grid) // len(layers)))
    start = max(0, (len(layers) - fit) // 2)
    return layers[start : start + fit]


class GeometryExplorer(w.VBox):
    """Cosine / PCA / RSA / cluster views of a set of trait vectors, with subset pickers.

    Args:
        vectors: a :class:`~trait_lab.vectors.grids.VectorGrid` or ``{(trait, layer, method):
            [hidden] vector}``.
        traits: the starting selection of traits (default: every trait).
        layers: the starting selection of layers (default: as many middle layers as keep the
            selection to about 30 vectors).
        methods: the starting selection of methods (default: every method).
        view: one of ``"cosine"``, ``"PCA"``, ``"RSA"``, ``"clusters"``.
        k: the number of clusters in the ``clusters`` view (default: one per picked trait); the
            slider runs from 2 to :func:`k_range` of the picked vectors (at most ``K_CAP``).
        export_stem: the ExportBar's file name (default: ``figures/geometry_<view>``, following
            the view until you type your own).

    Attributes: the controls ``trait_picker``, ``layer_picker``, ``method_picker``
    (SelectMultiple; ``traits`` is taken by ipywidgets' HasTraits), ``view``
    (ToggleButtons), ``k`` (IntSlider), ``figure`` (a FigureWidget), ``status`` (HTML),
    ``export`` (ExportBar), ``grid`` (all vectors); :meth:`shown` returns what is drawn.
    """

    def __init__(
        self,
        vectors: VectorGrid | Mapping[tuple[str, int, str], Any],
        *,
        traits: Sequence[str] | None = None,
        layers: Sequence[int] | None = None,
        methods: Sequence[str] | None = None,
        view: str = "cosine",
        k: int | None = None,
        export_stem: str | None = None,
    ) -> None:
        self.grid = _as_grid(vectors)
        if view not in VIEWS:
            raise ValueError(f"unknown view {view!r}; choose one of {list(VIEWS)}")
        start = self.grid.select(traits, layers or _default_layers(self.grid), methods)
        box = w.Layout(width="220px")
        self.trait_picker = w.SelectMultiple(
            options=self.grid.traits, value=tuple(start.traits), description="traits", layout=box
        )
        self.layer_picker = w.SelectMultiple(
            options=[(f"L{la}", la) for la in self.grid.layers],
            value=tuple(start.layers),
            description="layers",
            layout=box,
        )
        self.method_picker = w.SelectMultiple(
            options=self.grid.methods, value=tuple(start.methods), description="methods", layout=box
        )
        for picker in (self.trait_picker, self.layer_picker, self.method_picker):
            picker.rows = min(8, max(3, len(picker.options)))
        self.view = w.ToggleButtons(options=list(VIEWS), value=view, description="view")
        low, high = k_range(len(start))
        k = min(high, max(low, len(start.traits))) if k is None else k
        if isinstance(k, bool) or not isinstance(k, int) or not low <= k <= high:
            raise ValueError(
                f"k={k!r} clusters: k must be an int from {low} to {high} for the {len(start)} "
                f"vectors picked (at most n − 1 and at most {K_CAP}); pass one in that range"
            )
        self.k = w.IntSlider(value=k, min=low, max=high, description="k clusters")
        self.trait_picker.add_class("tl-geo-traits")
        self.layer_picker.add_class("tl-geo-layers")
        self.method_picker.add_class("tl-geo-methods")
        self.view.add_class("tl-geo-view")
        self.k.add_class("tl-geo-k")
        self.status = w.HTML("")
        self.status.add_class("tl-geo-status")
        self.figure = go.FigureWidget()
        self._own_stem = export_stem is None
        self.export = ExportBar(lambda: self.figure, export_stem or default_stem("geometry", view))
        self._shown = _empty(view, "")
        self._rendering = False
        for control in (
            self.trait_picker,
            self.layer_picker,
            self.method_picker,
            self.view,
            self.k,
        ):
            control.observe(lambda _: self._render(), names="value")
        pickers = w.HBox([self.trait_picker, self.layer_picker, self.method_picker])
        controls = w.HBox([self.view, self.k])
        super().__init__([pickers, controls, self.status, self.figure, self.export])
        self.add_class("tl-geometry-explorer")
        self._render()

    def selection(self) -> VectorGrid:
        """The picked vectors, in grid order."""
        return self.grid.select(
            self.trait_picker.value, self.layer_picker.value, self.method_picker.value
        )

    def shown(self) -> GeometryView:
        """What the figure shows now: labels and the matrix or coordinates behind it."""
        return self._shown

    def _render(self) -> None:
        """Rebuild the figure from scratch for the controls' current values."""
        if self._rendering:  # fitting the k slider below sets k.value: one render is enough
            return
        self._rendering = True
        try:
            chosen = self.selection()
            low, high = k_range(len(chosen))
            self.k.max = max(high, self.k.min)  # widen before narrowing: min ≤ max always
            self.k.min, self.k.max = low, high  # clamps k.value into the new range
            self.k.layout.display = "" if self.view.value == "clusters" else "none"
            self._shown = compute_view(chosen, self.view.value, self.k.value)
            replace_figure(self.figure, view_figure(self._shown))
            if self._own_stem:
                self.export.suggest(default_stem("geometry", self.view.value))
        finally:
            self._rendering = False
        if self._shown.message:
            self.status.value = f"<span style='color:#b00020'>{escape(self._shown.message)}</span>"
        else:
            self.status.value = f"{len(chosen)} vectors: {_count(chosen)}"
