"""Massive activations: find the few residual dims that are 100–1000× larger than the rest.

Some residual dimensions (Sun et al. 2024) carry values far above the layer median and put a
fixed bias into every projection and norm. :class:`MassiveDimCollector` watches prefill passes
(up to ``max_tokens`` non-padding tokens), keeps per-layer running statistics, saves them
atomically after every counted forward (so a killed run resumes), removes its own hooks when
full, and :meth:`~MassiveDimCollector.finalize` writes ``calibration.json``. The saved state
counts the forwards it merged (``forwards_seen``), so a caller that feeds a fixed sequence of
inputs skips exactly those on resume; a state saved for another model, other layers or other
``inputs``, or one that does not load
(:func:`~trait_lab.dynamics.calibration_files.read_state`), is ignored with a warning.
:func:`ensure_calibration` finds or (re)builds the file for an experiment's model variant;
:func:`calibrate` runs an explicit calibration on a prompt list (by default
:data:`NEUTRAL_PROMPTS`), optionally with per-token values of the massive dims. A calibration
may also record ``prompt_source`` (where its prompts came from) and ``n_prompts``.

**Prefill rule.** A forward counts when the KV cache passed to the block owner is empty; a
forward with a non-empty cache (a decode step) is skipped. Without a cache
(``use_cache=False`` generation) every step re-runs the whole sequence and is counted again.

**Padding.** The 2-D ``attention_mask`` is read by a pre-hook on the module that owns the
blocks; tokens with mask 0 are ignored. Without a mask every token counts.

**Candidate rule.** A dim is a *candidate* when at some layer its max |activation| exceeds
``candidate_ratio`` (default 100) times that layer's typical magnitude, the median over dims
of the mean |activation| (``median_mean_abs``; ``top_ratio`` is the same ratio).

Example:
    >>> import tempfile
    >>> from trait_lab.testing import tiny_model, tiny_batch
    >>> model = tiny_model()
    >>> out = tempfile.mkdtemp() + "/calibration.json"
    >>> with MassiveDimCollector(model, out, max_tokens=10) as col:
    ...     _ = model(**tiny_batch(2, 7))
    >>> load_calibration(out)["tokens_seen"]
    10
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from trait_lab.core.atomic import atomic_write_json
from trait_lab.core.paths import calibration_path
from trait_lab.dynamics.calibration_files import (
    CALIBRATION_SCHEMA,
    STATE_SCHEMA,
    CalibrationError,
    load_calibration,
    read_state,
)
from trait_lab.hooks.base import HookContext, register_tensor_hook
from trait_lab.models.architectures import find_layers, get_hook_path, n_layers
from trait_lab.models.identity import model_name
from trait_lab.models.kv_cache import forward_offset

__all__ = [
    "CALIBRATION_SCHEMA",
    "NEUTRAL_PROMPTS",
    "CalibrationError",
    "MassiveDimCollector",
    "calibration_path",
    "load_calibration",
]

logger = logging.getLogger(__name__)

Stats = tuple[np.ndarray, np.ndarray, float]
"""One forward's statistics at one layer: max |activation| and sum |activation| per dim
(float64), and the sum of the tokens' norms."""

STATE_NAME = "collector_state.json"

NEUTRAL_PROMPTS: tuple[str, ...] = tuple(
    line.strip()
    for line in (resources.files("trait_lab") / "data" / "prompt_sets" / "neutral.txt")
    .read_text(encoding="utf-8")
    .splitlines()
    if line.strip()
)
"""Fifty everyday, Alpaca-style instructions written for calibration (not from any dataset),
read from ``trait_lab/data/prompt_sets/neutral.txt`` (the prompt set ``"neutral"``)."""


