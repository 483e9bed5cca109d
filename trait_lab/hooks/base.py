"""Shared machinery for every hook: target resolution, exception-safe lifetime, dispatch.

A hook context registers PyTorch hooks on ``__enter__`` and removes every one of them on
``__exit__``, also when the body raised. Vector math runs in fp32 whatever the model dtype and
the result is cast back; vectors follow the activations to their device on first use.

Models spread over devices (``load_model(device_map=...)``, ``models.device_map.dispatch``)
need nothing special: accelerate wraps each module's ``forward``, and our torch hooks run around
that call, so an output hook sees the activations on the device the module ran on (each block's
own device on a multi-GPU map) and a vector is copied there once per device (``DeviceVector``).
An ``":input"`` hook runs before accelerate moves the input, on the previous module's device;
the numbers are the same. Offloaded weights (``"cpu"``/``"disk"``) are loaded for the call only.

Limitation: on transformers 4.57, ``output_hidden_states`` is recorded inside each block's
``forward``, before any forward hook runs, so ``hidden_states[L + 1]`` misses an edit hooked onto
block ``L`` (the model, and every later entry, do see it). Read hooked activations with
``CaptureHook`` or ``MultiLayerCapture``; transformers 5 records with hooks that run after ours.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from trait_lab.models.architectures import (
    INPUT_SUFFIX,
    find_layers,
    get_hook_path,
    get_module,
    hidden_size,
    split_hook_path,
)
from trait_lab.models.kv_cache import forward_offset

Target = int | str
TensorFn = Callable[[torch.Tensor], torch.Tensor | None]


def resolve_target(
    model: nn.Module, target: Target, component: str = "residual", *, edits: bool = False
) -> str:
    """Turn a layer index (plus component) or a module path into a validated hook path.

    A module that never runs in a forward (a ``ModuleList`` such as ``"model.layers"``) is
    refused, and so, with ``edits=True``, is a path whose tensor is not activations (the
    integer token ids going into an embedding); see :func:`check_hookable`.

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> resolve_target(tiny_model("llama"), 1, "mlp_contribution")
        'model.layers.1.mlp.down_proj'
    """
    if isinstance(target, bool):
        raise TypeError(f"target must be a layer index or a module path, got {target!r}")
    if isinstance(target, (int, np.integer)):
        path = get_hook_path(int(target), component, model=model)
    elif isinstance(target, str):
        get_module(model, target)  # raises with close matches when missing
        split_hook_path(target)
        path = target
    else:
        raise TypeError(
            f"target must be a layer index (int) or a module path (str), got "
            f"{type(target).__name__}: {target!r}"
        )
    check_hookable(model, path, edits=edits)
    return path


def check_hookable(model: nn.Module, path: str, *, edits: bool = False) -> nn.Module:
    """The module at ``path``, refused when a hook there would silently do nothing or harm.

    A container with no ``forward`` of its own (``ModuleList``, ``ModuleDict``) is never
    called, so a hook on it never fires. An editor (``edits=True``) on an embedding's input
    would shift integer token ids, not activations.

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> type(check_hookable(tiny_model(), "model.layers.0")).__name__
        'LlamaDecoderLayer'
    """
    module = get_module(model, path)
    name, is_input = split_hook_path(path)
    if type(module).forward is nn.Module.forward:
        children = [f"{name}.{c}" if name else c for c, _ in module.named_children()][:4]
        raise ValueError(
            f"module {name!r} ({type(module).__name__}) is a container with no forward of its "
            "own: the model never calls it, so a hook there would never fire. Hook one of the "
            f"modules it holds instead, e.g. {', '.join(children) or '(none)'} (or pass a layer "
            "index)."
        )
    if edits and is_input and isinstance(module, nn.Embedding):
        raise ValueError(
            f"cannot steer {path!r}: the input of {name!r} (Embedding) is integer token ids, "
            f"not activations, and an edit would shift the ids. Steer its output {name!r} or a "
            "layer (e.g. layer=0) instead."
        )
    return module


def first_tensor(output: Any, where: str, module: nn.Module | None = None) -> torch.Tensor:
    """The hidden-state tensor in a module output: the tensor itself or a tuple's first item.

    Anything else raises ``TypeError`` naming ``where`` (the hook path) and, when ``module`` is
    given, its class and the child modules to target instead.

    Example:
        >>> first_tensor((torch.ones(2), None), "model.layers.0").tolist()
        [1.0, 1.0]
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    is_input = where.endswith(INPUT_SUFFIX)
    name = where[: -len(INPUT_SUFFIX)] if is_input else where
    kind = f" ({type(module).__name__})" if module is not None else ""
    children = [] if module is None else [c for c, _ in module.named_children()][:8]
    children = [f"{name}.{c}" if name else c for c in children]
    verb = "was called with" if is_input else "returned"
    raise TypeError(
        f"module {where!r}{kind} {verb} {type(output).__name__}, not a tensor or a tuple/list "
        "starting with one, so it cannot be hooked or captured. Target one of its child modules "
        f"that returns a tensor instead: {', '.join(children) or '(none)'} (list them all with "
        "[n for n, _ in model.named_modules()])."
    )


