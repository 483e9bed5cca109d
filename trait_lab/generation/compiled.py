"""A compiled decode step for ``HookedGenerator(model, compile=True)``.

Eager decoding spends its time in per-op overhead as well as in the matrix products; this
module removes the overhead: a ``torch.compile``-d graph runs the one-token forward with the
steering, capture and projection hooks inside. Each (batch size, cache length, hook
structure) gets a *slot* of its own, kept while it is among the :data:`SLOTS` most recent:

* a private *twin* of the model (new module objects, the same parameter tensors: no extra
  weight memory) with the slot's :class:`~trait_lab.generation.step_hooks.StepHooks`
  registered on it for good, so nobody else's forward ever sees them;
* a ``transformers.StaticCache`` (fixed shapes; its length is a power of two, at least
  :data:`BUCKET`, so most prompts share a slot);
* a compiled step with a code object of its own (torch keeps graphs per code object, so no
  slot can ever run another's graph).

A new generation with a slot's structure copies its vectors, coefficients, rows, position
windows and projection matrices into the slot's hooks in place (``StepHooks.load``): the
graph reads the new values, nothing recompiles (a slider move). The first forward of each
generation (the prompt, or a kept prompt's last token) runs eagerly; every later one is
compiled. The first compile of a slot takes tens of seconds on a CPU (a notice is logged
before and after); torch's inductor keeps the compiled code on disk, so a later process pays
seconds. Sliding-window models (their static cache recompiles every token) and a failing
compile fall back to the eager loop for good, with a one-line notice. Greedy tokens equal the
eager loop's (tested on every tiny architecture and the default model).

The twins are copies of the model's module tree: a generation while hooks of the model's own
are registered on it (a steering or capture context, a ``HookManager``) decodes eagerly, so
they run; a changed module tree (an adapter added) gets new twins. Weights changed in place
are shared, so they are seen.

Example:
    >>> from trait_lab.testing import tiny_model
    >>> decoder = CompiledDecoder(tiny_model())
    >>> decoder.unavailable is None
    True
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
import threading
import time
import types
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
import torch._dynamo
from torch import nn
from transformers import Cache, StaticCache

from trait_lab.generation.configs import CaptureConfig, ProjectionSpec, SteeringConfig
from trait_lab.generation.step_hooks import StepHooks
from trait_lab.models.architectures import context_limit
from trait_lab.models.kv_cache import cache_keyword

__all__ = ["BUCKET", "RECOMPILE_LIMIT", "SLOTS", "CompiledDecoder", "CompiledSession", "twin"]

logger = logging.getLogger(__name__)


def _quiet_tracer() -> None:
    """Ignore deprecation notices while torch compiles (inside ``warnings.catch_warnings``).

    Its tracer runs torch's and transformers' internals symbolically, and what they say about
    their own deprecated internals (``torch.jit.script_method``, instantiated autograd
    functions) would be reported at trait_lab's call. trait_lab's own hooks are not hidden
    by this: every generation runs them eagerly on the prompt first, outside this filter.
    """
    warnings.filterwarnings("ignore", category=DeprecationWarning)


#: The smallest static cache; larger ones are powers of two (one graph per size, at most
#: twice the positions a generation needs: attention over unused slots costs time).
BUCKET = 64
#: Graphs one slot may compile (one is the rule; a guard torch cannot avoid, e.g. a new model
#: class registering its outputs, adds one); past it the decoder decodes eagerly, with a notice.
RECOMPILE_LIMIT = 8
#: Slots (batch size x cache size x hook structure) a decoder keeps, the most recent first.
SLOTS = 4


def twin(model: nn.Module) -> nn.Module:
    """A copy of ``model``'s module tree that shares every parameter and buffer with it.

    Hooks registered on the twin never run in ``model``'s own forward, and an in-place change
    of ``model``'s weights is seen by both.

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> model = tiny_model()
        >>> other = twin(model)
        >>> other is model, next(other.parameters()) is next(model.parameters())
        (False, True)
    """
    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
    return copy.deepcopy(model, memo=shared)


def _compile_failure(exc: BaseException) -> bool:
    """Whether ``exc`` came from torch's compiler (raised before the graph ran), not the model."""
    module = type(exc).__module__
    return module.startswith(("torch._dynamo", "torch._inductor", "torch.compiler"))


def _own_code(method: Any, name: str) -> Any:
    """``method`` rebound to a copy of its function with a code object of its own.

    torch keeps compiled graphs per code object and reuses one whenever its guards hold, and
    guards do not pin every object a graph reads (a static cache's tensors, the hooks that
    record): two slots sharing a code object could run each other's graphs. Seen on
    transformers 4.57: another model's graph, wrong tokens. One code object per slot rules
    that out.
    """
    fn = method.__func__
    code = fn.__code__.replace(co_name=name)  # a new object each call (equal, not identical)
    own = types.FunctionType(code, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    return types.MethodType(own, method.__self__)


def _layout(model: nn.Module) -> tuple[int, int]:
    """(modules, forward hooks) of ``model`` now: what a twin made earlier may no longer match.

    torch has no public way to list a module's hooks, so this reads its hook dictionaries.
    """
    modules = list(model.modules())
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in modules)
    return len(modules), hooks


