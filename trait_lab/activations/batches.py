"""Dataset samples as model inputs: token ids, right-padded batches, and a forward call that fits.

:func:`sample_ids` reads one ``{"input_ids": ...}`` sample, :class:`Batcher` pads a chunk of them
into ``input_ids`` + ``attention_mask``, :func:`forward_batch` calls a model the way its
``forward`` accepts them (Hugging Face keywords, or the tokens positionally as KempnerForge's
``Transformer.forward(tokens)``), and :func:`unwrap_compiled` finds the module to hook inside a
``torch.compile``'d model. Used by :func:`trait_lab.activations.extract.extract_representations`.

Example:
    >>> ids, batch = Batcher(None, 0, "cpu")([{"input_ids": [5, 6, 7]}, {"input_ids": [8]}], 0)
    >>> batch["input_ids"].tolist(), batch["attention_mask"].tolist()
    ([[5, 6, 7], [8, 0, 0]], [[1, 1, 1], [1, 0, 0]])
"""

from __future__ import annotations

import inspect
import itertools
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trait_lab.activations.store import check_layer_names

__all__ = [
    "COMPILED_PREFIX",
    "Batcher",
    "forward_batch",
    "iter_samples",
    "sample_ids",
    "unwrap_compiled",
]

COMPILED_PREFIX = "_orig_mod."
"""The prefix ``torch.compile`` puts before every module name of the model it wraps."""


def sample_ids(sample: Any, index: int, strip: bool) -> torch.Tensor:
    """A sample's token ids as a 1-D int64 tensor; with ``strip``, only its masked-in tokens.

    Example:
        >>> sample_ids({"input_ids": [0, 5, 6], "attention_mask": [0, 1, 1]}, 0, True).tolist()
        [5, 6]
    """
    if not isinstance(sample, Mapping) or "input_ids" not in sample:
        raise TypeError(
            f"sample {index} is a {type(sample).__name__}; the dataset must yield "
            "dicts like {'input_ids': [...], 'attention_mask': [...] (optional)}"
        )
    ids = torch.as_tensor(sample["input_ids"], dtype=torch.long)
    ids = ids[0] if ids.ndim == 2 and len(ids) == 1 else ids
    if ids.ndim != 1:
        raise ValueError(f"sample {index}: input_ids must be 1-D, got shape {tuple(ids.shape)}")
    mask = sample.get("attention_mask")
    if strip and mask is not None:
        kept = torch.as_tensor(mask).reshape(-1).nonzero().flatten()
        if len(kept) and int(kept[-1] - kept[0]) + 1 != len(kept):
            raise ValueError(
                f"sample {index}: attention_mask has holes; only left or right "
                "padding is supported (or pass collate=...)"
            )
        ids = ids[int(kept[0]) : int(kept[-1]) + 1] if len(kept) else ids[:0]
    if strip and len(ids) == 0:
        raise ValueError(f"sample {index} has no tokens; drop empty samples from the dataset")
    return ids


def iter_samples(dataset: Any, limit: int | None) -> Iterator[Any]:
    """The first ``limit`` samples (all when ``None``) of a map-style or iterable dataset.

    Example:
        >>> list(iter_samples([{"input_ids": [1]}, {"input_ids": [2]}], 1))
        [{'input_ids': [1]}]
    """
    map_style = hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__")
    if map_style and not isinstance(dataset, torch.utils.data.IterableDataset):
        n = len(dataset) if limit is None else min(len(dataset), limit)
        return (dataset[i] for i in range(n))
    return itertools.islice(iter(dataset), limit)


