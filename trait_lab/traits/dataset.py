"""Contrastive trait datasets: the on-disk format, validation, loading and the built-in traits.

A trait is a folder holding ``trait.json`` (the definition of both poles, the kind of contrast
and the recommended capture position), ``pairs.jsonl`` (one contrastive pair a line, each with
an ``id``) and ``steering.txt`` (held-out questions for steering, one a line). Two
kinds of contrast exist: ``"system_prompt"`` pairs put a positive and a negative system prompt
before the same question; ``"prefix"`` pairs answer the same question with a positive and a
negative beginning of the reply. ``docs/traits.md`` describes the format in full.

Example:
    >>> ds = load_trait("optimism")
    >>> ds.kind, ds.recommended_position, len(ds.pairs) >= 60
    ('system_prompt', 'prompt[-1]', True)
    >>> train, val = ds.split(val_fraction=0.2, seed=0)
    >>> len(train) + len(val) == len(ds.pairs)
    True
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from trait_lab.traits.format import (
    DEFAULT_POSITIONS,
    KINDS,
    META_FILE,
    PAIRS_FILE,
    POLES,
    REPORT_FILE,
    STEERING_FILE,
    Pole,
    Problem,
    TraitDefinition,
    TraitPair,
    read_trait_folder,
)

__all__ = [
    "DEFAULT_POSITIONS",
    "KINDS",
    "META_FILE",
    "PAIRS_FILE",
    "POLES",
    "STEERING_FILE",
    "Problem",
    "TraitDataset",
    "TraitDefinition",
    "TraitFormatError",
    "TraitPair",
    "builtin_traits_dir",
    "list_traits",
    "load_trait",
    "trait_path",
    "validate_trait",
]


class TraitFormatError(ValueError):
    """A trait folder has errors; ``problems`` lists every one (warnings included)."""

    def __init__(self, path: str | Path, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        errors = [p for p in self.problems if p.severity == "error"]
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(
            f"trait folder {str(path)!r} has {len(errors)} error(s); fix them and load again "
            f"(the format is described in docs/traits.md):\n{lines}"
        )


@dataclass(frozen=True)
class TraitDataset:
    """A loaded, validated trait. Build one with :func:`load_trait`."""

    name: str
    path: Path
    definition: TraitDefinition
    kind: str
    pairs: tuple[TraitPair, ...] = field(repr=False)
    steering_questions: tuple[str, ...] = field(repr=False)
    recommended_position: str
    notes: str = ""
    report_questions: tuple[str, ...] = field(default=(), repr=False)

    def steering_split(self) -> tuple[list[str], list[str]]:
        """The steering questions to search coefficients on, and the held-out ones to report on.

        Search questions are ``steering.txt``; report questions are ``steering_report.txt``,
        which no coefficient search sees, so a recommended point is not tuned to the numbers
        reported for it.

        Raises:
            ValueError: the trait has no ``steering_report.txt`` (how to add one is named).

        Example:
            >>> search, report = load_trait("optimism").steering_split()
            >>> len(search) > 0 and len(report) > 0 and not set(search) & set(report)
            True
        """
        if not self.report_questions:
            raise ValueError(
                f"trait {self.name!r} ({self.path}) has no held-out report questions: add "
                f"{REPORT_FILE} beside {STEERING_FILE}, one question a line (10 or more), none "
                f"of them in {STEERING_FILE} or the pairs; steering evaluation searches on "
                f"{STEERING_FILE} and reports on {REPORT_FILE}"
            )
        return list(self.steering_questions), list(self.report_questions)

    def split(
        self, val_fraction: float = 0.2, seed: int = 0
    ) -> tuple[list[TraitPair], list[TraitPair]]:
        """Deterministic train/validation split of the pairs, each part in file order.

        Pairs are ranked by a hash of ``(seed, id)``, so the split does not depend on the order
        of the file and a pair keeps its side when others are added. With at least two pairs
        and ``0 < val_fraction < 1`` both parts are non-empty.

        Example:
            >>> train, val = load_trait("refusal").split(0.25, seed=1)
            >>> len(val) == round(0.25 * (len(train) + len(val)))
            True
        """
        if not 0 <= val_fraction < 1:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
        n = len(self.pairs)
        n_val = round(n * val_fraction)
        if val_fraction > 0 and n >= 2:
            n_val = min(max(n_val, 1), n - 1)
        rank = sorted(self.pairs, key=lambda p: hashlib.sha256(f"{seed}\0{p.id}".encode()).digest())
        val_ids = {p.id for p in rank[:n_val]}
        return [p for p in self.pairs if p.id not in val_ids], [
            p for p in self.pairs if p.id in val_ids
        ]

    def prompts(
        self, pole: Pole, pairs: Sequence[TraitPair] | None = None
    ) -> list[list[dict[str, str]]]:
        """The conversations to run for one pole, ready for ``capture_at_position``.

        ``system_prompt`` traits put the pole's system prompt first; ``prefix`` traits give
        both poles the same conversation (with the pair's ``system``, if any) and differ in
        :meth:`responses`.

        Example:
            >>> ds = load_trait("optimism")
            >>> [m["role"] for m in ds.prompts("positive")[0]]
            ['system', 'user']
        """
        _check_pole(pole)
        out = []
        for pair in self.pairs if pairs is None else pairs:
            system = getattr(pair, pole) if self.kind == "system_prompt" else pair.system
            messages = [] if system is None else [{"role": "system", "content": system}]
            out.append([*messages, {"role": "user", "content": pair.question}])
        return out

    def responses(self, pole: Pole, pairs: Sequence[TraitPair] | None = None) -> list[str] | None:
        """The reply prefixes of one pole (``prefix`` traits), or None (``system_prompt``).

        Example:
            >>> load_trait("refusal").responses("negative")[0][:10]
            'Sure! Here'
        """
        _check_pole(pole)
        if self.kind != "prefix":
            return None
        return [getattr(p, pole) for p in (self.pairs if pairs is None else pairs)]


def builtin_traits_dir() -> Path:
    """The folder holding the starter traits shipped with trait_lab."""
    return Path(str(resources.files("trait_lab") / "data" / "traits"))


def list_traits() -> list[str]:
    """Names of the built-in traits, sorted.

    Example:
        >>> list_traits()
        ['formality', 'humour', 'optimism', 'refusal', 'sycophancy']
    """
    root = builtin_traits_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / META_FILE).is_file())


def trait_path(name_or_path: str | Path) -> Path:
    """A built-in trait's folder for a bare name (``"optimism"``), else the path itself.

    Example:
        >>> trait_path("humour").name
        'humour'
    """
    text = _checked_name(name_or_path)
    if isinstance(name_or_path, str) and "/" not in text and "\\" not in text:
        builtin = builtin_traits_dir() / text
        if (builtin / META_FILE).is_file():
            return builtin
        if not Path(text).exists():
            raise FileNotFoundError(
                f"no built-in trait {text!r} and no folder of that name; built-in traits: "
                f"{', '.join(list_traits()) or '(none)'}; or pass the path of a trait folder"
            )
    return Path(name_or_path)


def validate_trait(path: str | Path) -> list[Problem]:
    """Every problem in a trait folder (errors and warnings), with file and line; [] if clean.

    Never stops at the first problem: a bad line is reported and the next one is read. Only
    an argument that names no folder at all (``""``, ``None``) raises.

    Example:
        >>> validate_trait(trait_path("sycophancy"))
        []
    """
    return read_trait_folder(Path(_checked_name(path)))[1]


def load_trait(name_or_path: str | Path) -> TraitDataset:
    """Load and validate a built-in trait (by name) or a trait folder (by path).

    Warnings (e.g. fewer than 20 pairs) are issued with :func:`warnings.warn`; any error
    raises a :class:`TraitFormatError` that lists every problem found.

    Example:
        >>> ds = load_trait("formality")
        >>> ds.name, ds.kind
        ('formality', 'prefix')
    """
    path = trait_path(name_or_path)
    _check_trait_folder(path)
    data, problems = read_trait_folder(path)
    if any(p.severity == "error" for p in problems):
        raise TraitFormatError(path, problems)
    if problems:
        warnings.warn(
            "\n".join([f"trait {path.name!r}:", *(f"  {p}" for p in problems)]), stacklevel=2
        )
    return TraitDataset(path=path.resolve(), **data)


def _check_pole(pole: str) -> None:
    if pole not in POLES:
        raise ValueError(f"pole must be 'positive' or 'negative', got {pole!r}")


def _starters() -> str:
    return f"built-in traits: {', '.join(list_traits()) or '(none)'}"


def _checked_name(name_or_path: object) -> str:
    """``name_or_path`` as text; a non-path or an empty name (the working folder) is refused."""
    text = os.fspath(name_or_path) if isinstance(name_or_path, (str, os.PathLike)) else None
    if not isinstance(text, str):
        raise TypeError(
            f"a trait is a built-in name or the path of a trait folder, got {name_or_path!r} "
            f"(a {type(name_or_path).__name__}); {_starters()}"
        )
    if not text.strip():
        raise ValueError(
            f"empty trait name {text!r} would read the working folder; pass a built-in trait "
            f"name ({_starters()}) or the path of a trait folder"
        )
    return text


def _check_trait_folder(path: Path) -> None:
    """Refuse a path that is no trait folder at all (nothing to validate), listing the starters."""
    files = (META_FILE, PAIRS_FILE, STEERING_FILE)
    if path.is_dir() and any((path / f).exists() for f in files):
        return
    what = "a file" if path.exists() else "does not exist"
    if path.is_dir():
        what = f"a folder without {', '.join(files)}"
    error = ValueError if path.exists() else FileNotFoundError
    raise error(
        f"{str(path)!r} is not a trait folder ({what}); pass a built-in trait name "
        f"({_starters()}) or the path of a folder holding {', '.join(files)} "
        "(the format is in docs/traits.md)"
    )
