"""Extraction methods: turn positive and negative activations into one unit trait vector.

``get_method(name)`` returns a method object whose ``extract(pos_acts, neg_acts, **options)``
gives a :class:`MethodResult`. Every method upcasts to float32 first (float16 and bfloat16
storage is common), validates its inputs with messages that say what to fix, and returns a
float32 CPU unit vector oriented so positives project higher than negatives — except
``random_baseline``, a seeded random direction that should score near chance. Two poles with
identical activations (the same rows, e.g. at a token both poles share before they differ)
raise :class:`DegenerateLayerError` from every method, as does a method that finds no
direction (a zero vector); sweeps over layers record such a layer and go on.

========================  ====================================================================
``mean_diff``             mean(pos) − mean(neg).
``probe``                 logistic regression on row-normalised activations (each sample scaled
                          to unit norm, so the fit ignores the model's activation scale).
``gradient``              Adam on a unit direction, maximising a Fisher-like separation ratio.
``random_baseline``       seeded random unit vector: the floor every real method must beat.
``rfm``                   top AGOP eigenvector of a Recursive Feature Machine (see
                          :mod:`trait_lab.extraction.rfm`), hyper-parameters chosen on a
                          validation split.
========================  ====================================================================

Example:
    >>> import torch
    >>> pos, neg = torch.randn(8, 4) + torch.tensor([3.0, 0, 0, 0]), torch.randn(8, 4)
    >>> result = get_method("mean_diff").extract(pos.half(), neg.half())
    >>> result["vector"].dtype, round(float(result["vector"].norm()), 4), list(result)
    (torch.float32, 1.0, ['vector', 'method', 'raw_norm', 'flipped'])
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from trait_lab.extraction.rfm import rfm_direction

METHODS: tuple[str, ...] = ("mean_diff", "probe", "gradient", "random_baseline", "rfm")


class DegenerateLayerError(ValueError):
    """No direction separates the poles here (identical activations, or a zero vector).

    Raised by every method's ``extract``; the message names the cause and the fix (another
    layer or position). Sweeps over layers catch it and record the layer as degenerate.

    Example:
        >>> import torch
        >>> acts = torch.ones(4, 3)
        >>> try:
        ...     get_method("probe").extract(acts, acts)
        ... except DegenerateLayerError as exc:
        ...     print(str(exc)[:37])
        the positive and negative activations
    """


_FIELD_KEYS: tuple[str, ...] = ("vector", "method")  # the keys before the diagnostics


@dataclass(frozen=True, eq=False)
class MethodResult(Mapping[str, Any]):
    """One extracted vector, readable as the documented dict or by attribute.

    The keys are ``"vector"`` (fp32 CPU, unit norm; also ``result.vector``), ``"method"``
    (also ``result.method``) and the method's diagnostics, JSON-safe scalars also kept as the
    dict ``result.diagnostics`` (``train_accuracy`` for probe, ``bandwidth`` and ``val_auc``
    for rfm, ``flipped`` for every oriented method, …). ``dict(result)``, ``"x" in result``,
    ``result.get("x")`` and iteration work as on a dict; an unknown key is a ``KeyError``
    listing the keys there are. Results compare by identity (they hold a tensor).

    Example:
        >>> result = MethodResult(torch.tensor([1.0, 0.0]), "mean_diff", {"raw_norm": 2.0})
        >>> list(result), result["raw_norm"], result.get("bandwidth"), "vector" in result
        (['vector', 'method', 'raw_norm'], 2.0, None, True)
    """

    vector: torch.Tensor
    method: str
    diagnostics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clash = sorted(set(_FIELD_KEYS) & set(self.diagnostics))
        if clash:
            raise ValueError(
                f"diagnostics use the reserved key(s) {clash}, which name the result's own "
                "fields; rename those diagnostics"
            )

    def __getitem__(self, key: str) -> Any:
        if key in _FIELD_KEYS:
            return getattr(self, key)
        try:
            return self.diagnostics[key]
        except (KeyError, TypeError):
            raise KeyError(
                f"{key!r} is not a key of this {self.method} result; its keys are {list(self)}"
            ) from None

    def __iter__(self) -> Iterator[str]:
        yield from _FIELD_KEYS
        yield from self.diagnostics

    def __len__(self) -> int:
        return len(_FIELD_KEYS) + len(self.diagnostics)

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)


def _as_float32(acts: Any, label: str) -> torch.Tensor:
    """Validate one activation set and return it as a float32 CPU tensor."""
    if isinstance(acts, np.ndarray):
        if not np.issubdtype(acts.dtype, np.floating):
            raise TypeError(f"{label} has dtype {acts.dtype}; pass floating-point activations")
        acts = torch.from_numpy(acts.astype(np.float32))
    if not isinstance(acts, torch.Tensor):
        raise TypeError(f"{label} must be a torch tensor or numpy array, got {type(acts).__name__}")
    if not acts.dtype.is_floating_point:
        raise TypeError(f"{label} has dtype {acts.dtype}; pass floating-point activations")
    if acts.dim() != 2 or acts.shape[1] == 0:
        raise ValueError(
            f"{label} must be 2-D [n_samples, hidden], got shape {tuple(acts.shape)}; "
            "for one sample use acts[None], for [n, seq, hidden] select a position first"
        )
    out = acts.detach().to(device="cpu", dtype=torch.float32)
    n_nan, n_inf = int(torch.isnan(out).sum()), int(torch.isinf(out).sum())
    if n_nan or n_inf:
        rows = int((~torch.isfinite(out)).any(dim=1).sum())
        raise ValueError(
            f"{label} has {n_nan} NaN and {n_inf} inf values (in {rows} of {len(out)} rows); "
            "drop or recapture those samples before extracting"
        )
    return out


def _unit(vec: torch.Tensor, what: str) -> torch.Tensor:
    norm = float(vec.norm())
    if norm == 0.0:
        raise DegenerateLayerError(
            f"{what} has norm 0.0: it finds no direction that separates the positive from the "
            "negative activations at this layer. Use another layer or position (or method)."
        )
    if not np.isfinite(norm):
        raise ValueError(f"{what} has norm {norm}, so it has no direction to normalise")
    return vec / norm


def _row_shares(acts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct rows of ``acts`` (sorted) and the share of rows each one makes up."""
    rows, counts = torch.unique(acts, dim=0, return_counts=True)
    return rows, counts.double() / len(acts)


