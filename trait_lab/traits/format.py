"""The on-disk trait format: constants, records, and reading a folder with every problem found.

``trait_lab.traits.dataset`` builds datasets on top of this; see ``docs/traits.md`` for the format.

Example:
    >>> from trait_lab.traits.dataset import trait_path
    >>> data, problems = read_trait_folder(trait_path("refusal"))
    >>> data["kind"], problems
    ('prefix', [])
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from trait_lab.prompts.positions import Position
from trait_lab.prompts.prompt_sets import read_utf8

KINDS: tuple[str, ...] = ("system_prompt", "prefix")
POLES: tuple[str, ...] = ("positive", "negative")
DEFAULT_POSITIONS: dict[str, str] = {"system_prompt": "prompt[-1]", "prefix": "response[:]"}
META_FILE = "trait.json"
PAIRS_FILE = "pairs.jsonl"
STEERING_FILE = "steering.txt"
REPORT_FILE = "steering_report.txt"  # optional: the held-out report questions of evaluation
FORMAT_VERSION = 1
MIN_PAIRS = 20  # fewer valid pairs than this is a warning

_META_KEYS = ("format_version", "definition", "kind", "recommended_position", "notes")
_DEFINITION_KEYS = ("summary", "positive", "negative")
_PAIR_KEYS = ("id", "question", "positive", "negative", "system")

Pole = Literal["positive", "negative"]
Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One problem in a trait folder: the file, the 1-based line (None: the whole file), what.

    Example:
        >>> str(Problem("pairs.jsonl", 3, "empty string in 'negative'"))
        "pairs.jsonl:3: error: empty string in 'negative'"
    """

    file: str
    line: int | None
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.severity}: {self.message}"


@dataclass(frozen=True)
class TraitDefinition:
    """What the positive and the negative pole of a trait are, plus an optional summary."""

    positive: str
    negative: str
    summary: str = ""


@dataclass(frozen=True)
class TraitPair:
    """One contrastive pair. For ``system_prompt`` traits ``positive``/``negative`` are system
    prompts; for ``prefix`` traits they are reply beginnings, after the optional ``system``."""

    id: str
    question: str
    positive: str
    negative: str
    system: str | None = None