def replace_first(output: Any, new: torch.Tensor) -> Any:
    """``output`` with its hidden-state tensor replaced by ``new``."""
    if isinstance(output, torch.Tensor):
        return new
    return type(output)((new, *output[1:])) if isinstance(output, tuple) else [new, *output[1:]]


class _Dispatch:
    """The one torch hook trait_lab keeps on a module side: editors first, then observers.

    Editors (steering, ablation, capping) run in registration order; observers (capture,
    projection) then all see the final, edited tensor, whatever order the contexts were
    entered in. The torch hook is prepended, so other forward hooks on the module (HF's own
    ``output_hidden_states`` recorders on transformers 5) also see the edited stream.
    """

    def __init__(self, module: nn.Module, name: str, is_input: bool) -> None:
        self.module = module
        self.name = name
        self.is_input = is_input
        self.editors: list[TensorFn] = []
        self.observers: list[TensorFn] = []
        if is_input:
            self.handle = module.register_forward_pre_hook(
                self._pre_hook, with_kwargs=True, prepend=True
            )
        else:
            self.handle = module.register_forward_hook(self._post_hook, prepend=True)

    def _run(self, h: torch.Tensor) -> torch.Tensor | None:
        if self.editors and not h.is_floating_point():
            where = self.name + (INPUT_SUFFIX if self.is_input else "")
            raise TypeError(
                f"cannot steer {where!r}: its tensor is {h.dtype} (integer token ids or masks), "
                "not activations, so an edit would corrupt it; steer a layer's residual stream "
                "or a module that returns floating-point activations instead"
            )
        edited = None
        for editor in list(self.editors):
            new = editor(h if edited is None else edited)
            if new is not None:
                edited = new
        final = h if edited is None else edited
        for observer in list(self.observers):
            observer(final)
        return edited

    def _pre_hook(self, mod: nn.Module, args: tuple, kwargs: dict) -> tuple | None:
        where = self.name + INPUT_SUFFIX
        if args:
            new = self._run(first_tensor(args[0], where, self.module))
            return None if new is None else ((new, *args[1:]), kwargs)
        if "hidden_states" in kwargs:
            new = self._run(first_tensor(kwargs["hidden_states"], where, self.module))
            return None if new is None else (args, {**kwargs, "hidden_states": new})
        raise TypeError(
            f"module {self.name!r} was called without positional input or hidden_states=, so "
            "its input cannot be hooked; hook the previous block's output instead"
        )

    def _post_hook(self, mod: nn.Module, args: tuple, output: Any) -> Any:
        new = self._run(first_tensor(output, self.name, self.module))
        return None if new is None else replace_first(output, new)


_DISPATCHERS: weakref.WeakKeyDictionary[nn.Module, dict[bool, _Dispatch]] = (
    weakref.WeakKeyDictionary()
)


class TensorHookHandle:
    """Removes one editor or observer; the torch hook goes when its module has none left."""

    def __init__(self, dispatch: _Dispatch, fn: TensorFn, edits: bool) -> None:
        self._dispatch = dispatch
        self._fn: TensorFn | None = fn
        self._list = dispatch.editors if edits else dispatch.observers

    def remove(self) -> None:
        if self._fn is None:
            return
        for i, fn in enumerate(self._list):
            if fn is self._fn:
                del self._list[i]
                break
        self._fn = None
        d = self._dispatch
        if not d.editors and not d.observers:
            d.handle.remove()
            sides = _DISPATCHERS.get(d.module, {})
            if sides.get(d.is_input) is d:
                del sides[d.is_input]