def _check_separable(pos: torch.Tensor, neg: torch.Tensor) -> None:
    """Raise :class:`DegenerateLayerError` when both poles hold the same rows in equal shares."""
    pos_rows, pos_share = _row_shares(pos)
    neg_rows, neg_share = _row_shares(neg)
    if torch.equal(pos_rows, neg_rows) and torch.equal(pos_share, neg_share):
        what = "one and the same vector" if len(pos_rows) == 1 else "the same rows"
        raise DegenerateLayerError(
            f"the positive and negative activations are identical ({what}, {len(pos)} positive "
            f"and {len(neg)} negative): mean(pos_acts) equals mean(neg_acts) exactly and no "
            "direction separates the two poles at this layer. "
            "This happens where the activations do not depend on the pole yet (e.g. the "
            "embedding layer, or a token both poles share before they differ); pick another "
            "layer or position."
        )


def _orient(vec: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Flip ``vec`` if needed so mean(pos · v) > mean(neg · v); return (vec, flipped)."""
    flipped = bool((pos @ vec).mean() < (neg @ vec).mean())
    return (-vec if flipped else vec), flipped


class ExtractionMethod:
    """Base class: validates inputs and options, then calls ``_extract`` on float32 tensors.

    Subclasses set ``name``, ``min_per_class`` and ``defaults`` (every accepted option with its
    default value) and implement ``_extract(pos, neg, **options) -> (vector, diagnostics)``.
    """

    name: ClassVar[str]
    min_per_class: ClassVar[int] = 1
    defaults: ClassVar[dict[str, Any]] = {}
    orient: ClassVar[bool] = True

    def extract(self, pos_acts: Any, neg_acts: Any, **options: Any) -> MethodResult:
        """Extract a unit trait vector from ``[n_pos, hidden]`` and ``[n_neg, hidden]`` sets.

        Example:
            >>> import torch
            >>> res = get_method("probe").extract(torch.randn(6, 3) + 2, torch.randn(6, 3))
            >>> res["method"], res["vector"].shape, "train_accuracy" in res
            ('probe', torch.Size([3]), True)
        """
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"{self.name} got unknown option(s) {unknown}; valid options: "
                f"{sorted(self.defaults) or 'none'}"
            )
        pos = _as_float32(pos_acts, "pos_acts")
        neg = _as_float32(neg_acts, "neg_acts")
        if pos.shape[1] != neg.shape[1]:
            raise ValueError(
                f"pos_acts has hidden size {pos.shape[1]} but neg_acts has {neg.shape[1]}; "
                "both sets must come from the same layer of the same model"
            )
        if min(len(pos), len(neg)) < self.min_per_class:
            why = " (it holds out a validation split)" if self.name == "rfm" else ""
            alt = "" if self.min_per_class == 1 else " or use 'mean_diff' (1 per class)"
            raise ValueError(
                f"{self.name} needs at least {self.min_per_class} sample(s) per class{why}, got "
                f"{len(pos)} positive and {len(neg)} negative; add examples{alt}"
            )
        _check_separable(pos, neg)
        vec, diagnostics = self._extract(pos, neg, **{**self.defaults, **options})
        vec = _unit(vec.to(torch.float32), f"the {self.name} vector")
        if self.orient:
            vec, flipped = _orient(vec, pos, neg)
            diagnostics["flipped"] = flipped
        return MethodResult(vector=vec.contiguous(), method=self.name, diagnostics=diagnostics)

    def _extract(
        self, pos: torch.Tensor, neg: torch.Tensor, **options: Any
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class MeanDiff(ExtractionMethod):
    """mean(pos) − mean(neg), normalised: the fast, robust baseline."""

    name = "mean_diff"

    def _extract(
        self, pos: torch.Tensor, neg: torch.Tensor, **options: Any
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        diff = pos.mean(dim=0) - neg.mean(dim=0)
        norm = float(diff.norm())
        if norm == 0.0:
            raise DegenerateLayerError(
                "mean(pos_acts) equals mean(neg_acts) exactly, so there is no mean direction "
                "at this layer; use another layer or position, or a method that looks past "
                "the means ('probe', 'rfm')"
            )
        return diff, {"raw_norm": norm}


class Probe(ExtractionMethod):
    """Logistic regression on row-normalised activations; the coefficient direction."""

    name = "probe"
    min_per_class = 2
    defaults: ClassVar[dict[str, Any]] = {"C": 1.0, "max_iter": 1000}

    def _extract(
        self, pos: torch.Tensor, neg: torch.Tensor, **options: Any
    ) -> tuple[torch.Tensor, dict[str, Any]]:

        x = torch.cat([pos, neg]).double().numpy()
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        clf = LogisticRegression(C=float(options["C"]), max_iter=int(options["max_iter"]))
        clf.fit(x, y)
        coef = torch.from_numpy(clf.coef_[0].copy())
        diagnostics = {
            "C": float(options["C"]),
            "train_accuracy": float(clf.score(x, y)),
            "iterations": int(np.max(clf.n_iter_)),
            "converged": bool(np.max(clf.n_iter_) < int(options["max_iter"])),
            "coef_norm": float(coef.norm()),
            "intercept": float(clf.intercept_[0]),
        }
        return coef, diagnostics


def ledoit_wolf_shrinkage(centred: torch.Tensor) -> float:
    """Ledoit–Wolf shrinkage intensity in [0, 1] for rows that are already centred.

    Same estimate as ``sklearn.covariance.ledoit_wolf_shrinkage(x, assume_centered=True)``,
    computed through the ``[n, n]`` Gram matrix so it never forms a ``[hidden, hidden]`` one.
    """
    x = centred.double()
    n, d = x.shape
    row_sq = x.pow(2).sum(dim=1)  # ‖x_k‖²
    mu = float(row_sq.sum()) / (n * d)  # trace(S) / d with S = xᵀx / n
    frob_sq = float((x @ x.T).pow(2).sum()) / n**2  # ‖S‖_F²
    beta = (float(row_sq.pow(2).sum()) / n - frob_sq) / (n * d)
    delta = (frob_sq - 2 * mu * float(row_sq.sum()) / n + d * mu**2) / d
    return 0.0 if delta <= 0 else min(max(beta, 0.0), delta) / delta


class Gradient(ExtractionMethod):
    """Adam on ``v = w / ‖w‖`` maximising gap / sqrt(pooled variance along v): a Fisher ratio.

    The objective minimised is ``-(mean(pos·v) - mean(neg·v)) / sqrt(s_v + eps)`` with
    ``s_v = (1 - λ)(var(pos·v) + var(neg·v)) + λ (tr Σ_pos + tr Σ_neg) / hidden``. With fewer
    samples than dimensions the unshrunk ratio (λ = 0) is maximised by directions of spurious
    near-zero variance, so ``shrinkage`` λ defaults to ``"auto"``: the Ledoit–Wolf estimate on
    the class-centred activations. λ = 1 reduces to mean_diff; a float in [0, 1] fixes it.
    """

    name = "gradient"
    min_per_class = 2
    defaults: ClassVar[dict[str, Any]] = {
        "lr": 0.03,
        "steps": 300,
        "init": "mean_diff",
        "shrinkage": "auto",
        "seed": 0,
    }

    def _extract(
        self, pos: torch.Tensor, neg: torch.Tensor, **options: Any
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        init, hidden, steps = options["init"], pos.shape[1], int(options["steps"])
        if init == "mean_diff":
            w0 = MeanDiff()._extract(pos, neg)[0]
        elif init == "random":
            w0 = torch.randn(hidden, generator=torch.Generator().manual_seed(int(options["seed"])))
        else:
            raise ValueError(f"gradient init must be 'mean_diff' or 'random', got {init!r}")
        # The ratio is shift- and scale-invariant; unit-scale data keeps lr meaningful whatever
        # the model's activation scale, and class-centred data gives the variances directly.
        p_c, n_c = pos - pos.mean(dim=0), neg - neg.mean(dim=0)
        scale = float(torch.cat([p_c, n_c]).pow(2).sum(dim=1).mean().sqrt()) or 1.0
        gap_vec = (pos.mean(dim=0) - neg.mean(dim=0)) / scale
        p_c, n_c = p_c / scale, n_c / scale
        shrink = options["shrinkage"]
        if shrink == "auto":
            shrink = ledoit_wolf_shrinkage(torch.cat([p_c, n_c]))
        elif not isinstance(shrink, (int, float)) or not 0.0 <= shrink <= 1.0:
            raise ValueError(f"gradient shrinkage must be 'auto' or in [0, 1], got {shrink!r}")
        shrink = float(shrink)
        iso = (p_c.pow(2).sum() / (len(p_c) - 1) + n_c.pow(2).sum() / (len(n_c) - 1)) / hidden
        # ‖w‖ = sqrt(hidden) keeps each coordinate O(1), so lr is a relative step per coordinate.
        w = (_unit(w0, "the gradient init") * hidden**0.5).requires_grad_(True)
        optimiser = torch.optim.Adam([w], lr=float(options["lr"]))

        def objective() -> torch.Tensor:
            v = w / w.norm()
            var = (p_c @ v).pow(2).sum() / (len(p_c) - 1) + (n_c @ v).pow(2).sum() / (len(n_c) - 1)
            return -(gap_vec @ v) / torch.sqrt((1 - shrink) * var + shrink * iso + 1e-8)

        with torch.no_grad():
            start = float(objective())
        for _ in range(steps):
            optimiser.zero_grad()
            loss = objective()
            loss.backward()
            optimiser.step()
        with torch.no_grad():
            final = float(objective())
        diagnostics = {
            "initial_objective": start,
            "final_objective": final,
            "steps": steps,
            "lr": float(options["lr"]),
            "init": str(init),
            "shrinkage": shrink,
        }
        return w.detach(), diagnostics


class RandomBaseline(ExtractionMethod):
    """A seeded random unit vector (never flipped): the chance-level floor."""

    name = "random_baseline"
    defaults: ClassVar[dict[str, Any]] = {"seed": 0}
    orient = False

    def _extract(
        self, pos: torch.Tensor, neg: torch.Tensor, **options: Any
    ) -> tuple[torch.Tensor, dict[str, Any]]:
        seed = int(options["seed"])
        vec = torch.randn(pos.shape[1], generator=torch.Generator().manual_seed(seed))
        return vec, {"seed": seed}


class RFM(ExtractionMethod):
    """Recursive Feature Machine direction; see :func:`trait_lab.extraction.rfm.rfm_direction`."""

    name = "rfm"
    min_per_class = 4
    defaults: ClassVar[dict[str, Any]] = {
        "bandwidths": (0.25, 0.5, 1.0, 2.0),
        "center_grads": (True, False),
        "iters": 3,
        "reg": 1e-3,
        "val_fraction": 0.25,
        "refit": True,
        "seed": 0,
    }

    def _extract(
        self, pos: torch.Tensor, neg: torch.Tensor, **options: Any
    ) -> tuple[torch.Tensor, dict[str, Any]]:

        if isinstance(options["center_grads"], bool):
            options["center_grads"] = (options["center_grads"],)
        if isinstance(options["bandwidths"], (int, float)):
            options["bandwidths"] = (float(options["bandwidths"]),)
        if not 0.0 < float(options["val_fraction"]) < 1.0:
            raise ValueError(f"rfm val_fraction must be in (0, 1), got {options['val_fraction']}")
        return rfm_direction(pos, neg, **options)


_REGISTRY: dict[str, type[ExtractionMethod]] = {
    cls.name: cls for cls in (MeanDiff, Probe, Gradient, RandomBaseline, RFM)
}


def get_method(name: str) -> ExtractionMethod:
    """Return the extraction method called ``name`` (one of :data:`METHODS`).

    Example:
        >>> get_method("probe").name
        'probe'
    """
    cls = _REGISTRY.get(name)
    if cls is None:
        close = difflib.get_close_matches(str(name), METHODS, n=1, cutoff=0.0)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown extraction method {name!r}; valid: {', '.join(METHODS)}{hint}")
    return cls()