class _Slot:
    """Everything one (batch, cache length, hook structure) needs, owned by nobody else: a
    twin with its hooks registered for good, a static cache, a compiled step of its own."""

    def __init__(
        self,
        model: nn.Module,
        hooks: StepHooks,
        length: int,
        configs: tuple[Any, Sequence[SteeringConfig], Any],
    ) -> None:
        self.twin = twin(model)
        self.hooks = StepHooks(self.twin, hooks.batch, hooks.prompt_len, *configs).register()
        config: Any = model.config
        self.cache = StaticCache(config=config, max_cache_len=length)
        self.length = length
        self.keyword = cache_keyword(model)
        self.positions = "cache_position" in inspect.signature(model.forward).parameters
        self.ready = False  # whether the compiled step has run once
        with warnings.catch_warnings():
            _quiet_tracer()
            self.step = torch.compile(
                _own_code(self.forward, "trait_lab_decode_step"),
                dynamic=False,
                fullgraph=True,  # a graph break would run code shared with other slots
            )

    def forward(
        self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, where: torch.Tensor
    ) -> torch.Tensor:
        """One forward of the twin through the static cache: the last position's logits."""
        kwargs: dict[str, Any] = {self.keyword: self.cache}
        if self.positions:  # transformers 4.x declares cache_position; 5.x counts itself
            kwargs["cache_position"] = where
        out = self.twin(
            input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **kwargs
        )
        return out.logits[:, -1, :]


class CompiledDecoder:
    """The compiled decode step of one model (see the module doc); one generation at a time.

    ``unavailable`` says why it cannot be used (then ``open`` returns None and the generator
    decodes eagerly); ``compile_seconds`` lists how long each slot's first compiled call took
    (a compile, or loading one from torch's disk cache).
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.unavailable: str | None = None
        self.compile_seconds: list[float] = []
        self._busy = False
        self._lock = threading.Lock()
        self._slots: OrderedDict[Any, _Slot] = OrderedDict()
        self._layout = _layout(model)
        self._warned = False
        if getattr(model, "hf_device_map", None):
            self.unavailable = "the model is spread over devices (device_map)"

    def open(
        self,
        mask: torch.Tensor,
        max_new_tokens: int,
        hooks: StepHooks,
        configs: tuple[CaptureConfig | None, Sequence[SteeringConfig], ProjectionSpec | None],
        prefix: Cache | None = None,
    ) -> CompiledSession | None:
        """Start one generation for the left-padded ``mask``; None when the eager loop must
        run instead (unavailable, failed before, or another generation still holds it).

        ``hooks``: this generation's hooks (on the model; their values are copied into the
        slot's); ``configs``: the (capture, steering, projection) they were built from.
        ``prefix``: the KV cache of the prompt up to its last token (a kept prompt, see
        :mod:`~trait_lab.generation.prompt_cache`); it is copied into the static cache."""
        with self._lock:  # two threads (a panel's old and new generation) must not share
            if self.unavailable is not None or self._busy:
                return None
            self._busy = True
        try:
            return self._open(mask, max_new_tokens, hooks, configs, prefix)
        except BaseException:
            self._busy = False
            raise

    def _open(
        self,
        mask: torch.Tensor,
        max_new_tokens: int,
        hooks: StepHooks,
        configs: tuple[CaptureConfig | None, Sequence[SteeringConfig], ProjectionSpec | None],
        prefix: Cache | None,
    ) -> CompiledSession | None:
        modules, hooks_now = _layout(self.model)
        if modules != self._layout[0]:  # e.g. an adapter added: twins of the new tree
            self._slots.clear()
            self._layout = (modules, hooks_now)
        if hooks_now > self._layout[1]:
            # hooks registered on the model itself (a steering or capture context, a
            # HookManager) would not run on the slots' twins: this generation goes eagerly
            if not self._warned:
                self._warned = True
                logger.warning(
                    "trait_lab: the model has forward hooks of its own registered; decoding "
                    "eagerly so that they run (pass steering/capture to generate instead)"
                )
            self._busy = False
            return None
        prompt_len = mask.shape[1]
        length = max(BUCKET, 2 ** math.ceil(math.log2(prompt_len + max_new_tokens)))
        limit = context_limit(self.model)
        if limit is not None:
            length = max(min(length, limit), prompt_len + max_new_tokens)
        key = (hooks.structure(), length)
        slot = self._slots.get(key)
        if slot is None:
            slot = _Slot(self.model, hooks, length, configs)
            if any(getattr(layer, "is_sliding", False) for layer in slot.cache.layers):
                # transformers counts a sliding-window static layer in a Python int: a new
                # graph for every token, so compiling would only cost time
                self._give_up("the model has sliding-window attention layers")
                self._busy = False
                return None
            self._slots[key] = slot
            while len(self._slots) > SLOTS:
                self._slots.popitem(last=False)
        else:
            slot.hooks.load(hooks)
            slot.cache.reset()
        self._slots.move_to_end(key)
        session = CompiledSession(self, slot, mask)
        if prefix is not None:
            session.fill(prefix)
        return session

    def step(
        self,
        slot: _Slot,
        ids: torch.Tensor,
        mask: torch.Tensor,
        pos: torch.Tensor,
        where: torch.Tensor,
    ) -> torch.Tensor:
        """One decode step's last-position logits, compiled (eager after a compile failure)."""
        if self.unavailable is not None:
            return slot.forward(ids, mask, pos, where)
        first = not slot.ready
        if first:
            logger.warning(
                "trait_lab: compiling the decode step for batch %d, cache %d (tens of seconds "
                "the first time, seconds once torch's disk cache has it)",
                ids.shape[0],
                slot.length,
            )
        start = time.perf_counter()
        try:
            # never run eager behind the user's back: past the limit, torch raises instead
            with (
                torch._dynamo.config.patch(
                    recompile_limit=RECOMPILE_LIMIT, fail_on_recompile_limit_hit=True
                ),
                warnings.catch_warnings(),
            ):
                _quiet_tracer()  # torch may trace (compile) at any call
                logits = slot.step(ids, mask, pos, where)
        except Exception as exc:
            if not _compile_failure(exc):
                raise
            self._give_up(f"torch.compile failed: {type(exc).__name__}: {exc}"[:300])
            return slot.forward(ids, mask, pos, where)
        if first:
            slot.ready = True
            self.compile_seconds.append(time.perf_counter() - start)
            logger.warning("trait_lab: decode step ready in %.1f s", self.compile_seconds[-1])
        return logits

    def _give_up(self, reason: str) -> None:
        self.unavailable = reason
        self._slots.clear()
        logger.warning("trait_lab: not compiling the decode step: %s; decoding eagerly", reason)

    def release(self) -> None:
        """Let the next generation use the decoder (the session's ``close`` calls this)."""
        self._busy = False