def register_tensor_hook(
    model: nn.Module, path: str, fn: TensorFn, *, edits: bool = False
) -> TensorHookHandle:
    """Call ``fn`` on the hidden states at ``path``.

    ``edits=True`` marks an editor: a tensor it returns replaces the hidden states. Observers
    (``edits=False``) see the hidden states after every editor on that module has run.
    """
    module = check_hookable(model, path, edits=edits)
    name, is_input = split_hook_path(path)
    sides = _DISPATCHERS.setdefault(module, {})
    dispatch = sides.get(is_input)
    if dispatch is None:
        dispatch = sides[is_input] = _Dispatch(module, name, is_input)
    (dispatch.editors if edits else dispatch.observers).append(fn)
    return TensorHookHandle(dispatch, fn, edits)


def active_edits(model: nn.Module) -> int:
    """How many trait_lab editors (steering, ablation, capping) are registered on ``model`` now.

    Scores that must see the unsteered model (coherence) refuse to run while this is not 0.

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> active_edits(tiny_model())
        0
    """
    return sum(
        len(dispatch.editors)
        for module in model.modules()
        for dispatch in _DISPATCHERS.get(module, {}).values()
    )


def expected_width(model: nn.Module, path: str) -> int | None:
    """Width of the activations at ``path`` when it can be known before a forward pass."""
    module = get_module(model, path)
    _, is_input = split_hook_path(path)
    if isinstance(module, nn.Linear):
        return module.in_features if is_input else module.out_features
    try:
        _, layers = find_layers(model)
    except ValueError:
        return None
    if any(module is block for block in layers):
        try:
            return hidden_size(model)
        except ValueError:
            return None
    return None


class DeviceVector:
    """A validated fp32 vector (or matrix) with per-device copies made on first use.

    ``on(h.device)`` inside a hook gives the copy on the activations' device, so one hook works
    on every block of a model spread over several GPUs (each device copied to once).
    """

    def __init__(self, tensor: torch.Tensor) -> None:
        self.cpu = tensor
        self._copies: dict[torch.device, torch.Tensor] = {}

    def on(self, device: torch.device) -> torch.Tensor:
        if device.type == "cpu":
            return self.cpu
        copy = self._copies.get(device)
        if copy is None:
            copy = self._copies[device] = self.cpu.to(device)
        return copy

    def assign(self, value: torch.Tensor) -> None:
        """Overwrite the values in place (every copy), keeping each tensor's identity.

        A compiled graph that reads this vector then sees the new values without recompiling.
        """
        self.cpu.copy_(value)
        for copy in self._copies.values():
            copy.copy_(value)


class PositionTracker:
    """Knows the absolute index (in the padded input) of the tokens in the current forward.

    A pre-hook on the module that owns the blocks reads how many tokens the KV cache already
    holds, so a decode step with one token knows it is at position ``prompt_len + step``.
    """

    def __init__(self, model: nn.Module) -> None:
        layers_path, _ = find_layers(model)
        owner_path = layers_path.rpartition(".")[0]
        self.owner = model.get_submodule(owner_path) if owner_path else model
        self.offset = 0

    def attach(self) -> RemovableHandle:
        def pre_hook(mod: nn.Module, args: tuple, kwargs: dict) -> None:
            self.offset = forward_offset(args, kwargs)

        return self.owner.register_forward_pre_hook(pre_hook, with_kwargs=True)

    def positions(self, seq_len: int, device: torch.device) -> torch.Tensor:
        return torch.arange(self.offset, self.offset + seq_len, device=device)


_H = TypeVar("_H", bound="HookContext")


class HookContext:
    """Base of every hook: registers in ``__enter__``, removes everything in ``__exit__``.

    Subclasses implement ``_attach`` and register through ``self._add``. A failure half-way
    through ``_attach`` removes what was already registered.
    """

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self._handles: list[RemovableHandle | TensorHookHandle] = []

    def _attach(self) -> None:
        raise NotImplementedError

    def _add(self, handle: RemovableHandle | TensorHookHandle) -> None:
        self._handles.append(handle)

    @property
    def active(self) -> bool:
        """Whether the hooks are currently registered."""
        return bool(self._handles)

    def register(self: _H) -> _H:
        """Register the hooks (what ``with`` does); prefer the context-manager form."""
        if self._handles:
            raise RuntimeError(f"{type(self).__name__} is already registered; exit it first")
        try:
            self._attach()
        except BaseException:
            self.remove()
            raise
        return self

    def remove(self) -> None:
        """Remove every hook this context registered (idempotent)."""
        while self._handles:
            self._handles.pop().remove()

    def __enter__(self: _H) -> _H:
        return self.register()

    def __exit__(self, *exc: object) -> None:
        self.remove()


def fp32_apply(h: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Apply ``fn`` to ``h`` in fp32 and cast the result back to ``h``'s dtype."""
    return fn(h.float()).to(h.dtype)
