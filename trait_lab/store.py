"""Capture module outputs with forward hooks: ``ActivationStore`` and ``extract_representations``.

KempnerForge's API and semantics, with its stated limits removed: a module returning a
non-tensor raises instead of silently capturing nothing, samples may have different lengths
(right-padded with an attention mask, padding removed from the result), positions can be
selected inside the hook to bound memory, and long runs stream to disk and resume.

Example:
    >>> from trait_lab.testing import tiny_model, tiny_batch
    >>> model = tiny_model("llama")
    >>> with ActivationStore(model, ["model.layers.0"]) as store:
    ...     _ = model(**tiny_batch(2, 5))
    >>> store.get("model.layers.0").shape
    torch.Size([2, 5, 32])
"""

from __future__ import annotations

import difflib
import inspect
import itertools
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal, TypeAlias, overload

import torch
from torch import nn

from trait_lab.activation_io import ActivationReader, ActivationWriter

__all__ = ["ActivationStore", "PositionSelector", "extract_representations"]

PositionSelector: TypeAlias = (
    Literal["all", "last"] | int | slice | Sequence[int] | Callable[[torch.Tensor], torch.Tensor]
)


def check_layer_names(model: nn.Module, layers: str | Iterable[str]) -> list[str]:
    """Return ``layers`` as a de-duplicated list, or raise ``ValueError`` naming unknown ones.

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> check_layer_names(tiny_model("gpt2"), "transformer.h.0")
        ['transformer.h.0']
    """
    names = [layers] if isinstance(layers, str) else list(dict.fromkeys(layers))
    if not names:
        raise ValueError("layers is empty; pass module names such as 'model.layers.0'")
    available = [n for n, _ in model.named_modules() if n]
    known = set(available) | {""}
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(str(name), available, n=20, cutoff=0.6)
            shown = close + [n for n in available if n not in close][: 20 - len(close)]
            raise ValueError(
                f"module {name!r} not found in {type(model).__name__}. Candidates, closest "
                f"first ({len(shown)} of {len(available)}): {', '.join(shown)}. "
                "List them all with [n for n, _ in model.named_modules()]"
            )
    return names


