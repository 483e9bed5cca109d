"""Run a dataset through a model and collect layer outputs: KempnerForge's quick path.

``extract_representations(model, dataset, layers, device, batch_size, max_samples)`` returns,
for equal-length samples, one ``(N, seq, hidden)`` CPU tensor per layer, so
``save_activations({k: v.float() for k, v in acts.items()}, "acts.npz")`` works as on
KempnerForge's page. Samples of different lengths are batched right-padded with an attention
mask (which matches running each alone) and need an opt-in: ``pad=True`` (padded tensors; the
mask is ``acts.mask``) or ``as_list=True`` (one tensor per sample). ``output_dir`` streams
shards to disk and resumes an interrupted run. Compiled models (``torch.compile``) and models
whose ``forward`` takes the tokens positionally work too. Captures go through
:class:`trait_lab.activations.store.ActivationStore`.

Example:
    >>> from trait_lab.testing import tiny_model
    >>> data = [{"input_ids": [1, 2]}, {"input_ids": [3, 4]}]
    >>> acts = extract_representations(tiny_model("gpt2"), data, "transformer.h.0")
    >>> acts["transformer.h.0"].shape
    torch.Size([2, 2, 32])
"""

from __future__ import annotations

import copy
import itertools
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, overload

import torch
from torch import nn
from tqdm.auto import tqdm

from trait_lab.activations.batches import (
    Batcher,
    forward_batch,
    iter_samples,
    sample_ids,
    unwrap_compiled,
)
from trait_lab.activations.store import ActivationStore
from trait_lab.io.shards import ActivationReader, ActivationWriter
from trait_lab.models import tokens
from trait_lab.models.architectures import input_device

__all__ = ["Representations", "extract_representations"]