def _pad_right(ids: list[torch.Tensor], pad_token_id: int) -> dict[str, torch.Tensor]:
    width = max(len(x) for x in ids)
    batch = torch.full((len(ids), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        batch[i, : len(x)], mask[i, : len(x)] = x, 1
    return {"input_ids": batch, "attention_mask": mask}


@dataclass(frozen=True)
class Batcher:
    """Turns a chunk of samples into ``(ids, batch)``: their token ids and the model's inputs.

    The inputs are ``collate``'s, or the ids right-padded with ``pad_token_id`` and an attention
    mask; every tensor is moved to ``device``.

    Example:
        >>> ids, batch = Batcher(None, 0, "cpu")([{"input_ids": [4, 5]}], 0)
        >>> ids[0].tolist(), batch["attention_mask"].tolist()
        ([4, 5], [[1, 1]])
    """

    collate: Callable[[list[Any]], dict[str, torch.Tensor]] | None
    pad_token_id: int
    device: Any

    def __call__(self, chunk: list[Any], start: int) -> tuple[list[torch.Tensor], dict[str, Any]]:
        """``chunk`` (samples ``start``, ``start + 1``, ...) as token ids and model inputs."""
        ids = [sample_ids(s, start + i, self.collate is None) for i, s in enumerate(chunk)]
        batch = dict(self.collate(chunk)) if self.collate else _pad_right(ids, self.pad_token_id)
        batch.setdefault("attention_mask", torch.ones_like(batch["input_ids"]))
        batch = {
            k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
        }
        return ids, batch


def unwrap_compiled(
    model: nn.Module, layers: str | Iterable[str]
) -> tuple[nn.Module, list[str], list[str]]:
    """The module to hook and run, the layer names as given, and those names inside the module.

    A ``torch.compile``'d model is unwrapped to its original module (``_orig_mod``); names are
    accepted with or without the ``_orig_mod.`` prefix. Unknown names raise ``ValueError``.

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> class Compiled(nn.Module):  # what torch.compile returns, in miniature
        ...     def __init__(self, m):
        ...         super().__init__()
        ...         self._orig_mod = m
        >>> inner, names, inside = unwrap_compiled(Compiled(tiny_model()), "_orig_mod.model.norm")
        >>> names, inside
        (['_orig_mod.model.norm'], ['model.norm'])
    """
    if not isinstance(layers, (str, Iterable)):
        raise ValueError(
            f"layers={layers!r}; pass a module name or a list of them, such as ['model.layers.0']"
        )
    names = [layers] if isinstance(layers, str) else list(dict.fromkeys(layers))
    inner = getattr(model, "_orig_mod", None)
    if not isinstance(inner, nn.Module):
        return model, names, check_layer_names(model, names)
    inside = [n.removeprefix(COMPILED_PREFIX) if isinstance(n, str) else n for n in names]
    twice = sorted({n for n in inside if inside.count(n) > 1})
    if twice:
        raise ValueError(
            f"layers name {twice} both with and without the {COMPILED_PREFIX!r} prefix of a "
            "compiled model; name each module once"
        )
    return inner, names, check_layer_names(inner, inside)


def forward_batch(model: nn.Module, batch: dict[str, torch.Tensor], stacklevel: int = 2) -> None:
    """Call ``model`` on a padded batch as its ``forward`` accepts it.

    Keywords it names (``input_ids``, ``attention_mask``, ... or all with ``**kwargs``) are
    passed by name, ``use_cache=False`` where it takes one; a ``forward`` without ``input_ids``
    gets the ids positionally. A padded batch for a model that takes no ``attention_mask``
    warns (exact only for causal models, and right padding); ``stacklevel`` is
    ``warnings.warn``'s, counted from this function.

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> forward_batch(tiny_model(), {"input_ids": torch.tensor([[5, 6]]),
        ...                              "attention_mask": torch.tensor([[1, 1]])})
    """
    params = inspect.signature(model.forward).parameters
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    if not bool(batch["attention_mask"].all()) and not (var_kw or "attention_mask" in params):
        warnings.warn(
            f"{type(model).__name__}.forward takes no attention_mask; padded batches "
            "are exact only for causal models (use batch_size=1 otherwise)",
            stacklevel=stacklevel,
        )
    if not var_kw and "input_ids" not in params:  # e.g. KempnerForge's forward(tokens)
        model(batch["input_ids"])
        return
    kwargs: dict[str, Any] = (
        dict(batch) if var_kw else {k: v for k, v in batch.items() if k in params}
    )
    if "use_cache" in params:
        kwargs["use_cache"] = False
    model(**kwargs)