def _as_tensor(name: str, module: nn.Module, output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    children = [f"{name}.{c}" if name else c for c, _ in module.named_children()][:8]
    raise TypeError(
        f"module {name!r} ({type(module).__name__}) returned {type(output).__name__}, not a "
        "tensor or a tuple/list starting with one, so its output cannot be captured. Target a "
        f"child module that returns a tensor instead: {', '.join(children) or '(none)'}"
    )


def _select(positions: PositionSelector | None, t: torch.Tensor) -> torch.Tensor:
    if callable(positions):
        return positions(t)
    if positions is None or (isinstance(positions, str) and positions == "all"):
        return t
    if t.ndim < 2:
        raise ValueError(
            f"positions={positions!r} indexes dim 1 (sequence), but the output has "
            f"shape {tuple(t.shape)}; use positions=None or a callable"
        )
    if isinstance(positions, str):  # "last"; other strings are refused at construction
        return t[:, -1]
    if isinstance(positions, (int, slice)):
        return t[:, positions]
    return t[:, list(positions)]


class ActivationStore:
    """Forward hooks that keep each named module's output, detached (on CPU by default).

    ``layers`` are fully qualified names from ``model.named_modules()``, checked at
    construction. A module returning a tuple/list is captured as its first element; any other
    non-tensor output raises ``TypeError`` during the forward. ``get`` returns the last capture
    (each forward overwrites it) or, with ``accumulate=True``, every capture since ``clear()``
    concatenated along dim 0 (``get_all`` gives the list). Captures never share memory with the
    model's tensors. ``positions`` keeps only some sequence positions before the copy:
    ``"all"``/``None``, ``"last"``, an int, a slice, a list of ints (all index dim 1), or a
    callable ``output -> tensor``. Hooks are registered by ``enable()`` or on entering ``with``,
    and removed by ``disable()`` or on leaving it (also on exceptions).

    Example:
        >>> from trait_lab.testing import tiny_model, tiny_batch
        >>> model = tiny_model("gpt2")
        >>> store = ActivationStore(model, ["transformer.h.1"], positions="last")
        >>> with store:
        ...     _ = model(**tiny_batch(3, 6))
        >>> store.get("transformer.h.1").shape
        torch.Size([3, 32])
    """

    def __init__(
        self,
        model: nn.Module,
        layers: str | Iterable[str],
        *,
        to_cpu: bool = True,
        dtype: torch.dtype | None = None,
        positions: PositionSelector | None = None,
        accumulate: bool = False,
    ) -> None:
        if isinstance(positions, str) and positions not in ("all", "last"):
            raise ValueError(
                f"positions={positions!r}; use 'all', 'last', an int, a slice, a "
                "list of ints or a callable"
            )
        self.model = model
        self._names = check_layer_names(model, layers)
        self.to_cpu, self.dtype = to_cpu, dtype
        self.positions, self.accumulate = positions, accumulate
        self._captures: dict[str, list[torch.Tensor]] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    @property
    def layer_names(self) -> list[str]:
        """The module names this store captures."""
        return list(self._names)

    @property
    def enabled(self) -> bool:
        """Whether the hooks are currently registered."""
        return bool(self._handles)

    def _hook(self, name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            raw = _as_tensor(name, module, output).detach()
            try:
                t = _select(self.positions, raw)
            except Exception as err:
                raise ValueError(
                    f"positions selector failed on module {name!r} (output shape "
                    f"{tuple(raw.shape)}): {err}"
                ) from err
            t = t.to(
                device="cpu" if self.to_cpu else t.device,
                dtype=self.dtype if self.dtype else t.dtype,
            )
            if t.untyped_storage().data_ptr() == raw.untyped_storage().data_ptr():
                t = t.clone()  # own the memory: the model may reuse it, and views pin the buffer
            if self.accumulate:
                self._captures.setdefault(name, []).append(t)
            else:
                self._captures[name] = [t]

        return hook

    def enable(self) -> ActivationStore:
        """Register the forward hooks (a no-op if already registered); returns ``self``."""
        if self._handles:
            return self
        try:
            for name in self._names:
                module = self.model.get_submodule(name)
                self._handles.append(module.register_forward_hook(self._hook(name)))
        except BaseException:
            self.disable()
            raise
        return self

    def disable(self) -> None:
        """Remove the hooks; captured tensors are kept until ``clear()``."""
        while self._handles:
            self._handles.pop().remove()

    def clear(self) -> None:
        """Drop every capture; hooks stay as they are."""
        self._captures.clear()

    def _check(self, name: str) -> None:
        if name not in self._names:
            raise KeyError(f"{name!r} is not captured by this store; valid names: {self._names}")

    def get(self, name: str) -> torch.Tensor | None:
        """Last capture of ``name`` (or all, concatenated on dim 0, with ``accumulate=True``).

        Returns ``None`` if the module has not run since construction or ``clear()``; raises
        ``KeyError`` for a name the store does not capture.
        """
        self._check(name)
        parts = self._captures.get(name)
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0]
        try:
            return torch.cat(parts)
        except RuntimeError as err:
            raise ValueError(
                f"captures of {name!r} have shapes {[tuple(p.shape) for p in parts]} "
                "and cannot be concatenated; use get_all(name) for the list"
            ) from err

    def get_all(self, name: str) -> list[torch.Tensor]:
        """Every capture of ``name`` since ``clear()`` (one per forward with ``accumulate``)."""
        self._check(name)
        return list(self._captures.get(name, []))

    def __enter__(self) -> ActivationStore:
        return self.enable()

    def __exit__(self, *exc: object) -> None:
        self.disable()

    def __repr__(self) -> str:
        return f"ActivationStore({self._names}, enabled={self.enabled})"


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
    if positions not in ("all", "last", None):
        raise ValueError(f"positions={positions!r}; use 'all' (or None) or 'last'")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if max_samples is not None and max_samples < 0:
        raise ValueError(f"max_samples must be None or >= 0, got {max_samples!r}")
    keep_all = positions != "last"
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    if pad_token_id is None:
        pad_token_id = getattr(getattr(model, "config", None), "pad_token_id", None) or 0

    samples = _samples(dataset, max_samples)
    writer: ActivationWriter | None = None
    if output_dir is not None:
        meta = {
            "layers": names,
            "positions": "last" if not keep_all else "all",
            "dtype": str(dtype) if dtype else None,
        }
        writer = ActivationWriter(output_dir, shard_size=shard_size, meta=meta)
        strip = collate is None
        writer.verify_inputs(_sample_ids(s, i, strip) for i, s in enumerate(samples))

    mask_now: list[torch.Tensor] = []  # the running batch's mask, read by the hook's selector

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

    results: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    flags = {m: m.training for m in model.modules()}
    store = ActivationStore(model, names, dtype=dtype, positions=select)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        total = len(dataset) if hasattr(dataset, "__len__") else max_samples
        if total is not None and max_samples is not None:
            total = min(total, max_samples)
        bar = tqdm(total=total, initial=writer.num_samples if writer else 0, unit="sample")
    try:
        model.eval()
        store.enable()
        with torch.no_grad():
            start = writer.num_samples if writer else 0
            while chunk := list(itertools.islice(samples, batch_size)):
                ids = [_sample_ids(s, start + i, collate is None) for i, s in enumerate(chunk)]
                batch = dict(collate(chunk)) if collate else _pad_right(ids, pad_token_id)
                batch.setdefault("attention_mask", torch.ones_like(batch["input_ids"]))
                batch = {
                    k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
                }
                mask_now[:] = [batch["attention_mask"].bool()]
                store.clear()
                _forward(model, batch)
                lengths = mask_now[0].sum(1).tolist()
                acts: dict[str, Any] = {}
                for name in names:
                    t = store.get(name)
                    if t is None:
                        raise RuntimeError(
                            f"module {name!r} did not run during the forward pass; "
                            "is it used by model.forward?"
                        )
                    acts[name] = list(torch.split(t, lengths)) if keep_all else t
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
    if writer:
        return ActivationReader(writer.directory)
    if keep_all:
        return dict(results)
    return {n: torch.cat(r) if r else torch.empty(0) for n, r in results.items()}
