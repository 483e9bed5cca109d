"""What every record in :mod:`trait_lab.core.types` is built from: the base class and field checks.

:class:`Record` gives a frozen dataclass a JSON-safe ``to_dict`` and a strict ``from_dict``
(unknown or missing keys are errors). Each ``check_*`` returns a field's normalised value or
raises a ``ValueError`` that names the record, the field, the bad value, what is allowed and
the fix; ``set_field`` stores the normalised value on the frozen instance.

Example:
    >>> check_int("VectorSpec", "layer", 9)
    9
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from typing import Any, TypeVar

T = TypeVar("T", bound="Record")


def jsonable(value: Any) -> Any:
    """``value`` in plain JSON types: records become dicts, tuples lists, keys strings."""
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Record:
    """Base of every record: a JSON-safe ``to_dict`` and a strict ``from_dict``.

    Example:
        >>> from trait_lab.core.types import JudgeResult
        >>> JudgeResult.from_dict({"trait_mean": 70.0, "coherence_mean": 85.0, "n": 20}).n
        20
    """

    def to_dict(self) -> dict[str, Any]:
        """Return plain JSON types: tuples become lists, int dict keys become strings."""
        return {f.name: jsonable(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
        """Build the record from ``to_dict`` output; unknown or missing keys raise ValueError."""
        if not isinstance(data, Mapping):
            raise ValueError(
                f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}: {data!r}. "
                f"Pass the output of {cls.__name__}.to_dict()."
            )
        allowed = [f.name for f in fields(cls)]
        required = [f.name for f in fields(cls) if MISSING is f.default is f.default_factory]
        unknown = [k for k in data if k not in allowed]
        missing = [k for k in required if k not in data]
        if unknown or missing:
            problems = [f"unknown key(s) {unknown}"] if unknown else []
            problems += [f"missing required key(s) {missing}"] if missing else []
            raise ValueError(
                f"{cls.__name__}.from_dict: {' and '.join(problems)}. Allowed keys: {allowed} "
                f"(required: {required}). Rename or remove the keys; none are ignored."
            )
        return cls(**cls._decode(dict(data)))

    @classmethod
    def _decode(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Turn JSON values back into field values (overridden where JSON loses types)."""
        return data


# --- field checks: each returns the normalised value or raises a ValueError -----------------


def invalid(owner: str, name: str, value: Any, allowed: str, fix: str) -> ValueError:
    """The ValueError for a bad field: value, what is allowed, and the fix."""
    return ValueError(f"{owner}.{name}={value!r} is invalid: expected {allowed}. {fix}")


def set_field(obj: object, name: str, value: Any) -> None:
    """Store a normalised value on a frozen dataclass (from its ``__post_init__``)."""
    object.__setattr__(obj, name, value)


def check_int(owner: str, name: str, value: Any, minimum: int = 0) -> int:
    """An int ``>= minimum``; bools, floats and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        fix = "Pass a whole number (not a bool, float or string)."
        raise invalid(owner, name, value, f"an int >= {minimum}", fix)
    return int(value)


def check_float(
    owner: str, name: str, value: Any, lo: float | None = None, hi: float | None = None
) -> float:
    """A finite real number, optionally in ``[lo, hi]``; returned as a float."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (lo is not None and value < lo) or (hi is not None and value > hi):
        span = f" in [{lo}, {hi}]" if hi is not None else (f" >= {lo}" if lo is not None else "")
        fix = "Pass a plain float (use float(x) on tensors); NaN and infinity are not allowed."
        raise invalid(owner, name, value, f"a finite number{span}", fix)
    return float(value)


def check_opt_float(
    owner: str, name: str, value: Any, lo: float | None = None, hi: float | None = None
) -> float | None:
    """``None``, or :func:`check_float`."""
    return None if value is None else check_float(owner, name, value, lo, hi)


def check_str(owner: str, name: str, value: Any, optional: bool = False) -> str | None:
    """A non-empty string (or ``None`` when ``optional``)."""
    if optional and value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        allowed = "a non-empty string" + (" or None" if optional else "")
        raise invalid(owner, name, value, allowed, f"Give {name} a value.")
    return value


def check_choice(owner: str, name: str, value: Any, choices: tuple[str, ...]) -> str:
    """One of ``choices``, spelled exactly."""
    if value not in choices:
        raise invalid(owner, name, value, f"one of {list(choices)}", "Use one of those spellings.")
    return str(value)


def check_items(owner: str, name: str, value: Any, example: list[Any]) -> list[Any]:
    """A non-empty list or tuple (not a string), returned as a list."""
    if isinstance(value, str) or not isinstance(value, Sequence) or not value:
        raise invalid(owner, name, value, "a non-empty list", f"Pass a list such as {example}.")
    return list(value)
