"""Records of one generated response: its text, tokens and scores, and a trait's projection on it.

:class:`ResponseRecord` is one answer as the steering evaluation keeps it (prompt, response, the
tokens, the judge's trait and coherence scores, the vectors that steered it);
:class:`ProjectionEntry` is one trait vector's per-token projection on a prompt + response (one
layer's slice of a :class:`trait_lab.dynamics.records.ProjectionRecord`). Both are frozen,
checked when built, and round-trip through ``to_dict`` / ``from_dict``.

Example:
    >>> r = ResponseRecord("Hi?", "Hello!", trait_score=71.0)
    >>> ResponseRecord.from_dict(r.to_dict()) == r
    True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trait_lab.core.records import (
    Record,
    check_float,
    check_int,
    check_opt_float,
    check_str,
    invalid,
    set_field,
)
from trait_lab.core.types import VectorSpec

__all__ = ["ProjectionEntry", "ResponseRecord"]


def _items(owner: str, name: str, value: Any, check: Callable[[str, Any], Any]) -> tuple[Any, ...]:
    """``value`` as a tuple (possibly empty), each item passed through ``check(label, item)``."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise invalid(owner, name, value, "a list (possibly empty)", f"Pass e.g. {name}=[].")
    return tuple(check(f"{name}[{i}]", item) for i, item in enumerate(value))


def _vector(owner: str, name: str, value: Any) -> VectorSpec:
    """A :class:`VectorSpec`, or the dict of one (as ``to_dict`` wrote it)."""
    if isinstance(value, Mapping):
        try:
            return VectorSpec.from_dict(value)
        except ValueError as err:
            raise ValueError(f"{owner}.{name}: {err}") from err
    if not isinstance(value, VectorSpec):
        fix = "Pass VectorSpec(layer, component, position, method, weight)."
        raise invalid(owner, name, value, "a VectorSpec", fix)
    return value


@dataclass(frozen=True)
class ResponseRecord(Record):
    """One generated response: prompt, text, tokens, judge scores and the steering applied.

    ``prompt_tokens`` / ``response_tokens`` (token strings) and ``prompt_ids`` /
    ``response_ids`` are optional; when both of a pair are given they hold one id per token.
    ``trait_score`` and ``coherence`` are the judge's 0–100 scores (``None``: not judged);
    ``steering`` lists the vectors applied, each ``weight`` its coefficient (empty: unsteered).

    Example:
        >>> r = ResponseRecord("Hi?", "Yo", response_tokens=["Y", "o"], response_ids=[60, 18],
        ...                    steering=[VectorSpec(9, weight=4.0)])
        >>> r.steering[0].weight, ResponseRecord.from_dict(r.to_dict()) == r
        (4.0, True)
    """

    prompt: str
    response: str
    prompt_tokens: tuple[str, ...] = ()
    response_tokens: tuple[str, ...] = ()
    prompt_ids: tuple[int, ...] = ()
    response_ids: tuple[int, ...] = ()
    trait_score: float | None = None
    coherence: float | None = None
    steering: tuple[VectorSpec, ...] = ()

    def __post_init__(self) -> None:
        o = "ResponseRecord"
        check_str(o, "prompt", self.prompt)
        if not isinstance(self.response, str):
            fix = "Pass the generated text ('' when the model stopped at once)."
            raise invalid(o, "response", self.response, "a string", fix)
        for part in ("prompt", "response"):
            toks = _items(o, f"{part}_tokens", getattr(self, f"{part}_tokens"), self._token)
            ids = _items(o, f"{part}_ids", getattr(self, f"{part}_ids"), self._id)
            if toks and ids and len(toks) != len(ids):
                raise invalid(
                    o,
                    f"{part}_ids",
                    list(ids),
                    f"one id per token ({len(toks)} {part}_tokens)",
                    "Pass tokens and ids of the same tokenization.",
                )
            set_field(self, f"{part}_tokens", toks)
            set_field(self, f"{part}_ids", ids)
        for name in ("trait_score", "coherence"):
            set_field(self, name, check_opt_float(o, name, getattr(self, name), lo=0.0, hi=100.0))
        vectors = _items(o, "steering", self.steering, lambda k, v: _vector(o, k, v))
        set_field(self, "steering", vectors)

    @staticmethod
    def _token(label: str, value: Any) -> str:
        if not isinstance(value, str):
            raise invalid("ResponseRecord", label, value, "a token string", "Pass str tokens.")
        return value

    @staticmethod
    def _id(label: str, value: Any) -> int:
        return check_int("ResponseRecord", label, value)


@dataclass(frozen=True)
class ProjectionEntry(Record):
    """One trait vector's projection ``h·v̂`` per token, on one prompt + response.

    ``vector`` says where the vector sits (its ``layer``, component, position, method);
    ``prompt_scores`` and ``response_scores`` hold one finite score per prompt / response token.

    Example:
        >>> e = ProjectionEntry("optimism", VectorSpec(9), [0.1, 0.2], [1.5, 2.5])
        >>> e.layer, e.response_mean, ProjectionEntry.from_dict(e.to_dict()) == e
        (9, 2.0, True)
    """

    trait: str
    vector: VectorSpec
    prompt_scores: tuple[float, ...]
    response_scores: tuple[float, ...]

    def __post_init__(self) -> None:
        o = "ProjectionEntry"
        check_str(o, "trait", self.trait)
        set_field(self, "vector", _vector(o, "vector", self.vector))
        for name in ("prompt_scores", "response_scores"):
            scores = _items(o, name, getattr(self, name), lambda k, v: check_float(o, k, v))
            set_field(self, name, scores)

    @property
    def layer(self) -> int:
        """The vector's layer."""
        return self.vector.layer

    @property
    def scores(self) -> tuple[float, ...]:
        """Every token's score: the prompt's, then the response's."""
        return self.prompt_scores + self.response_scores

    @property
    def response_mean(self) -> float | None:
        """The mean score over the response tokens (``None`` for an empty response)."""
        n = len(self.response_scores)
        return sum(self.response_scores) / n if n else None
