"""The prompt's KV cache kept between generations, for a slider that re-steers one prompt.

A steering slider regenerates the same prompt again and again with only a coefficient changed.
When every steering edit starts at the last prompt token or later (``positions="response"``,
or a range starting there), nothing before the last prompt token depends on the edit: its KV
cache and its recorded activations/projections are the same every time. :class:`PromptCache`
keeps them for the latest batch (one entry), so the next generation's first forward runs one
token instead of the whole prompt. Rows are matched one by one: a batch made of rows of the
kept one (the slider's steered row alone, after a new prompt generated the baseline and the
steered row together) reuses those rows. The kept cache is never handed to the model: each
reuse gets a deep copy, so generations cannot change it. The result equals computing the whole
prompt up to float rounding (the attention over the prompt is summed in two calls instead of
one); the tests check greedy tokens and captures against the full computation.

Example:
    >>> from trait_lab.generation.configs import SteeringConfig
    >>> reusable([SteeringConfig(layer=1, vector=[1.0, 0.0], positions="response")], 5)
    True
    >>> reusable([SteeringConfig(layer=1, vector=[1.0, 0.0], positions="all")], 5)
    False
"""

from __future__ import annotations

import copy
import hashlib
import threading
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import Cache

from trait_lab.generation.configs import SteeringConfig

__all__ = ["Prefix", "PromptCache", "join_fields", "reusable", "tensor_key"]


def reusable(steering: Sequence[SteeringConfig], prompt_len: int) -> bool:
    """Whether no steering edit reaches the prompt before its last token (so its cache is fixed).

    Example:
        >>> reusable([], 1)  # a one-token prompt has nothing before its last token
        False
    """
    if prompt_len < 2:
        return False
    for config in steering:
        if config.positions == "response":
            continue
        if isinstance(config.positions, tuple) and config.positions[0] >= prompt_len - 1:
            continue
        return False
    return True


def tensor_key(*tensors: torch.Tensor) -> str:
    """A digest of tensors' shapes, dtypes and values (a cache key that survives ``id`` reuse).

    Example:
        >>> tensor_key(torch.ones(2)) == tensor_key(torch.ones(2))
        True
    """
    digest = hashlib.sha256()
    for t in tensors:
        value = t.detach().to("cpu").contiguous()
        digest.update(f"{tuple(value.shape)}{value.dtype}".encode())
        digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


@dataclass
class Prefix:
    """The prompt before its last token: its KV ``cache`` and its recorded step-0 ``fields``.

    ``observers`` says what the fields record, ``rows`` names each row (ids and mask).
    """

    observers: Hashable
    rows: list[str]
    cache: Any
    fields: dict[str, Any]


def _select(fields: dict[str, Any], index: torch.Tensor) -> dict[str, Any]:
    return {
        name: value[index] if isinstance(value, torch.Tensor) else _select(value, index)
        for name, value in fields.items()
    }


def join_fields(prefix: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
    """Step-0 event fields of the whole prompt: the prefix's and the last token's, joined along
    the sequence (dim 1) at every tensor of the nested dicts.

    Example:
        >>> joined = join_fields({"n": {3: torch.zeros(1, 4)}}, {"n": {3: torch.ones(1, 1)}})
        >>> joined["n"][3].tolist()
        [[0.0, 0.0, 0.0, 0.0, 1.0]]
    """
    if prefix.keys() != last.keys():
        raise RuntimeError(
            f"the kept prompt recorded {sorted(prefix)} but this generation records "
            f"{sorted(last)}; this is a bug in trait_lab (the cache key missed a setting)"
        )
    joined: dict[Any, Any] = {}
    for name, value in last.items():
        before = prefix[name]
        if isinstance(value, torch.Tensor):
            joined[name] = torch.cat([before, value], dim=1)
        else:
            joined[name] = join_fields(before, value)
    return joined


class PromptCache:
    """One kept prompt prefix (the latest); thread-safe; :meth:`get` returns a private copy.

    Example:
        >>> kept = PromptCache()
        >>> kept.put(Prefix("obs", ["row a"], cache=[torch.ones(1)], fields={}))
        >>> kept.get("obs", ["row a"]).cache[0] is not kept.get("obs", ["row a"]).cache[0]
        True
        >>> kept.get("obs", ["row b"]) is None
        True
    """

    def __init__(self) -> None:
        self._entry: Prefix | None = None
        self._lock = threading.Lock()

    def get(self, observers: Hashable, rows: list[str]) -> Prefix | None:
        """A private copy of the kept prefix for these ``rows`` (each one a kept row, in any
        order or repeated) recorded by the same ``observers``, else ``None``."""
        with self._lock:
            entry = self._entry
            if entry is None or entry.observers != observers:
                return None
            if any(row not in entry.rows for row in rows):
                return None
            cache = copy.deepcopy(entry.cache)
        index = [entry.rows.index(row) for row in rows]
        if index == list(range(len(entry.rows))):
            return Prefix(observers, rows, cache, entry.fields)
        if not isinstance(cache, Cache):
            return None  # a legacy cache: computed again rather than rebuilt by hand
        chosen = torch.tensor(index)
        cache.batch_select_indices(chosen)
        return Prefix(observers, rows, cache, _select(entry.fields, chosen))

    def put(self, prefix: Prefix) -> None:
        """Keep ``prefix`` (a deep copy of its cache), replacing the previous one."""
        kept = Prefix(prefix.observers, prefix.rows, copy.deepcopy(prefix.cache), prefix.fields)
        with self._lock:
            self._entry = kept

    def clear(self) -> None:
        """Forget the kept prompt (e.g. after the model's weights changed)."""
        with self._lock:
            self._entry = None
