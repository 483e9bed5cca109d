"""Run a dataset through a model and collect layer outputs, padding removed.

``extract_representations`` batches samples of different lengths (right-padded, with an
attention mask, so results match running each sample alone), drops the padding from what it
returns, and with ``output_dir`` streams shards to disk and resumes an interrupted run. It
captures through :class:`trait_lab.activations.store.ActivationStore`.

Example:
    >>> from trait_lab.testing import tiny_model
    >>> data = [{"input_ids": [1, 2]}]
    >>> acts = extract_representations(tiny_model("gpt2"), data, "transformer.h.0")
    >>> acts["transformer.h.0"][0].shape
    torch.Size([2, 32])
"""

from __future__ import annotations

import inspect
import itertools
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, overload

import torch
from torch import nn
from tqdm.auto import tqdm

from trait_lab.activations.store import (
    ActivationStore,
    check_layer_names,
)
from trait_lab.io.shards import ActivationReader, ActivationWriter
from trait_lab.models import tokens

__all__ = ["extract_representations"]


def _sample_ids(sample: Any, index: int, strip: bool) -> torch.Tensor:
    """A sample's token ids as a 1-D int64 tensor; with ``strip``, only its masked-in tokens."""
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


def _samples(dataset: Any, limit: int | None) -> Iterator[Any]:
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


def _forward(model: nn.Module, batch: dict[str, torch.Tensor]) -> None:
    params = inspect.signature(model.forward).parameters
    kwargs: dict[str, Any]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        kwargs = dict(batch)
    else:
        kwargs = {k: v for k, v in batch.items() if k in params}
        if "input_ids" not in params:
            model(batch["input_ids"])
            return
    if "attention_mask" not in kwargs and not bool(batch["attention_mask"].all()):
        warnings.warn(
            f"{type(model).__name__}.forward takes no attention_mask; padded batches "
            "are exact only for causal models (use batch_size=1 otherwise)",
            stacklevel=3,
        )
    if "use_cache" in params:
        kwargs["use_cache"] = False
    model(**kwargs)


@overload
def extract_representations(
    model: nn.Module,
    dataset: Any,
    layers: str | Iterable[str],
    device: Any = ...,
    batch_size: int = ...,
    max_samples: int | None = ...,
    *,
    positions: Literal["all", "last"] | None = ...,
    pad_token_id: int | None = ...,
    collate: Callable[[list[Any]], dict[str, torch.Tensor]] | None = ...,
    dtype: torch.dtype | None = ...,
    progress: bool = ...,
    output_dir: None = ...,
    shard_size: int = ...,
) -> dict[str, torch.Tensor | list[torch.Tensor]]: ...
@overload
def extract_representations(
    model: nn.Module,
    dataset: Any,
    layers: str | Iterable[str],
    device: Any = ...,
    batch_size: int = ...,
    max_samples: int | None = ...,
    *,
    positions: Literal["all", "last"] | None = ...,
    pad_token_id: int | None = ...,
    collate: Callable[[list[Any]], dict[str, torch.Tensor]] | None = ...,
    dtype: torch.dtype | None = ...,
    progress: bool = ...,
    output_dir: str | os.PathLike[str],
    shard_size: int = ...,
) -> ActivationReader: ...
def extract_representations(
    model: nn.Module,
    dataset: Any,
    layers: str | Iterable[str],
    device: torch.device | str | None = None,
    batch_size: int = 8,
    max_samples: int | None = None,
    *,
    positions: Literal["all", "last"] | None = "all",
    pad_token_id: int | None = None,
    collate: Callable[[list[Any]], dict[str, torch.Tensor]] | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = False,
    output_dir: str | os.PathLike[str] | None = None,
    shard_size: int = 256,
) -> dict[str, torch.Tensor | list[torch.Tensor]] | ActivationReader:
    """Run ``dataset`` through ``model`` and collect each layer's output, padding removed.

    ``dataset`` is map-style or iterable and yields dicts with ``input_ids`` (1-D tensor or
    list) and optionally ``attention_mask`` (its masked-out ends are dropped); lengths may
    differ. Samples are right-padded per batch and run with an attention mask, which matches
    running each sample alone (``collate`` replaces this batching; it must return
    ``input_ids`` and ``attention_mask``). Returns, per layer, with ``positions="all"`` (or
    ``None``) a list of ``[len_i, hidden]`` tensors, and with ``"last"`` a ``[n, hidden]``
    tensor of each sample's last real token. Runs in ``eval()`` under ``no_grad()``, restores
    every module's train flag and removes the hooks on exit, also on exceptions. Inputs go to
    ``device`` (default: the model's); the model is not moved. With ``output_dir`` the results
    stream to disk in shards of ``shard_size`` samples and an :class:`ActivationReader` is
    returned; rerunning with the same ``output_dir`` and dataset skips the samples already done.

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> data = [{"input_ids": [5, 6, 7]}, {"input_ids": [8, 9]}]
        >>> acts = extract_representations(tiny_model("llama"), data, ["model.layers.1"])
        >>> [tuple(t.shape) for t in acts["model.layers.1"]]
        [(3, 32), (2, 32)]
    """

    names = check_layer_names(model, layers)
    _check_args(positions, batch_size, max_samples)
    keep_all = positions != "last"
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    pad_id = tokens.pad_token_id(model=model, explicit=pad_token_id)
    samples = _samples(dataset, max_samples)
    writer = None
    if output_dir is not None:
        meta = {"layers": names, "positions": "last" if not keep_all else "all"}
        writer = _open_writer(output_dir, shard_size, meta, dtype, samples, collate is None)
    mask_now: list[torch.Tensor] = []  # the running batch's mask, read by the hook's selector
    store = ActivationStore(model, names, dtype=dtype, positions=_selector(mask_now, keep_all))
    bar = _progress_bar(dataset, max_samples, writer) if progress else None
    batcher = _Batcher(collate, pad_id, device)
    results = _run(
        model, store, names, samples, batch_size, batcher, mask_now, writer, bar, keep_all
    )
    if writer:
        return ActivationReader(writer.directory)
    if keep_all:
        return dict(results)
    return {n: torch.cat(r) if r else torch.empty(0) for n, r in results.items()}


