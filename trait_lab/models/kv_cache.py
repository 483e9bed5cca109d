"""Where a forward call sits in the sequence, whatever transformers calls its KV cache.

transformers has renamed the cache argument (``past_key_values`` in 4.x and early 5.x, ``cache``
from 5.2x on, ``past_key_values`` deprecated until 5.40) and stopped passing ``cache_position``.
Everything in trait_lab that needs to know "is this the prompt or decode step k?" asks this
module, which never looks a cache up by name:

* ``cache_position`` when the model was given one (absolute slots of this call's tokens);
* otherwise any ``transformers.Cache`` object (or legacy tuple cache) among the call's
  arguments, whatever its keyword, measured with ``get_seq_length()`` exactly as the model
  itself does;
* otherwise no cache: offset 0 — cross-checked against ``position_ids``, so a call whose
  positions say it continues a sequence but whose cache cannot be found raises instead of
  silently counting from 0.

When trait_lab itself calls a model it passes the cache under the name the model's ``forward``
declares (:func:`cache_keyword`) and reads it back from the output's declared field
(:func:`output_cache`), so no deprecation warning reaches a user.

Example:
    >>> import torch
    >>> from trait_lab.testing import tiny_model
    >>> model = tiny_model("llama")
    >>> out = model(input_ids=torch.tensor([[1, 2, 3]]), use_cache=True)
    >>> cache_length(output_cache(out))
    3
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from transformers import Cache

#: Keywords a cache has been passed under, newest first; only used to find the forward's own.
CACHE_KEYWORDS = ("cache", "past_key_values")


class CachePositionError(RuntimeError):
    """The position of a forward call in its sequence could not be determined."""


def cache_keyword(model: nn.Module) -> str:
    """The keyword ``model.forward`` takes its KV cache under: ``cache`` or ``past_key_values``.

    Read from the forward's signature, so trait_lab never passes a deprecated name.

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> cache_keyword(tiny_model("llama")) in CACHE_KEYWORDS
        True
    """
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError) as exc:  # pragma: no cover - builtins without signatures
        raise TypeError(f"cannot read the signature of {type(model).__name__}.forward") from exc
    for name in CACHE_KEYWORDS:
        if name in params:
            return name
    raise TypeError(
        f"{type(model).__name__}.forward takes no KV cache argument (looked for "
        f"{', '.join(CACHE_KEYWORDS)}); trait_lab's generation needs a decoder model with a cache"
    )


def output_cache(output: Any) -> Any:
    """The KV cache a model returned, read from the output's declared field (no deprecated alias).

    Example:
        >>> import torch
        >>> from trait_lab.testing import tiny_model
        >>> out = tiny_model("llama")(input_ids=torch.tensor([[1, 2]]), use_cache=True)
        >>> cache_length(output_cache(out))
        2
    """
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        fields = {field.name for field in dataclasses.fields(output)}
        for name in CACHE_KEYWORDS:
            if name in fields:
                return getattr(output, name)
    raise TypeError(
        f"the model returned {type(output).__name__} with no KV cache field (looked for "
        f"{', '.join(CACHE_KEYWORDS)}); call it with use_cache=True"
    )


def is_cache(value: Any) -> bool:
    """Whether ``value`` is a KV cache: a ``transformers.Cache`` or legacy tuple of (k, v)."""
    if isinstance(value, Cache):
        return True
    return (
        isinstance(value, (tuple, list))
        and len(value) > 0
        and all(
            isinstance(entry, (tuple, list))
            and len(entry) >= 2
            and isinstance(entry[0], torch.Tensor)
            for entry in value
        )
    )


def cache_length(cache: Any) -> int:
    """How many tokens a KV cache already holds (0 for ``None``).

    Example:
        >>> cache_length(None)
        0
    """
    if cache is None:
        return 0
    if isinstance(cache, Cache):
        return int(cache.get_seq_length())
    if is_cache(cache):
        return int(cache[0][0].shape[-2])
    raise TypeError(f"not a KV cache: {type(cache).__name__}")


def forward_offset(args: tuple, kwargs: Mapping[str, Any]) -> int:
    """Absolute index (in the padded sequence) of the first token of a forward call.

    ``args``/``kwargs`` are what a forward pre-hook (``with_kwargs=True``) receives on the
    module that owns the blocks. The result is cross-checked against ``position_ids``; raises
    :class:`CachePositionError` when the call's position cannot be determined.

    Example:
        >>> import torch
        >>> forward_offset((), {"cache_position": torch.tensor([7])})
        7
        >>> forward_offset((), {"input_ids": torch.tensor([[1, 2, 3]])})
        0
    """
    cache_position = kwargs.get("cache_position")
    if isinstance(cache_position, torch.Tensor) and cache_position.numel() > 0:
        return int(cache_position.reshape(-1)[0])
    caches = [value for value in (*args, *kwargs.values()) if value is not None and is_cache(value)]
    lengths = {cache_length(cache) for cache in caches}
    if len(lengths) > 1:
        raise CachePositionError(
            f"the forward call was given {len(caches)} KV caches of different lengths "
            f"{sorted(lengths)}; pass one cache"
        )
    offset = lengths.pop() if lengths else 0
    for name in CACHE_KEYWORDS:
        value = kwargs.get(name)
        if value is not None and not is_cache(value):
            raise CachePositionError(
                f"the forward call's {name}= is a {type(value).__name__}, not a KV cache trait_lab "
                "can measure; pass a transformers Cache (e.g. DynamicCache)"
            )
    _check_positions(kwargs.get("position_ids"), offset, found_cache=bool(caches))
    return offset


def _check_positions(position_ids: Any, offset: int, *, found_cache: bool) -> None:
    """Refuse an offset that the call's own ``position_ids`` contradict.

    ``position_ids`` count real (unpadded) tokens, so every row's last position is at most the
    absolute index ``offset + seq_len - 1`` (``seq_len``: the call's token count, the last dim
    of ``position_ids``); a larger one means tokens came before this call that no visible cache
    accounts for.
    """
    if not isinstance(position_ids, torch.Tensor) or position_ids.numel() == 0:
        return
    n = int(position_ids.shape[-1])
    last = int(position_ids.reshape(-1, position_ids.shape[-1])[:, -1].max())
    if last > offset + n - 1:
        where = "a KV cache holding" if found_cache else "no KV cache, so"
        raise CachePositionError(
            f"cannot tell where this forward call sits in its sequence: its position_ids reach "
            f"{last} but trait_lab found {where} {offset} earlier tokens. The model was probably "
            "given its cache under an argument trait_lab does not recognise; pass a transformers "
            "Cache, or cache_position="
        )
