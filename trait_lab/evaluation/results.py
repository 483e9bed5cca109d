"""Steering results that survive anything: an append-only ``results.jsonl`` with responses beside.

Layout of one run's folder::

    results.jsonl          line 1: header (schema, run: the config fingerprint and judge)
                           then one "baseline" line and one "entry" line per configuration
    responses/<key>.json   the answers and per-answer scores behind a line, written first

Each line is appended and fsynced only after its responses file is written atomically, so a
kill at any point loses at most the configuration in flight (:func:`trait_lab.core.jsonl`
repairs a cut-off last line), and reopening the log with another fingerprint or judge raises
instead of mixing results.

Example:
    >>> import tempfile
    >>> run = SteeringRunRecord("demo", "optimism", "instruct", "f" * 16, {"kind": "test"})
    >>> log = ResultsLog(tempfile.mkdtemp(), run)
    >>> log.add_baseline(JudgeResult(20.0, 90.0, 4), [])
    >>> entry = SteeringEntry((12,), (4.0,), "residual", "probe", 60.0, 85.0, 4, True)
    >>> log.add(entry, []).delta, log.results().best().key
    (40.0, 'residual/probe/L12@+4')
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trait_lab.core.atomic import atomic_write_json
from trait_lab.core.jsonl import append_jsonl, read_jsonl
from trait_lab.core.records import Record, check_float, check_int, check_str, invalid, set_field
from trait_lab.core.schema import Schema
from trait_lab.core.types import JudgeResult

__all__ = [
    "RESULTS_FILE",
    "RESULTS_SCHEMA",
    "ResultsLog",
    "ResultsMismatchError",
    "SteeringEntry",
    "SteeringResults",
    "SteeringRunRecord",
    "config_key",
]

RESULTS_FILE = "results.jsonl"
RESULTS_SCHEMA = Schema(
    "trait_lab.steering_results", 1, remake="a new run folder (or delete results.jsonl)"
)


class ResultsMismatchError(ValueError):
    """A results log written for another configuration or judge than the one reopening it."""


@dataclass(frozen=True)
class SteeringEntry(Record):
    """One evaluated steering configuration: where, how hard, and what it did.

    ``coefficients[i]`` is the (signed) coefficient at ``layers[i]``; ``fraction`` (when the
    search set it) is the signed strength as a fraction of each layer's typical residual norm;
    ``delta`` is the trait score minus the unsteered baseline's, filled in by
    :meth:`ResultsLog.add`.

    Example:
        >>> SteeringEntry((9, 12), (2.0, 3.0), "residual", "probe", 55.0, 80.0, 8, True).key
        'residual/probe/L9@+2,L12@+3'
    """

    layers: tuple[int, ...]
    coefficients: tuple[float, ...]
    component: str
    method: str
    trait_mean: float
    coherence_mean: float
    n: int
    coherent: bool
    delta: float | None = None
    responses: str | None = None
    fraction: float | None = None

    def __post_init__(self) -> None:
        o = "SteeringEntry"
        layers = tuple(check_int(o, "layers", v) for v in _items(o, "layers", self.layers))
        coefs = tuple(
            check_float(o, "coefficients", v) for v in _items(o, "coefficients", self.coefficients)
        )
        if len(layers) != len(coefs) or not layers or len(set(layers)) != len(layers):
            raise invalid(
                o,
                "layers/coefficients",
                (self.layers, self.coefficients),
                "one coefficient per distinct layer, at least one layer",
                "Pass layers=(12,) with coefficients=(4.0,), or equal-length tuples.",
            )
        set_field(self, "layers", layers)
        set_field(self, "coefficients", coefs)
        for name in ("component", "method"):
            check_str(o, name, getattr(self, name))
        for name in ("trait_mean", "coherence_mean"):
            set_field(self, name, check_float(o, name, getattr(self, name), lo=0.0, hi=100.0))
        set_field(self, "n", check_int(o, "n", self.n, minimum=1))
        if not isinstance(self.coherent, bool):
            raise invalid(o, "coherent", self.coherent, "True or False", "Wrap it in bool(...).")
        for name in ("delta", "fraction"):
            if getattr(self, name) is not None:
                set_field(self, name, check_float(o, name, getattr(self, name)))
        check_str(o, "responses", self.responses, optional=True)

    @property
    def key(self) -> str:
        """Identifies the configuration (see :func:`config_key`)."""
        config = dict(zip(self.layers, self.coefficients, strict=True))
        return config_key(config, self.component, self.method)

    @classmethod
    def _decode(cls, data: dict[str, Any]) -> dict[str, Any]:
        return {
            **data,
            "layers": tuple(data["layers"]),
            "coefficients": tuple(data["coefficients"]),
        }


def config_key(config: Mapping[int, float], component: str, method: str) -> str:
    """The key of a steering configuration ``{layer: coefficient}`` in a results log.

    Example:
        >>> config_key({12: 3.0, 9: -1.5}, "residual", "probe")
        'residual/probe/L9@-1.5,L12@+3'
    """
    spots = ",".join(f"L{layer}@{config[layer]:+.10g}" for layer in sorted(config))
    return f"{component}/{method}/{spots}"


def _items(owner: str, name: str, value: Any) -> tuple[Any, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise invalid(owner, name, value, "a tuple of numbers", f"Pass e.g. {name}=(12,).")
    return tuple(value)


@dataclass(frozen=True)
class SteeringRunRecord(Record):
    """What a results log was made for: the run's inputs fingerprint and the judge's identity.

    Example:
        >>> SteeringRunRecord("demo", "optimism", "instruct", "ab" * 8, {"kind": "x"}).trait
        'optimism'
    """

    experiment: str
    trait: str
    variant: str
    fingerprint: str
    judge: dict[str, Any]
    created: str = ""

    def __post_init__(self) -> None:
        o = "SteeringRunRecord"
        for name in ("experiment", "trait", "variant", "fingerprint"):
            check_str(o, name, getattr(self, name))
        if not isinstance(self.judge, dict) or not self.judge:
            raise invalid(o, "judge", self.judge, "a non-empty dict", "Pass judge.identity.")
        if not self.created:
            set_field(self, "created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    def judge_hash(self) -> str:
        """16 hex digits identifying the judge (its identity dict, canonical JSON)."""
        text = json.dumps(self.judge, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SteeringResults(Record):
    """A whole log: the run, the unsteered baseline and every evaluated configuration.

    Example:
        >>> run = SteeringRunRecord("demo", "optimism", "instruct", "f" * 16, {"kind": "x"})
        >>> SteeringResults(run, JudgeResult(20.0, 90.0, 4), []).best() is None
        True
    """

    run: SteeringRunRecord
    baseline: JudgeResult | None
    entries: list[SteeringEntry]

    def best(self, direction: int = 1) -> SteeringEntry | None:
        """The coherent entry steered in ``direction`` that moves the trait most that way.

        ``direction`` +1: coefficients all positive (along the vector) and the trait score up;
        -1: all negative and the score down — a vector that only raises the trait when pushed
        against itself is not recommended. Ties go to the smaller total coefficient
        magnitude. ``None`` when no entry qualifies.
        """
        if direction not in (1, -1):
            raise ValueError(f"direction={direction!r} must be +1 or -1")
        usable = [
            e
            for e in self.entries
            if e.coherent
            and (e.delta or 0.0) * direction > 0
            and all(c * direction > 0 for c in e.coefficients)
        ]
        if not usable:
            return None
        return max(
            usable,
            key=lambda e: (direction * (e.delta or 0.0), -sum(abs(c) for c in e.coefficients)),
        )

    @classmethod
    def _decode(cls, data: dict[str, Any]) -> dict[str, Any]:
        base = data["baseline"]
        return {
            "run": SteeringRunRecord.from_dict(data["run"]),
            "baseline": None if base is None else JudgeResult.from_dict(base),
            "entries": [SteeringEntry.from_dict(e) for e in data["entries"]],
        }


class ResultsLog:
    """The append-only ``results.jsonl`` of one run; reopening it resumes where it stopped.

    Args:
        folder: the run's folder (created).
        run: what the log is for; an existing log with another fingerprint or judge raises
            :class:`ResultsMismatchError` (start a new folder, or delete the old log).
        writes: ``False`` keeps every addition in memory only: the other ranks of a
            ``torchrun`` job hold the same log as rank 0, which alone writes it.
    """

    def __init__(
        self, folder: str | os.PathLike[str], run: SteeringRunRecord, *, writes: bool = True
    ) -> None:
        self.folder = Path(folder)
        self.path = self.folder / RESULTS_FILE
        self.run = run
        self.writes = writes
        self.baseline: JudgeResult | None = None
        self.entries: dict[str, SteeringEntry] = {}
        rows = read_jsonl(self.path) if writes or self.path.exists() else []
        if not rows:
            self._append({"line": "header", "run": run.to_dict()}, header=True)
            return
        self._check_header(rows[0])
        for number, row in enumerate(rows[1:], start=2):
            self._load_row(row, number)

    @classmethod
    def open(cls, folder: str | os.PathLike[str]) -> ResultsLog:
        """Reopen an existing log as it was written (to read it: results, responses).

        Raises:
            FileNotFoundError: ``folder`` holds no results log.
        """
        path = Path(folder) / RESULTS_FILE
        rows = read_jsonl(path)
        if not rows:
            raise FileNotFoundError(f"no steering results at {path}; run the evaluation first")
        RESULTS_SCHEMA.check(rows[0], path)
        return cls(folder, SteeringRunRecord.from_dict(rows[0]["run"]))

    def _append(self, row: dict[str, Any], header: bool = False) -> None:
        if self.writes:
            append_jsonl(self.path, RESULTS_SCHEMA.stamp(row) if header else row)

    def _check_header(self, row: dict[str, Any]) -> None:
        RESULTS_SCHEMA.check(row, self.path)
        old = SteeringRunRecord.from_dict(row["run"])
        for what, mine, theirs in (
            ("inputs fingerprint", self.run.fingerprint, old.fingerprint),
            ("judge", self.run.judge_hash(), old.judge_hash()),
            ("trait", self.run.trait, old.trait),
        ):
            if mine != theirs:
                raise ResultsMismatchError(
                    f"{self.path} holds results for {what} {theirs!r}, this run has {mine!r}: "
                    f"results from different {what}s are never mixed. Use another folder for "
                    f"this run, or delete {self.path} to start over."
                )

    def _load_row(self, row: dict[str, Any], number: int) -> None:
        kind = row.get("line")
        if kind == "baseline":
            self.baseline = JudgeResult.from_dict(row["result"])
        elif kind == "entry":
            entry = SteeringEntry.from_dict(row["entry"])
            self.entries[entry.key] = entry
        else:
            raise ValueError(f"{self.path} line {number}: unknown line kind {kind!r}")

    def _responses_path(self, key: str) -> Path:
        """Where the answers behind ``key`` are saved: ``responses/<hash of key>.json``."""
        return self.folder / "responses" / (hashlib.sha256(key.encode()).hexdigest()[:16] + ".json")

    def _responses(self, key: str, responses: list[dict[str, Any]]) -> str:
        path = self._responses_path(key)
        if self.writes:
            atomic_write_json(path, {"key": key, "responses": responses})
        return f"responses/{path.name}"

    def add_baseline(self, result: JudgeResult, responses: list[dict[str, Any]]) -> None:
        """Record the unsteered baseline (once; a second call raises)."""
        if self.baseline is not None:
            raise ValueError(f"{self.path} already has a baseline; it is written once per run")
        path = self._responses("baseline", responses)
        self._append({"line": "baseline", "result": result.to_dict(), "responses": path})
        self.baseline = result

    def done(self, key: str) -> bool:
        """Whether the configuration with this :attr:`SteeringEntry.key` is already logged."""
        return key in self.entries

    def add(self, entry: SteeringEntry, responses: list[dict[str, Any]]) -> SteeringEntry:
        """Write the responses, then append the entry with its ``delta`` against the baseline."""
        if self.baseline is None:
            raise ValueError("add_baseline(...) first: every delta is measured against it")
        if self.done(entry.key):
            raise ValueError(f"{entry.key} is already in {self.path}; check done(key) first")
        delta = entry.trait_mean - self.baseline.trait_mean
        if not math.isfinite(delta):
            raise ValueError(f"trait_mean {entry.trait_mean!r} gives no finite delta")
        entry = SteeringEntry.from_dict(
            {**entry.to_dict(), "delta": delta, "responses": self._responses(entry.key, responses)}
        )
        self._append({"line": "entry", "entry": entry.to_dict()})
        self.entries[entry.key] = entry
        return entry

    def responses(self, key: str = "baseline") -> list[dict[str, Any]]:
        """The saved answers and per-answer scores behind an entry's key (or ``"baseline"``).

        Each item has ``question``, ``answer``, ``trait``, ``coherence`` and the offline
        coherence measures. Raises ``KeyError`` for a key the log does not hold.
        """
        if key == "baseline":
            if self.baseline is None:
                raise KeyError("this log has no baseline yet")
        elif key not in self.entries:
            raise KeyError(f"{key!r} is not in {self.path}; logged keys: {sorted(self.entries)}")
        path = self._responses_path(key)
        data = json.loads(path.read_text())
        if data.get("key") != key:
            raise ValueError(f"{path} holds {data.get('key')!r}")
        return list(data["responses"])

    def results(self) -> SteeringResults:
        """Everything logged so far, in order."""
        return SteeringResults(self.run, self.baseline, list(self.entries.values()))