class MassiveDimCollector(HookContext):
    """Running per-dim statistics of the residual stream over prefill tokens.

    Records per layer the max and mean |activation| of every dim and the mean per-token norm.
    Use as a context manager (on a clean exit it finalizes when any token was seen) or call
    :meth:`attach` / :meth:`detach` / :meth:`finalize`. State is saved to
    ``collector_state.json`` beside ``out_path`` after every counted forward; a new collector
    on the same ``out_path`` resumes from it.

    Args:
        model: A Hugging Face causal LM.
        out_path: Where ``calibration.json`` goes.
        max_tokens: Stop (and remove the hooks) after this many non-padding prefill tokens.
        layers: Layer indices to watch; ``None`` means all.
        top_k: Dims reported per layer.
        candidate_ratio: Candidate threshold (see the module docstring).
        prompt_source: Where the prompts come from (e.g. ``"inference"``), recorded as the
            calibration's ``prompt_source``; ``None`` records none.
        inputs: Names the sequence of inputs the caller feeds (e.g. a digest of its texts); a
            saved state resumes only under the same name. With a fixed sequence, skip the first
            :attr:`forwards_seen` inputs on resume (they are already counted).

    Example:
        >>> import tempfile
        >>> from trait_lab.testing import tiny_model, tiny_batch
        >>> model = tiny_model()
        >>> col = MassiveDimCollector(model, tempfile.mkdtemp() + "/c.json").attach()
        >>> _ = model(**tiny_batch(1, 5)); col.detach(); col.tokens_seen
        5
    """

    def __init__(
        self,
        model: nn.Module,
        out_path: str | os.PathLike[str],
        max_tokens: int = 5000,
        layers: list[int] | None = None,
        top_k: int = 10,
        candidate_ratio: float = 100.0,
        prompt_source: str | None = None,
        inputs: str | None = None,
    ) -> None:
        super().__init__(model)
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
        count = n_layers(model)
        self.layers = list(range(count)) if layers is None else [int(x) % count for x in layers]
        self.out_path = Path(out_path)
        self.state_path = self.out_path.with_name(STATE_NAME)
        self.max_tokens, self.top_k, self.candidate_ratio = max_tokens, top_k, candidate_ratio
        self.prompt_source, self.inputs = prompt_source, inputs
        self.tokens_seen = 0
        self.forwards_seen = 0
        self.max_abs: dict[int, np.ndarray] = {}
        self.sum_abs: dict[int, np.ndarray] = {}
        self.sum_norm: dict[int, float] = {}
        self._mask: torch.Tensor | None = None
        self._counting = False
        self._take: torch.Tensor | None = None
        # Statistics of the forward in flight, merged only when it completes (owner post-hook).
        self._pending: dict[int, Stats] = {}
        self._budget: int | None = None  # set while measure() runs
        self._measured: tuple[dict[int, Stats], int] = ({}, 0)
        self.finalized = False
        self._resume()

    @property
    def done(self) -> bool:
        """Whether ``max_tokens`` tokens have been seen."""
        return self.tokens_seen >= self.max_tokens

    def _resume(self) -> None:
        if not self.state_path.exists():
            return
        try:
            state = read_state(self.state_path, model_name(self.model), self.layers, self.inputs)
        except CalibrationError as exc:
            logger.warning(
                "ignoring collector state %s (%s); starting from zero", self.state_path, exc
            )
            return
        self.tokens_seen, self.forwards_seen = state.tokens_seen, state.forwards_seen
        for layer, (mx, sm, norm) in state.stats.items():
            self.max_abs[layer], self.sum_abs[layer], self.sum_norm[layer] = mx, sm, norm

    def save_state(self) -> Path:
        """Write the running statistics atomically (done after every counted forward)."""
        stats = {
            str(layer): {
                "max_abs": self.max_abs[layer].tolist(),
                "sum_abs": self.sum_abs[layer].tolist(),
                "sum_norm": self.sum_norm[layer],
            }
            for layer in self.max_abs
        }
        state = {
            "model": model_name(self.model),
            "layers": self.layers,
            "inputs": self.inputs,
            "tokens_seen": self.tokens_seen,
            "forwards_seen": self.forwards_seen,
            "stats": stats,
        }
        return atomic_write_json(self.state_path, STATE_SCHEMA.stamp(state), indent=None)

    def attach(self) -> MassiveDimCollector:
        """Register the hooks (a no-op once ``max_tokens`` is reached); returns ``self``."""
        return self if self.done else self.register()

    def detach(self) -> None:
        """Remove the hooks and save the state (no finalize)."""
        was_active = self.active
        self.remove()
        if was_active and self.tokens_seen:
            self.save_state()

    def _attach(self) -> None:
        layers_path, _ = find_layers(self.model)
        owner_path = layers_path.rpartition(".")[0]
        owner = self.model.get_submodule(owner_path) if owner_path else self.model
        self._add(owner.register_forward_pre_hook(self._owner_pre, with_kwargs=True))
        self._add(owner.register_forward_hook(self._owner_post))
        for layer in self.layers:
            path = get_hook_path(layer, "residual", model=self.model)
            self._add(register_tensor_hook(self.model, path, self._observer(layer)))

    def _owner_pre(self, mod: nn.Module, args: tuple, kwargs: dict) -> None:
        open_ = not self.done if self._budget is None else self._budget > 0
        self._counting = forward_offset(args, kwargs) == 0 and open_
        mask = kwargs.get("attention_mask")
        self._mask = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None
        self._take, self._pending = None, {}

    def _owner_post(self, mod: nn.Module, args: tuple, output: Any) -> None:
        if self._counting and self._take is not None:
            if self._budget is None:
                self.merge(self._pending, int(self._take.sum()))
            else:  # measure(): kept for the caller, not merged
                self._measured = (self._pending, int(self._take.sum()))
        self._counting, self._take, self._mask = False, None, None

    def merge(self, stats: Mapping[int, Stats], tokens: int) -> None:
        """Add one counted forward's statistics (``tokens`` tokens): what every forward does.

        Saves the state, and finalizes and removes the hooks once ``max_tokens`` are seen.
        Rank 0 of a ``torchrun`` job merges the ranks' :meth:`measure` results with it, in the
        order one process would have fed the inputs, so the sums are the same, bit for bit.
        """
        self.tokens_seen += tokens
        self.forwards_seen += 1
        for layer, (mx, sm, nrm) in stats.items():
            if layer in self.max_abs:
                np.maximum(self.max_abs[layer], mx, out=self.max_abs[layer])
                self.sum_abs[layer] += sm
                self.sum_norm[layer] += nrm
            else:
                self.max_abs[layer], self.sum_abs[layer] = mx.copy(), sm.copy()
                self.sum_norm[layer] = nrm
        self.save_state()
        if self.done:
            self.finalize()
            self.remove()

    def measure(self, forward: Callable[[], object], budget: int) -> tuple[dict[int, Stats], int]:
        """The statistics of one prefill ``forward()``, counting at most ``budget`` tokens.

        Nothing is merged or written: a rank measures its share of the inputs and rank 0
        merges every result in order (:meth:`merge`). Returns ``(stats by layer, tokens counted)``.

        Example:
            >>> import tempfile
            >>> from trait_lab.testing import tiny_model, tiny_batch
            >>> model = tiny_model()
            >>> col = MassiveDimCollector(model, tempfile.mkdtemp() + "/c.json")
            >>> stats, tokens = col.measure(lambda: model(**tiny_batch(1, 5)), budget=3)
            >>> tokens, col.tokens_seen
            (3, 0)
        """
        self._budget, self._measured = budget, ({}, 0)
        self.register()
        try:
            forward()
            return self._measured
        finally:
            self.remove()
            self._budget = None

    def _select(self, h: torch.Tensor) -> torch.Tensor:
        """Boolean [batch, seq] of the tokens to count in this forward (padding and cap)."""
        batch, seq = h.shape[0], h.shape[1]
        valid = torch.ones(batch, seq, dtype=torch.bool, device=h.device)
        if self._mask is not None and self._mask.shape[0] == batch and self._mask.shape[1] >= seq:
            valid = self._mask[:, -seq:].to(h.device).bool()
        remaining = self.max_tokens - self.tokens_seen if self._budget is None else self._budget
        flat = valid.flatten()
        flat = flat & (torch.cumsum(flat.long(), 0) <= remaining)
        return flat.view(batch, seq)

    def _observer(self, layer: int) -> Any:
        def observe(h: torch.Tensor) -> None:
            if not self._counting:
                return
            h3 = h if h.dim() == 3 else h.unsqueeze(0)
            if self._take is None:
                self._take = self._select(h3)
            x = h3.detach()[self._take].float()
            if x.shape[0] == 0:
                return
            a = x.abs()
            self._pending[layer] = (
                a.max(0).values.cpu().double().numpy(),
                a.sum(0).cpu().double().numpy(),
                float(x.norm(dim=-1).double().sum()),
            )

        return observe

    def calibration(self) -> dict[str, Any]:
        """The calibration record built from the statistics so far."""
        if not self.tokens_seen:
            raise RuntimeError("no prefill tokens were seen; run the model inside the collector")
        out_layers: list[dict[str, Any]] = []
        candidates: set[int] = set()
        for layer in self.layers:
            mx = self.max_abs[layer]
            median = float(np.median(self.sum_abs[layer] / self.tokens_seen))
            top = np.argsort(-mx, kind="stable")[: self.top_k]
            ratio = mx / max(median, 1e-12)
            candidates.update(int(d) for d in np.nonzero(ratio > self.candidate_ratio)[0])
            out_layers.append(
                {
                    "layer": layer,
                    "top_dims": [int(d) for d in top],
                    "top_max_abs": [float(mx[d]) for d in top],
                    "top_mean_abs": [float(self.sum_abs[layer][d] / self.tokens_seen) for d in top],
                    "top_ratio": [float(ratio[d]) for d in top],
                    "median_mean_abs": median,
                    "mean_norm": self.sum_norm[layer] / self.tokens_seen,
                }
            )
        return CALIBRATION_SCHEMA.stamp(
            {
                "model": model_name(self.model),
                "hidden_size": int(next(iter(self.max_abs.values())).shape[0]),
                "n_layers": n_layers(self.model),
                "tokens_seen": self.tokens_seen,
                "candidate_ratio": self.candidate_ratio,
                "layers": out_layers,
                "candidates": sorted(candidates),
                **({"prompt_source": self.prompt_source} if self.prompt_source else {}),
            }
        )

    def finalize(self) -> dict[str, Any]:
        """Write ``calibration.json`` atomically, delete the saved state, return the record."""
        record = self.calibration()
        atomic_write_json(self.out_path, record)
        self.finalized = True
        self.state_path.unlink(missing_ok=True)
        return record

    def __exit__(self, *exc: object) -> None:
        self.detach()
        if exc[0] is None and self.tokens_seen and not self.finalized:
            self.finalize()
