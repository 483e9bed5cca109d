"""What every fault test asserts: the error is ours, of the promised type, and says what to do.

"Ours" means raised from a frame inside ``trait_lab/`` or ``widgets/`` (not a traceback from deep
inside torch, json, pathlib or safetensors) and not a bare decoding error that happens to subclass
ValueError (``UnicodeDecodeError``, ``json.JSONDecodeError``).

Example:
    >>> from trait_lab.core.paths import check_name
    >>> _ = clear_error(ValueError, check_name, "f", "trait", "../x", mentions=["'../x'", "rename"])
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import trait_lab

_OURS = (
    Path(trait_lab.__file__).resolve().parent,
    Path(trait_lab.__file__).resolve().parent.parent / "widgets",
)
_NOT_OURS = (UnicodeError, json.JSONDecodeError)


def raised_by_us(exc: BaseException) -> bool:
    """True when the innermost frame that raised ``exc`` is trait_lab's or widgets' own code."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return False
    where = Path(frames[-1].filename).resolve()
    return any(where.is_relative_to(root) for root in _OURS)


def is_our_error(exc: BaseException) -> bool:
    """A user-facing error: ValueError/TypeError/OSError/RuntimeError raised by our code."""
    return (
        isinstance(exc, (ValueError, TypeError, OSError, RuntimeError))
        and not isinstance(exc, _NOT_OURS)
        and raised_by_us(exc)
    )


def clear_error(
    exc_type: type[BaseException],
    call: Callable[..., Any],
    *args: Any,
    mentions: Iterable[str] = (),
    **kwargs: Any,
) -> BaseException:
    """Call ``call(*args, **kwargs)``; assert it raises ``exc_type`` from our code, naming things.

    ``mentions`` are substrings the message must contain (case-insensitive): the bad value or
    file, and a word of the fix. Returns the exception for further checks.
    """
    try:
        call(*args, **kwargs)
    except BaseException as exc:
        if not isinstance(exc, exc_type):
            raise AssertionError(
                f"expected {exc_type.__name__}, got {type(exc).__name__}: {exc}"
            ) from exc
        assert is_our_error(exc), (
            f"not raised by trait_lab/widgets code: {type(exc).__name__}: {exc}"
        )
        message = str(exc).lower()
        missing = [m for m in mentions if m.lower() not in message]
        assert not missing, f"message does not mention {missing}: {exc}"
        return exc
    raise AssertionError(f"{getattr(call, '__name__', call)} did not raise {exc_type.__name__}")