class _Reader:
    """Collects every problem found while reading one folder's files."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, file: Path, line: int | None, msg: str, severity: Severity = "error") -> None:
        self.problems.append(Problem(str(file), line, msg, severity))

    def keys(self, file: Path, line: int | None, obj: dict, allowed: Sequence[str]) -> None:
        for key in obj:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                self.add(file, line, f"unknown key {key!r}{hint}; allowed: {', '.join(allowed)}")

    def text(self, file: Path, line: int | None, obj: dict, key: str) -> str | None:
        """A required non-empty string, or None after reporting why not."""
        value = obj.get(key)
        if key not in obj:
            self.add(file, line, f"missing key {key!r}")
        elif not isinstance(value, str):
            self.add(file, line, f"{key!r} must be a string, got {type(value).__name__}")
        elif not value.strip():
            self.add(file, line, f"empty string in {key!r}")
        else:
            return value
        return None

    def read(self, file: Path) -> str:
        """The text of ``file``; bytes that are not UTF-8 are reported and read as U+FFFD."""
        text, bad = read_utf8(file)
        if bad is not None:
            self.add(file, *bad)
        return text

    def jsonl(self, file: Path) -> list[tuple[int, dict]]:
        rows = []
        lines = self.read(file).splitlines()
        if not any(raw.strip() for raw in lines):
            self.add(file, None, "empty file")
        for number, raw in enumerate(lines, start=1):
            if not raw.strip():
                self.add(file, number, "blank line; remove it", "warning")
                continue
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as exc:
                self.add(file, number, f"bad JSON: {exc.msg} at column {exc.colno}")
                continue
            except (ValueError, RecursionError) as exc:  # a number too long, nesting too deep
                self.add(file, number, f"bad JSON: {exc}")
                continue
            if isinstance(obj, dict):
                rows.append((number, obj))
            else:
                self.add(file, number, f"a line must be a JSON object, got {type(obj).__name__}")
        return rows


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def read_trait_folder(folder: Path) -> tuple[dict[str, Any], list[Problem]]:
    rd = _Reader()
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        rd.add(folder, None, f"trait folder {what}; a trait is a folder with {META_FILE}, ...")
        return {}, rd.problems
    meta = _read_meta(rd, folder / META_FILE)
    pairs, questions = _read_pairs(rd, folder / PAIRS_FILE, meta.get("kind"))
    steering = _read_steering(rd, folder, questions)
    taken = {**questions, **{_norm(q): 0 for q in steering}}
    report = _read_questions(rd, folder / REPORT_FILE, taken, "report")
    data = {"name": folder.resolve().name, "pairs": tuple(pairs), **meta}
    problems = sorted(rd.problems, key=lambda p: (p.file, p.line or 0))  # stable: file order
    found = {"steering_questions": tuple(steering), "report_questions": tuple(report)}
    return {**data, **found}, problems


def _read_meta(rd: _Reader, file: Path) -> dict[str, Any]:
    if not file.is_file():
        rd.add(file, None, f"missing file; every trait needs {META_FILE} (see docs/traits.md)")
        return {}
    text = rd.read(file)
    try:
        obj = json.loads(text) if text.strip() else None
    except json.JSONDecodeError as exc:
        rd.add(file, exc.lineno, f"bad JSON: {exc.msg} at column {exc.colno}")
        return {}
    except (ValueError, RecursionError) as exc:  # a number too long, nesting too deep
        rd.add(file, None, f"bad JSON: {exc}")
        return {}
    if not isinstance(obj, dict):
        got = "empty file" if obj is None else f"got {type(obj).__name__}"
        rd.add(file, None if obj is None else 1, f"{META_FILE} must hold a JSON object; {got}")
        return {}

    def line(key: str) -> int | None:
        return next((i for i, s in enumerate(text.splitlines(), 1) if f'"{key}"' in s), None)

    out: dict[str, Any] = {"notes": obj.get("notes", "")}
    rd.keys(file, None, obj, _META_KEYS)
    if obj.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        got = obj["format_version"]
        rd.add(file, line("format_version"), f"format_version {got!r} unknown; use 1")
    definition = obj.get("definition")
    if isinstance(definition, dict):
        rd.keys(file, line("definition"), definition, _DEFINITION_KEYS)
        poles = [rd.text(file, line(k) or line("definition"), definition, k) for k in POLES]
        summary = definition.get("summary", "")
        if not isinstance(summary, str):
            rd.add(file, line("summary"), "'summary' must be a string")
        elif poles[0] is not None and poles[1] is not None:
            out["definition"] = TraitDefinition(poles[0], poles[1], summary)
    else:
        got = "missing" if definition is None else f"a {type(definition).__name__}"
        rd.add(file, line("definition"), f"'definition' must be an object, got {got}")
    kind = out["kind"] = obj.get("kind")
    if kind not in KINDS:
        close = difflib.get_close_matches(str(kind), KINDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        got = "missing" if kind is None else f"{kind!r}"
        rd.add(file, line("kind"), f"'kind' is {got}{hint}; choose one of {', '.join(KINDS)}")
    position = obj.get("recommended_position", DEFAULT_POSITIONS.get(str(kind), "prompt[-1]"))
    at = line("recommended_position")
    try:
        out["recommended_position"] = str(Position.parse(position))
    except (TypeError, ValueError) as exc:
        rd.add(file, at, f"bad recommended_position: {exc}")
    else:
        if kind == "prefix" and Position.parse(position).frame not in ("response", "all"):
            msg = f"recommended_position {position!r} cannot see a 'prefix' pair's poles"
            rd.add(file, at, msg + ", which are in the response; use 'response[:]'")
    if not isinstance(out["notes"], str):
        rd.add(file, line("notes"), "'notes' must be a string")
    return out


def _pair_id(rd: _Reader, file: Path, number: int, obj: dict, ids: dict[str, int]) -> str | None:
    pid = obj.get("id")
    if "id" not in obj:
        rd.add(file, number, "missing key 'id'; every pair needs a unique id")
        return None
    if isinstance(pid, int) and not isinstance(pid, bool):
        pid = str(pid)
    if not isinstance(pid, str) or not pid.strip():
        rd.add(file, number, f"'id' must be a non-empty string or int, got {pid!r}")
        return None
    if pid in ids:
        rd.add(file, number, f"duplicate id {pid!r} (first used on line {ids[pid]})")
    ids.setdefault(pid, number)
    return pid


def _read_pairs(rd: _Reader, file: Path, kind: Any) -> tuple[list[TraitPair], dict[str, int]]:
    """The valid pairs, and every pair question (normalised) with its first line."""
    if not file.is_file():
        rd.add(file, None, f"missing file; every trait needs {PAIRS_FILE}, one pair a line")
        return [], {}
    pairs: list[TraitPair] = []
    questions: dict[str, int] = {}
    ids: dict[str, int] = {}
    seen: dict[tuple[str, ...], int] = {}
    for number, obj in rd.jsonl(file):
        rd.keys(file, number, obj, _PAIR_KEYS)
        pid = _pair_id(rd, file, number, obj, ids)
        have = [k for k in ("positive", "negative") if k in obj]
        if len(have) == 1:
            lack = "negative" if have == ["positive"] else "positive"
            rd.add(file, number, f"unbalanced pair: {have[0]!r} without {lack!r}; add it")
        elif not have:
            rd.add(file, number, "missing keys 'positive' and 'negative'")
        question = rd.text(file, number, obj, "question")
        pos, neg = (rd.text(file, number, obj, k) if k in obj else None for k in POLES)
        system = None
        if "system" in obj and kind == "system_prompt":
            msg = "'system' is not used by kind 'system_prompt' (the poles are the system "
            rd.add(file, number, msg + "prompts); fold it into the poles or use kind 'prefix'")
        elif "system" in obj:
            system = rd.text(file, number, obj, "system")
        if question is not None:
            questions.setdefault(_norm(question), number)
        if question is None or pos is None or neg is None or pid is None:
            continue
        if _norm(pos) == _norm(neg):
            rd.add(file, number, "'positive' and 'negative' are the same text: no contrast")
            continue
        if (question, pos, neg) in seen:
            first = seen[(question, pos, neg)]
            rd.add(file, number, f"duplicate pair: same question and poles as line {first}")
            continue
        seen[(question, pos, neg)] = number
        for pole, text in (("positive", pos), ("negative", neg)):
            key = (pole, _norm(question), _norm(text))
            if key in seen:
                msg = f"near-duplicate: same question and {pole} text as line {seen[key]}"
                rd.add(file, number, msg, "warning")
            seen.setdefault(key, number)
        pairs.append(TraitPair(pid, question, pos, neg, system))
    if 0 < len(pairs) < MIN_PAIRS:
        msg = f"only {len(pairs)} valid pairs; vectors from fewer than {MIN_PAIRS} are noisy"
        rd.add(file, None, msg + ", add more varied pairs", "warning")
    return pairs, questions


def _read_steering(rd: _Reader, folder: Path, questions: dict[str, int]) -> list[str]:
    file = folder / STEERING_FILE
    if not file.is_file():
        msg = f"missing file; every trait needs {STEERING_FILE} (held-out questions for "
        rd.add(file, None, msg + "steering, one a line)")
        return []
    return _read_questions(rd, file, questions, "steering")


def _read_questions(rd: _Reader, file: Path, taken: dict[str, int], label: str) -> list[str]:
    """One question a line; none may repeat a question of ``taken`` (line 0: steering.txt)."""
    if not file.is_file():
        return []  # only the optional report file gets here
    lines = rd.read(file).splitlines()
    rows = [(i, s.strip()) for i, s in enumerate(lines, 1) if s.strip()]
    if not rows:
        rd.add(file, None, "empty file")
    seen: dict[str, int] = {}
    out: list[str] = []
    for number, text in rows:
        key = _norm(text)
        if key in taken:
            where = STEERING_FILE if taken[key] == 0 else f"{PAIRS_FILE} (line {taken[key]})"
            msg = f"{label} question also appears in {where}: it must be held out from "
            what = "extraction" if taken[key] else "the coefficient search"
            rd.add(file, number, msg + f"{what}; reword or drop one")
        if key in seen:
            rd.add(file, number, f"duplicate {label} question (line {seen[key]})", "warning")
            continue
        seen[key] = number
        out.append(text)
    return out
