"""The configs HookedGenerator takes and the results and events it returns.

Example:
    >>> import torch
    >>> SteeringConfig(vector=torch.ones(4), layer=2, coefficient=[0.0, 4.0]).coefficient
    [0.0, 4.0]
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from trait_lab.core.records import check_int, invalid
from trait_lab.hooks.edits import MODES, Mode
from trait_lab.hooks.values import as_coefficient
from trait_lab.models.architectures import COMPONENTS

LayerActivations = dict[int, dict[str, torch.Tensor]]
"""Captured activations by layer, then component: ``acts[layer][component]`` is a tensor."""

SteeringMode = Mode  # the edits are defined once, in trait_lab.hooks.edits
STEERING_MODES: tuple[str, ...] = MODES


def _check_components(components: Sequence[str]) -> tuple[str, ...]:
    comps = (components,) if isinstance(components, str) else tuple(components)
    bad = [c for c in comps if c not in COMPONENTS]
    if bad or not comps:
        raise ValueError(f"unknown components {bad or comps}; allowed: {', '.join(COMPONENTS)}")
    return comps


@dataclass
class CaptureConfig:
    """What to record while generating.

    Args:
        layers: layer indices; ``None`` means every layer.
        components: any of ``trait_lab.models.architectures.COMPONENTS``.
        prompt: also return the prompt tokens' activations (pads removed).
        dtype: cast captures (``None`` keeps the model's dtype; bf16 saves fine).
    """

    layers: Sequence[int] | None = None
    components: Sequence[str] = ("residual",)
    prompt: bool = False
    dtype: torch.dtype | None = None

    def __post_init__(self) -> None:
        self.components = _check_components(self.components)


def _coefficients(value: Any) -> float | list[float]:
    """One coefficient, or one per row, as plain floats (numpy scalars and tensors included)."""
    if isinstance(value, (torch.Tensor, np.ndarray)) and value.ndim == 1:
        value = value.tolist()
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [as_coefficient(c, f"coefficient[{i}]") for i, c in enumerate(value)]
    return as_coefficient(value)


def _check_top_k(owner: str, top_k: Any) -> int | None:
    return None if top_k is None else check_int(owner, "top_k", top_k, minimum=1)


def _check_seed(owner: str, seed: Any) -> int | None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise invalid(owner, "seed", seed, "an int or None", "Pass a whole number, e.g. seed=0.")
    return None if seed is None else int(seed)


@dataclass
class SteeringConfig:
    """One steering vector for HookedGenerator.

    Args:
        vector: ``[hidden]``; added as ``coefficient * vector`` in mode ``"add"``; the other
            modes use its direction ``v̂`` only.
        layer: layer index (with ``component``) or a module path.
        coefficient: one number, or one per batch row — N coefficients in one batch instead of
            N runs. Its meaning follows ``mode``.
        mode: ``"add"``: ``h + c·v`` (0 leaves a row unsteered). ``"ablate"``: ``h − c·⟨h,v̂⟩v̂``
            (1 removes the direction, 0 leaves the row alone). ``"cap"``: a floor on the
            projection, ``h + max(0, c − ⟨h,v̂⟩)·v̂`` (traitinterp's activation capping).
            ``"ceiling"``: ``h − max(0, ⟨h,v̂⟩ − c)·v̂``. Capping changes every row it applies
            to whatever ``c`` is, so use ``rows=`` to leave a baseline row alone. The hooks
            (``SteeringHook``, ``AblationHook``, ``ActivationCappingHook``) apply the same
            edits (:func:`trait_lab.hooks.edits.apply_edit`).
        component: where to add it.
        positions: ``"all"`` (prompt and generated tokens), ``"response"`` (from the last
            prompt position — the one that predicts the first generated token — on),
            ``"prompt"`` (the rest: the prompt up to, not including, its last position), or an
            absolute ``(start, end)`` index range in the padded sequence (``end`` may be None).
        rows: restrict to these batch rows (``None`` means all rows).
    """

    vector: Any
    layer: int | str
    coefficient: float | Sequence[float] = 1.0
    component: str = "residual"
    positions: Literal["all", "response", "prompt"] | tuple[int, int | None] = "all"
    rows: Sequence[int] | None = None
    mode: SteeringMode = "add"

    def __post_init__(self) -> None:
        if self.mode not in STEERING_MODES:
            raise ValueError(
                f"unknown steering mode {self.mode!r}; choose one of {', '.join(STEERING_MODES)}"
            )
        self.coefficient = _coefficients(self.coefficient)
        if isinstance(self.positions, str):
            if self.positions not in ("all", "response", "prompt"):
                raise ValueError(
                    "positions must be 'all', 'response', 'prompt' or (start, end), got "
                    f"{self.positions!r}"
                )
        else:
            start, end = self.positions
            if not isinstance(start, int) or start < 0 or (end is not None and end < start):
                raise ValueError(
                    f"positions range must be (start >= 0, end >= start or None), got "
                    f"{self.positions!r}"
                )


#: traitinterp's backend names for the same types: one config type per concept. A backend call
#: takes them exactly as ``HookedGenerator`` does (``LocalBackend.generate_with_capture``
#: always returns the prompt's activations too, whatever ``CaptureSpec.prompt`` says).
SteeringSpec = SteeringConfig
CaptureSpec = CaptureConfig


@dataclass
class ProjectionSpec:
    """Project onto trait vectors while generating: ``{layer: [hidden] or [K, hidden]}``.

    Vectors are normalised; scores are ``h · v̂`` per token, and per-token norms come along
    so cosine scores are ``score / norm``.
    """

    vectors: dict[int, Any]
    component: str = "residual"

    def __post_init__(self) -> None:
        if not self.vectors:
            raise ValueError("ProjectionSpec.vectors is empty; give {layer: vector}")
        _check_components([self.component])


def _check_seeds(owner: str, seed: Any) -> int | list[int] | None:
    """One seed (every row), one per row, or None."""
    if isinstance(seed, (Sequence, np.ndarray, torch.Tensor)) and not isinstance(seed, str):
        seeds = [_check_seed(owner, s) for s in list(seed)]
        if not seeds or any(s is None for s in seeds):
            raise invalid(
                owner,
                "seed",
                seed,
                "an int, a non-empty list of ints (one per row) or None",
                "Pass e.g. seed=0 or seed=[0, 1].",
            )
        return [s for s in seeds if s is not None]
    return _check_seed(owner, seed)


@dataclass
class SamplingConfig:
    """Greedy by default; ``do_sample=True`` for temperature / top-k / top-p sampling.

    Sampling is per-row reproducible: each batch row has its own random generator and draws
    exactly one uniform number per step (inverse-CDF sampling), so a row's tokens depend only
    on its own logits and seed, never on which other rows share the batch. ``seed`` is one
    int (every row starts from it: prompt P gives the same reply alone or as any row of a
    batch), a list with one seed per row, or ``None`` (torch's global generator; not
    reproducible). Left padding changes a row's logits by float rounding only, which can in
    rare cases flip a sample whose uniform draw falls on a token boundary.

    Example:
        >>> SamplingConfig(do_sample=True, temperature=0.7, seed=0).temperature
        0.7
    """

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    seed: int | list[int] | None = None

    def __post_init__(self) -> None:
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(
                f"temperature must be > 0, got {self.temperature}; for greedy decoding use "
                "do_sample=False"
            )
        self.top_k = _check_top_k("SamplingConfig", self.top_k)
        self.seed = _check_seeds("SamplingConfig", self.seed)
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1] or None, got {self.top_p}")

    def generators(self, device: torch.device, batch: int) -> list[torch.Generator] | None:
        """One seeded generator per row (``None`` without a seed).

        Example:
            >>> gens = SamplingConfig(do_sample=True, seed=[1, 2]).generators("cpu", 2)
            >>> [g.initial_seed() for g in gens]
            [1, 2]
        """
        if self.seed is None:
            return None
        seeds = self.seed if isinstance(self.seed, list) else [self.seed] * batch
        if len(seeds) != batch:
            raise ValueError(
                f"SamplingConfig.seed has {len(seeds)} seeds for a batch of {batch} rows; give "
                "one int for every row, or one seed per row"
            )
        return [torch.Generator(device=device).manual_seed(s) for s in seeds]

    def choose(
        self, logits: torch.Tensor, rng: Sequence[torch.Generator] | None = None
    ) -> torch.Tensor:
        """Next token per row from ``[batch, vocab]`` logits; ``rng`` has one generator per row.

        Each row draws one uniform number ``u`` from its own generator and takes the first
        token whose cumulative probability exceeds ``u``.
        """
        if not self.do_sample:
            return logits.argmax(dim=-1)
        scores = logits.float() / self.temperature
        if self.top_k is not None:
            kth = torch.topk(scores, min(self.top_k, scores.shape[-1])).values[..., -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if self.top_p is not None:
            sorted_scores, order = scores.sort(dim=-1, descending=True)
            cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
            drop = cumulative - sorted_scores.softmax(dim=-1) >= self.top_p
            sorted_scores = sorted_scores.masked_fill(drop, float("-inf"))
            scores = torch.full_like(scores, float("-inf")).scatter(-1, order, sorted_scores)
        probs = scores.softmax(dim=-1)
        batch = probs.shape[0]
        if rng is None:
            uniform = torch.rand(batch, device=probs.device)
        else:
            if len(rng) != batch:
                raise ValueError(f"{len(rng)} generators for a batch of {batch} rows")
            uniform = torch.cat([torch.rand(1, generator=g, device=probs.device) for g in rng])
        cdf = probs.cumsum(dim=-1)
        target = (uniform * cdf[:, -1]).unsqueeze(-1)
        token = torch.searchsorted(cdf, target, right=True).clamp(max=probs.shape[-1] - 1)
        # float rounding at the very top of the CDF must not pick a token with probability 0
        allowed = probs.gather(-1, token) > 0
        return torch.where(allowed, token, probs.argmax(dim=-1, keepdim=True)).squeeze(-1)


@dataclass
class StreamEvent:
    """One generated token of ``HookedGenerator.stream``, with that token's own captures.

    ``token_ids[i]`` is row ``i``'s new token (``None`` once the row has finished);
    ``token_id`` is the one token of a single-sample stream. ``activations[layer][component]``
    is ``[batch, hidden]`` (``[1, hidden]`` for one sample) and ``projections`` / ``norms``
    are ``[batch, ...]``: row ``i`` belongs to ``token_ids[i]`` — the same row
    ``GenerationResult.activations[layer][component][step]`` holds. The first event also
    carries the prompt's entries (``[batch, prompt_len, ...]``, left padding included; use the
    attention mask). ``logits`` are the raw next-token logits ``[batch, vocab]`` (before
    temperature, top-k or top-p) that ``token_ids`` were chosen from.

    Example:
        >>> StreamEvent(step=0, token_ids=[7], finished=[False]).token_id
        7
    """

    step: int
    token_ids: list[int | None]
    finished: list[bool]
    activations: LayerActivations | None = None
    projections: dict[int, torch.Tensor] | None = None
    norms: dict[int, torch.Tensor] | None = None
    prompt_activations: LayerActivations | None = None
    prompt_projections: dict[int, torch.Tensor] | None = None
    prompt_norms: dict[int, torch.Tensor] | None = None
    logits: torch.Tensor | None = None

    @property
    def token_id(self) -> int:
        """The new token of a single-sample stream; batched streams read ``token_ids[i]``."""
        token = self.token_ids[0] if len(self.token_ids) == 1 else None
        if token is None:
            raise ValueError(
                f"token_id is the token of a single-sample stream, but this event has "
                f"token_ids={self.token_ids}; read token_ids[i] for row i of a batch"
            )
        return token


def _stack(rows: dict[Any, list[torch.Tensor]]) -> dict[Any, torch.Tensor]:
    return {k: torch.stack(v) if v else torch.empty(0) for k, v in rows.items()}


@dataclass
class GenerationResult:
    """One row's generation: tokens up to its first EOS, with per-token captures.

    ``activations[layer][component]`` is ``[n_tokens, hidden]`` and ``projections[layer]`` is
    ``[n_tokens]`` (one vector) or ``[n_tokens, K]``; row ``k`` belongs to ``token_ids[k]``.
    ``prompt_*`` entries cover the prompt without its left padding.
    """

    prompt_ids: list[int]
    token_ids: list[int] = field(default_factory=list)
    finish_reason: Literal["eos", "length", "cancelled"] = "length"
    activations: LayerActivations = field(default_factory=dict)
    projections: dict[int, torch.Tensor] = field(default_factory=dict)
    norms: dict[int, torch.Tensor] = field(default_factory=dict)
    prompt_activations: LayerActivations = field(default_factory=dict)
    prompt_projections: dict[int, torch.Tensor] = field(default_factory=dict)
    prompt_norms: dict[int, torch.Tensor] = field(default_factory=dict)
    _pad: int = 0
    _finished: bool = False
    _rows: dict[Any, list[torch.Tensor]] = field(default_factory=dict, repr=False)

    @classmethod
    def start(cls, ids: torch.Tensor, mask: torch.Tensor) -> GenerationResult:
        pad = int((mask == 0).sum())
        return cls(prompt_ids=ids[pad:].tolist(), _pad=pad)

    def absorb(self, event: StreamEvent, row: int) -> None:
        """Take this row's share of one stream event."""
        if event.prompt_activations is not None:
            self.prompt_activations = {
                layer: {c: t[row, self._pad :] for c, t in comps.items()}
                for layer, comps in event.prompt_activations.items()
            }
        if event.prompt_projections is not None:
            self.prompt_projections = {
                k: v[row, self._pad :] for k, v in event.prompt_projections.items()
            }
            self.prompt_norms = {
                k: v[row, self._pad :] for k, v in (event.prompt_norms or {}).items()
            }
        self._finished = event.finished[row]
        token = event.token_ids[row]
        if token is None:  # the row had finished: nothing of it in this event
            return
        self.token_ids.append(token)
        for layer, comps in (event.activations or {}).items():
            for comp, t in comps.items():
                self._rows.setdefault(("a", layer, comp), []).append(t[row])
        for layer, t in (event.projections or {}).items():
            self._rows.setdefault(("p", layer), []).append(t[row])
        for layer, t in (event.norms or {}).items():
            self._rows.setdefault(("n", layer), []).append(t[row])

    def finish(self, max_new_tokens: int, cancelled: bool) -> None:
        """Stack the per-token rows and set ``finish_reason``."""
        stacked = _stack(self._rows)
        self._rows = {}
        for key, tensor in stacked.items():
            if key[0] == "a":
                self.activations.setdefault(key[1], {})[key[2]] = tensor
            elif key[0] == "p":
                self.projections[key[1]] = tensor
            else:
                self.norms[key[1]] = tensor
        if self._finished:
            self.finish_reason = "eos"
        elif cancelled and len(self.token_ids) < max_new_tokens:
            self.finish_reason = "cancelled"


@dataclass
class GenerationConfig:
    """Decoding settings. ``temperature=0`` means greedy."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    batch_size: int = 8

    def __post_init__(self) -> None:
        self.top_k = _check_top_k("GenerationConfig", self.top_k)
        self.seed = _check_seed("GenerationConfig", self.seed)

    def sampling(self) -> SamplingConfig:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if self.temperature == 0:
            return SamplingConfig()
        return SamplingConfig(
            do_sample=True,
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=self.top_p,
            seed=self.seed,
        )