class CompiledSession:
    """One generation on a :class:`CompiledDecoder`: the first forward eagerly, then compiled
    steps, all through one slot.

    ``hooks`` are the slot's resident hooks holding this generation's values: the generator
    reads captures and checks through them. ``close()`` (always, e.g. in a ``finally``) frees
    the decoder for the next generation.
    """

    def __init__(self, decoder: CompiledDecoder, slot: _Slot, mask: torch.Tensor) -> None:
        self.decoder = decoder
        self.slot = slot
        self.hooks = slot.hooks
        batch, prompt_len = mask.shape
        self._mask = torch.ones(batch, slot.length, dtype=mask.dtype, device=mask.device)
        self._mask[:, :prompt_len] = mask
        self._filled = 0  # cache slots written so far
        # the first forward runs eagerly, whatever its length: the hooks then record which
        # paths fired and their norms in Python, so every compiled step sees the same state
        self._started = False
        self._closed = False

    def fill(self, prefix: Cache) -> None:
        """Copy a prompt's cached keys and values (all but its last token) into the static
        cache through the public ``Cache.update``; the next forward is the last prompt token."""
        if self._started:
            raise RuntimeError("CompiledSession.fill: only before the first forward")
        for index, layer in enumerate(prefix.layers):
            keys, values = getattr(layer, "keys", None), getattr(layer, "values", None)
            if not isinstance(keys, torch.Tensor) or not isinstance(values, torch.Tensor):
                raise TypeError(
                    f"the kept prompt's cache layer {index} ({type(layer).__name__}) holds no "
                    "key/value tensors to copy; generate with compile=False for this model"
                )
            where = torch.arange(keys.shape[-2], device=keys.device)
            self.slot.cache.update(keys, values, index, {"cache_position": where})
        self._filled = prefix.get_seq_length()

    def forward(self, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Logits [batch, vocab] after feeding ``ids`` (the prompt first, then one token at a
        time) at ``positions``; the hooks must have been told the offset (``at``)."""
        n = ids.shape[1]
        where = torch.arange(self._filled, self._filled + n, device=ids.device)
        with torch.no_grad():
            if not self._started:  # the prompt (or a kept prompt's last token): eager
                logits = self.slot.forward(ids, self._mask, positions, where)
            else:
                logits = self.decoder.step(self.slot, ids, self._mask, positions, where)
        self._filled += n
        self._started = True
        return logits

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.decoder.release()