class Representations(dict[str, Any]):
    """``{layer name: tensor}`` from :func:`extract_representations`, with each sample's length.

    The keys are exactly the layer names asked for. ``lengths[i]`` is sample ``i``'s number of
    real tokens, and ``mask`` the ``(N, max_len)`` bool tensor that is True at them: with
    ``pad=True`` it marks which rows of the padded tensors are real (padding is zeros, on the
    right). ``torch.save(acts, "acts.pt")`` (as KempnerForge's page does) pickles it as a plain
    ``OrderedDict`` of the tensors, which ``torch.load`` reads with its default
    ``weights_only=True``, without trait_lab; the lengths are not saved. ``copy`` keeps the type.

    Example:
        >>> acts = Representations({"h": torch.zeros(2, 3, 4)}, lengths=[3, 1])
        >>> acts.mask.tolist()
        [[True, True, True], [True, False, False]]
    """

    def __init__(self, data: Mapping[str, Any], lengths: list[int]) -> None:
        super().__init__(data)
        self.lengths = list(lengths)

    def __reduce__(self) -> tuple[Any, ...]:
        return (OrderedDict, (list(self.items()),))

    def __copy__(self) -> Representations:
        return Representations(self, self.lengths)

    def __deepcopy__(self, memo: dict[int, Any]) -> Representations:
        return Representations(copy.deepcopy(dict(self), memo), self.lengths)

    @property
    def mask(self) -> torch.Tensor:
        """``(N, max_len)`` bool: True at each sample's real tokens."""
        lengths = torch.tensor(self.lengths, dtype=torch.long)
        width = int(lengths.max()) if len(lengths) else 0
        return torch.arange(width)[None, :] < lengths[:, None]


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
    pad: bool = ...,
    as_list: bool = ...,
    pad_token_id: int | None = ...,
    collate: Callable[[list[Any]], dict[str, torch.Tensor]] | None = ...,
    dtype: torch.dtype | None = ...,
    progress: bool = ...,
    output_dir: None = ...,
    shard_size: int = ...,
) -> Representations: ...
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
    pad: bool = ...,
    as_list: bool = ...,
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
    pad: bool = False,
    as_list: bool = False,
    pad_token_id: int | None = None,
    collate: Callable[[list[Any]], dict[str, torch.Tensor]] | None = None,
    dtype: torch.dtype | None = None,
    progress: bool = False,
    output_dir: str | os.PathLike[str] | None = None,
    shard_size: int = 256,
) -> Representations | ActivationReader:
    """Run ``dataset`` through ``model`` and collect each layer's output on CPU.

    ``dataset`` is map-style or iterable and yields dicts with ``input_ids`` (1-D tensor or
    list) and optionally ``attention_mask`` (its masked-out ends are dropped). With
    ``positions="all"`` (or ``None``) each layer gives an ``(N, seq, hidden)`` tensor when all
    samples have the same length; different lengths raise ``ValueError`` unless ``pad=True``
    (``(N, max_len, hidden)``, zeros after each sample's end, mask in ``result.mask``) or
    ``as_list=True`` (a list of ``(len_i, hidden)`` tensors). ``positions="last"`` gives an
    ``(N, hidden)`` tensor of each sample's last real token. The result is a
    :class:`Representations` dict keyed by the layer names as given. A ``torch.compile``'d model
    runs as its original module, eagerly (a cached compiled graph could miss the hooks); its
    names work with or without the ``_orig_mod.`` prefix. Samples are right-padded per batch
    and run with an attention mask (``collate`` replaces this batching; it must return
    ``input_ids``). Runs in ``eval()`` under ``no_grad()``, restores every train flag and
    removes the hooks on exit, also on exceptions. Inputs go to ``device`` (default: the
    model's); the model is not moved. With ``output_dir``, one tensor per sample streams to
    disk in shards of ``shard_size`` samples, an :class:`ActivationReader` is returned, and a
    rerun skips the samples done.

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> data = [{"input_ids": [5, 6, 7]}, {"input_ids": [8, 9]}]
        >>> acts = extract_representations(tiny_model("llama"), data, ["model.layers.1"], pad=True)
        >>> tuple(acts["model.layers.1"].shape), acts.lengths
        ((2, 3, 32), [3, 2])
    """
    inner, names, hook_names = unwrap_compiled(model, layers)
    _check_args(positions, batch_size, max_samples, pad, as_list, output_dir)
    keep_all = positions != "last"
    if device is None:
        device = input_device(inner)
    pad_id = tokens.pad_token_id(model=inner, explicit=pad_token_id)
    samples = iter_samples(dataset, max_samples)
    writer = None
    if output_dir is not None:
        meta = {"layers": names, "positions": "last" if not keep_all else "all"}
        writer = _open_writer(output_dir, shard_size, meta, dtype, samples, collate is None)
    mask_now: list[torch.Tensor] = []  # the running batch's mask, read by the hook's selector
    store = ActivationStore(inner, hook_names, dtype=dtype, positions=_selector(mask_now, keep_all))
    loop = _Loop(
        model,
        inner,
        store,
        dict(zip(hook_names, names, strict=True)),
        Batcher(collate, pad_id, device),
        mask_now,
        writer,
        _progress_bar(dataset, max_samples, writer) if progress else None,
        keep_all,
        equal_lengths=keep_all and not (pad or as_list) and writer is None,
    )
    chunks, lengths = loop.run(samples, batch_size)
    if writer:
        return ActivationReader(writer.directory)
    mode = "last" if not keep_all else "list" if as_list else "pad" if pad else "stack"
    return Representations({n: _assemble(c, lengths, mode) for n, c in chunks.items()}, lengths)


def _check_args(
    positions: Any,
    batch_size: Any,
    max_samples: int | None,
    pad: bool,
    as_list: bool,
    output_dir: Any,
) -> None:
    if positions not in ("all", "last", None):
        raise ValueError(f"positions={positions!r}; use 'all' (or None) or 'last'")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if max_samples is not None and max_samples < 0:
        raise ValueError(f"max_samples must be None or >= 0, got {max_samples!r}")
    if pad and as_list:
        raise ValueError("pad=True and as_list=True exclude each other; pass one of them")
    if (pad or as_list) and positions == "last":
        raise ValueError(
            "pad/as_list shape variable-length outputs; positions='last' already gives one "
            "(N, hidden) tensor: drop pad/as_list"
        )
    if pad and output_dir is not None:
        raise ValueError(
            "output_dir stores one tensor per sample (read it with ActivationReader); "
            "drop pad=True, or drop output_dir to get padded tensors in memory"
        )


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
    writer.verify_inputs(sample_ids(s, i, strip) for i, s in enumerate(samples))
    return writer