def _check_args(positions: Any, batch_size: Any, max_samples: int | None) -> None:
    if positions not in ("all", "last", None):
        raise ValueError(f"positions={positions!r}; use 'all' (or None) or 'last'")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if max_samples is not None and max_samples < 0:
        raise ValueError(f"max_samples must be None or >= 0, got {max_samples!r}")


def _open_writer(
    output_dir: str | os.PathLike[str],
    shard_size: int,
    meta: dict[str, Any],
    dtype: torch.dtype | None,
    samples: Iterator[Any],
    strip: bool,
) -> ActivationWriter:
    """The shard writer of ``output_dir``; samples it already holds are checked and skipped."""
    meta = {**meta, "dtype": str(dtype) if dtype else None}
    writer = ActivationWriter(output_dir, shard_size=shard_size, meta=meta)
    writer.verify_inputs(_sample_ids(s, i, strip) for i, s in enumerate(samples))
    return writer


def _selector(mask_now: list[torch.Tensor], keep_all: bool) -> Callable[[torch.Tensor], Any]:
    """The store's position selector: every real token (``keep_all``) or each row's last one.

    It reads the running batch's mask from ``mask_now[0]``, which the loop sets per batch.
    """

    def select(out: torch.Tensor) -> torch.Tensor:
        mask = mask_now[0]
        if tuple(out.shape[:2]) != tuple(mask.shape):
            raise ValueError(
                f"expected an output of shape [batch, seq, ...] = "
                f"{list(mask.shape)}, ...; target a module whose output is per token"
            )
        if keep_all:
            return out[mask]
        last = (mask.long() * torch.arange(mask.shape[1], device=mask.device)).argmax(1)
        return out[torch.arange(len(mask), device=mask.device), last]

    return select


def _progress_bar(dataset: Any, max_samples: int | None, writer: ActivationWriter | None) -> Any:
    total = len(dataset) if hasattr(dataset, "__len__") else max_samples
    if total is not None and max_samples is not None:
        total = min(total, max_samples)
    return tqdm(total=total, initial=writer.num_samples if writer else 0, unit="sample")


@dataclass(frozen=True)
class _Batcher:
    """Turns a chunk of samples into ``(ids, batch)``: their token ids and the model's inputs.

    The inputs are ``collate``'s, or the ids right-padded with ``pad_token_id`` and an attention
    mask; every tensor is moved to ``device``.
    """

    collate: Callable[[list[Any]], dict[str, torch.Tensor]] | None
    pad_token_id: int
    device: Any

    def __call__(self, chunk: list[Any], start: int) -> tuple[list[torch.Tensor], dict[str, Any]]:
        ids = [_sample_ids(s, start + i, self.collate is None) for i, s in enumerate(chunk)]
        batch = dict(self.collate(chunk)) if self.collate else _pad_right(ids, self.pad_token_id)
        batch.setdefault("attention_mask", torch.ones_like(batch["input_ids"]))
        batch = {
            k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
        }
        return ids, batch


def _run(
    model: nn.Module,
    store: ActivationStore,
    names: list[str],
    samples: Iterator[Any],
    batch_size: int,
    batcher: _Batcher,
    mask_now: list[torch.Tensor],
    writer: ActivationWriter | None,
    bar: Any,
    keep_all: bool,
) -> dict[str, list[torch.Tensor]]:
    """Forward every batch and keep (or, with a writer, write) each layer's outputs.

    Runs in ``eval()`` under ``no_grad()``; restores every module's train flag, removes the
    hooks and closes the bar and the writer on exit, also on exceptions.
    """
    results: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    flags = {m: m.training for m in model.modules()}
    try:
        model.eval()
        store.enable()
        with torch.no_grad():
            start = writer.num_samples if writer else 0
            while chunk := list(itertools.islice(samples, batch_size)):
                ids, batch = batcher(chunk, start)
                mask_now[:] = [batch["attention_mask"].bool()]
                store.clear()
                _forward(model, batch)
                acts = _layer_outputs(store, names, mask_now[0].sum(1).tolist(), keep_all)
                if writer:
                    writer.append(acts, inputs=ids)
                else:
                    for name in names:
                        results[name].extend(acts[name] if keep_all else [acts[name]])
                start += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
    finally:
        store.disable()
        for module, flag in flags.items():
            module.training = flag
        if bar is not None:
            bar.close()
        if writer:
            writer.close()
    return results


def _layer_outputs(
    store: ActivationStore, names: list[str], lengths: list[int], keep_all: bool
) -> dict[str, Any]:
    """Each layer's captured output: split per sample (``keep_all``) or one ``[n, hidden]``."""
    acts: dict[str, Any] = {}
    for name in names:
        t = store.get(name)
        if t is None:
            raise RuntimeError(
                f"module {name!r} did not run during the forward pass; is it used by model.forward?"
            )
        acts[name] = list(torch.split(t, lengths)) if keep_all else t
    return acts
