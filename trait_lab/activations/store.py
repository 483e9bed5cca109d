"""Capture module outputs by name: ``ActivationStore``.

KempnerForge's API and semantics, with its stated limits removed: a module returning a
non-tensor raises instead of silently capturing nothing, and positions can be selected inside
the hook to bound memory. The store registers through trait_lab's hook dispatch
(:func:`trait_lab.hooks.base.register_tensor_hook`), so it records the stream *after* any
steering or ablation hook on the same module, whichever was entered first.
:func:`extract_representations` (batched, padding-aware, streaming to disk) lives in
:mod:`trait_lab.activations.extract`.

Example:
    >>> from trait_lab.testing import tiny_model, tiny_batch
    >>> model = tiny_model("llama")
    >>> with ActivationStore(model, ["model.layers.0"]) as store:
    ...     _ = model(**tiny_batch(2, 5))
    >>> store.get("model.layers.0").shape
    torch.Size([2, 5, 32])
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Literal, TypeAlias

import torch
from torch import nn

from trait_lab.hooks.base import TensorHookHandle, register_tensor_hook
from trait_lab.models.architectures import get_module

__all__ = ["ActivationStore", "PositionSelector", "check_layer_names"]

PositionSelector: TypeAlias = (
    Literal["all", "last"] | int | slice | Sequence[int] | Callable[[torch.Tensor], torch.Tensor]
)


def check_layer_names(model: nn.Module, layers: str | Iterable[str]) -> list[str]:
    """Return ``layers`` as a de-duplicated list, or raise ``ValueError`` naming unknown ones.

    Names are hook paths, checked by :func:`trait_lab.models.architectures.get_module` (whose error
    lists up to 20 candidates, closest first); a ``":input"`` suffix means the module's input.

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> check_layer_names(tiny_model("gpt2"), "transformer.h.0")
        ['transformer.h.0']
    """
    names = [layers] if isinstance(layers, str) else list(dict.fromkeys(layers))
    if not names:
        raise ValueError("layers is empty; pass module names such as 'model.layers.0'")
    for name in names:
        if not isinstance(name, str):
            raise ValueError(
                f"layer name {name!r} is a {type(name).__name__}; pass module names (str) "
                "such as 'model.layers.0', from [n for n, _ in model.named_modules()]"
            )
        get_module(model, name)
    return names


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
    construction (``"name:input"`` captures the module's input instead). A module returning a
    tuple/list is captured as its first element; any other non-tensor output raises
    ``TypeError`` during the forward. Captures see the stream after trait_lab's steering and
    ablation hooks on the same module, whatever order they were entered in. ``get`` returns the
    last capture (each forward overwrites it) or, with ``accumulate=True``, every capture since
    ``clear()`` concatenated along dim 0 (``get_all`` gives the list). Captures never share
    memory with the model's tensors. ``positions`` keeps only some sequence positions before
    the copy: ``"all"``/``None``, ``"last"``, an int, a slice, a list of ints (all index dim 1),
    or a callable ``output -> tensor``. Hooks are registered by ``enable()`` or on entering
    ``with``, and removed by ``disable()`` or on leaving it (also on exceptions). The hooks
    hold the store weakly: a store garbage-collected while enabled removes its hooks and
    warns (``UserWarning``) to call ``disable()`` — do not rely on that.

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
        self._handles: list[TensorHookHandle] = []

    @property
    def layer_names(self) -> list[str]:
        """The module names this store captures."""
        return list(self._names)

    @property
    def enabled(self) -> bool:
        """Whether the hooks are currently registered."""
        return bool(self._handles)

    def _record(self, name: str, output: torch.Tensor) -> None:
        raw = output.detach()
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

    def _observer(self, name: str) -> Callable[[torch.Tensor], None]:
        # The hook holds the store weakly: a store dropped while enabled is still collected
        # while the model lives, and its __del__ removes the hooks.
        ref = weakref.ref(self)

        def observe(output: torch.Tensor) -> None:
            store = ref()
            if store is not None:
                store._record(name, output)

        return observe

    def enable(self) -> ActivationStore:
        """Register the hooks (a no-op if already registered); returns ``self``."""
        if self._handles:
            return self
        try:
            for name in self._names:
                self._handles.append(register_tensor_hook(self.model, name, self._observer(name)))
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

    def __del__(self) -> None:
        # A store dropped while enabled: take its hooks off the model, then say so.
        if not getattr(self, "_handles", None):
            return
        self.disable()
        warnings.warn(
            f"an ActivationStore capturing {self._names} was garbage-collected while enabled; "
            "its hooks have been removed now. Call store.disable() when done (or use `with "
            "ActivationStore(...) as store:`): garbage collection may come late or never.",
            UserWarning,
            stacklevel=2,
        )

    def __repr__(self) -> str:
        return f"ActivationStore({self._names}, enabled={self.enabled})"