def _selector(mask_now: list[torch.Tensor], keep_all: bool) -> Callable[[torch.Tensor], Any]:
    """The store's position selector: every real token, flattened (``keep_all``), or each
    row's last one. It reads the running batch's mask from ``mask_now[0]``."""

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


def _check_equal(lengths: list[int], new: list[int]) -> None:
    """Refuse a sample whose length differs from the first one's (before its forward)."""
    first = lengths[0] if lengths else new[0]
    for i, n in enumerate(new):
        if n != first:
            raise ValueError(
                f"samples have different lengths (sample 0: {first} tokens, sample "
                f"{len(lengths) + i}: {n}), so they do not stack into one (N, seq, hidden) "
                "tensor per layer. Pass pad=True for right-padded (N, max_len, hidden) tensors "
                "(result.mask marks the real tokens), as_list=True for one (len_i, hidden) "
                "tensor per sample, or positions='last'"
            )


@dataclass
class _Loop:
    """The forward loop: batches in, each layer's flattened real-token outputs kept or written."""

    model: nn.Module  # as given: its train flags are restored
    inner: nn.Module  # what runs: the model, or a compiled model's original module
    store: ActivationStore
    rename: dict[str, str]  # hook name -> the user's name
    batcher: Batcher
    mask_now: list[torch.Tensor]
    writer: ActivationWriter | None
    bar: Any
    keep_all: bool
    equal_lengths: bool

    def run(
        self, samples: Iterator[Any], batch_size: int
    ) -> tuple[dict[str, list[torch.Tensor]], list[int]]:
        """Forward every batch; returns per layer the batches' outputs and every sample's length.

        Runs in ``eval()`` under ``no_grad()``; restores every module's train flag, removes the
        hooks and closes the bar and the writer on exit, also on exceptions.
        """
        chunks: dict[str, list[torch.Tensor]] = {n: [] for n in self.rename.values()}
        lengths: list[int] = []
        flags = {m: m.training for m in self.model.modules()}
        try:
            self.model.eval()
            self.store.enable()
            with torch.no_grad():
                start = self.writer.num_samples if self.writer else 0
                while chunk := list(itertools.islice(samples, batch_size)):
                    new = self._batch(chunk, start, lengths)
                    for name, t in new.items():
                        chunks[name].append(t)
                    start += len(chunk)
                    if self.bar is not None:
                        self.bar.update(len(chunk))
        finally:
            self.store.disable()
            for module, flag in flags.items():
                module.training = flag
            if self.bar is not None:
                self.bar.close()
            if self.writer:
                self.writer.close()
        return chunks, lengths

    def _batch(self, chunk: list[Any], start: int, lengths: list[int]) -> dict[str, torch.Tensor]:
        """Run one batch; its outputs per layer (``{}`` when they went to the writer)."""
        ids, batch = self.batcher(chunk, start)
        mask = batch["attention_mask"].bool()
        new = mask.sum(1).tolist()
        if self.equal_lengths:
            _check_equal(lengths, new)
        self.mask_now[:] = [mask]
        self.store.clear()
        forward_batch(self.inner, batch, stacklevel=5)
        outs: dict[str, torch.Tensor] = {}
        for hook_name, name in self.rename.items():
            t = self.store.get(hook_name)
            if t is None:
                raise RuntimeError(
                    f"module {name!r} did not run during the forward pass; "
                    "is it used by model.forward?"
                )
            outs[name] = t
        lengths.extend(new)
        if self.writer is None:
            return outs
        per_sample = {n: list(torch.split(t, new)) if self.keep_all else t for n, t in outs.items()}
        self.writer.append(per_sample, inputs=ids)
        return {}


def _assemble(chunks: list[torch.Tensor], lengths: list[int], mode: str) -> Any:
    """One layer's result from its batches' outputs (flattened real tokens, or last tokens)."""
    if mode == "list":
        return list(torch.split(torch.cat(chunks), lengths)) if chunks else []
    if not chunks:
        return torch.empty(0)
    flat = torch.cat(chunks)
    if mode == "last":
        return flat
    if mode == "stack":
        return flat.reshape(len(lengths), lengths[0], *flat.shape[1:])
    mask = Representations({}, lengths).mask
    out = flat.new_zeros((*mask.shape, *flat.shape[1:]))
    out[mask] = flat
    return out
