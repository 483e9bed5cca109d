"""``HookManager``: plain PyTorch hooks on modules named by path, removed together.

For the hooks trait_lab has no class for: ``fn`` is an ordinary torch hook (``fn(module, args,
output)``, or ``fn(module, args)`` for a pre-hook) and may return a replacement, as in torch.
Paths are checked up front (a typo lists the closest module names), and leaving the ``with``
block removes every hook, also when the body raised. trait_lab's own steering, ablation and
capture hooks run first on a module, so a managed hook sees their edits.

Example:
    >>> from trait_lab.testing import tiny_model, tiny_batch
    >>> model = tiny_model("llama")
    >>> seen = []
    >>> with HookManager(model) as hooks:
    ...     _ = hooks.add_forward_hook("model.layers.1.mlp", lambda m, a, out: seen.append(out))
    ...     _ = model(**tiny_batch(1, 4))
    >>> seen[0].shape, len(hooks)
    (torch.Size([1, 4, 32]), 0)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn
from torch.utils.hooks import RemovableHandle

from trait_lab.hooks.base import check_hookable
from trait_lab.models.architectures import split_hook_path


class ManagedHook:
    """One hook a :class:`HookManager` registered; ``remove()`` takes it off (idempotent)."""

    def __init__(self, manager: HookManager, path: str, handle: RemovableHandle) -> None:
        self.path = path
        self._manager: HookManager | None = manager
        self._handle = handle

    @property
    def active(self) -> bool:
        """Whether the hook is still registered."""
        return self._manager is not None

    def remove(self) -> None:
        """Remove the hook from its module and from its manager."""
        if self._manager is None:
            return
        self._handle.remove()
        self._manager._forget(self)
        self._manager = None

    def __repr__(self) -> str:
        return f"ManagedHook({self.path!r}, active={self.active})"


class HookManager:
    """Register torch forward hooks and pre-hooks by module path; remove them all at once.

    ``path`` is a name from ``model.named_modules()`` (e.g. ``"model.layers.3.mlp"``; ``""`` is
    the model itself). ``len(manager)`` is the number of hooks registered now. Use it as a
    context manager, or call :meth:`remove_all` in a ``finally`` block.

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> hooks = HookManager(tiny_model())
        >>> handle = hooks.add_forward_pre_hook("model.layers.0", lambda m, args: None)
        >>> len(hooks), handle.path
        (1, 'model.layers.0')
        >>> hooks.remove_all()
        >>> len(hooks)
        0
    """

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self._hooks: list[ManagedHook] = []

    def _module(self, path: str, method: str, fn: Callable[..., Any]) -> nn.Module:
        if not isinstance(path, str):
            raise TypeError(
                f"{method}: path must be a module name (str) such as 'model.layers.3.mlp', got "
                f"{type(path).__name__}: {path!r}; turn a layer index into one with "
                "get_hook_path(layer)"
            )
        if not callable(fn):
            raise TypeError(
                f"{method}: fn must be callable (a torch hook), got {type(fn).__name__}: {fn!r}"
            )
        name, is_input = split_hook_path(path)
        if is_input and method == "add_forward_hook":
            raise ValueError(
                f"add_forward_hook takes a module name, got {path!r}; to hook the input of "
                f"{name!r} use add_forward_pre_hook({name!r}, fn)"
            )
        return check_hookable(self.model, name)

    def _keep(self, path: str, handle: RemovableHandle) -> ManagedHook:
        hook = ManagedHook(self, path, handle)
        self._hooks.append(hook)
        return hook

    def _forget(self, hook: ManagedHook) -> None:
        self._hooks = [h for h in self._hooks if h is not hook]

    def add_forward_hook(
        self, path: str, fn: Callable[..., Any], *, with_kwargs: bool = False
    ) -> ManagedHook:
        """Call ``fn(module, args, output)`` after the module at ``path`` runs.

        A non-``None`` return value replaces the output (torch semantics). ``with_kwargs=True``
        calls ``fn(module, args, kwargs, output)``.
        """
        module = self._module(path, "add_forward_hook", fn)
        handle = module.register_forward_hook(fn, with_kwargs=with_kwargs)
        return self._keep(split_hook_path(path)[0], handle)

    def add_forward_pre_hook(
        self, path: str, fn: Callable[..., Any], *, with_kwargs: bool = False
    ) -> ManagedHook:
        """Call ``fn(module, args)`` before the module at ``path`` runs.

        A non-``None`` return value replaces the positional inputs (torch semantics);
        ``with_kwargs=True`` calls ``fn(module, args, kwargs)``, which may return
        ``(args, kwargs)``. A ``":input"`` suffix on ``path`` is accepted and ignored.
        """
        module = self._module(path, "add_forward_pre_hook", fn)
        handle = module.register_forward_pre_hook(fn, with_kwargs=with_kwargs)
        return self._keep(split_hook_path(path)[0], handle)

    @property
    def paths(self) -> list[str]:
        """The module path of every hook registered now, in registration order."""
        return [hook.path for hook in self._hooks]

    def remove_all(self) -> None:
        """Remove every hook this manager registered (idempotent)."""
        while self._hooks:
            self._hooks[-1].remove()

    def __len__(self) -> int:
        return len(self._hooks)

    def __enter__(self) -> HookManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove_all()

    def __repr__(self) -> str:
        return f"HookManager({type(self.model).__name__}, hooks={self.paths})"
