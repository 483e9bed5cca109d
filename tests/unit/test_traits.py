"""Trait datasets: the folder format, validation (every problem, with file and line), loading."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from trait_lab.traits.dataset import (
    Problem,
    TraitFormatError,
    list_traits,
    load_trait,
    trait_path,
    validate_trait,
)

STARTERS = ["formality", "humour", "optimism", "refusal", "sycophancy"]
META = {
    "definition": {"positive": "Cheerful.", "negative": "Gloomy."},
    "kind": "prefix",
}


def pair(i: int, **fields: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": f"p{i}",
        "question": f"Question number {i}?",
        "positive": f"Great news {i}!",
        "negative": f"Bad news {i}.",
    }
    row.update(fields)
    return {k: v for k, v in row.items() if v is not None}


def write_trait(
    root: Path,
    meta: dict[str, object] | str | None = None,
    pairs: list[dict[str, object] | str] | None = None,
    steering: str | None = "What lies ahead?\nHow was your day?\n",
    name: str = "mytrait",
) -> Path:
    """A trait folder; ``None`` leaves a file out, strings are written verbatim."""
    folder = root / name
    folder.mkdir()
    meta = META if meta is None else meta
    if meta != "":
        text = meta if isinstance(meta, str) else json.dumps(meta, indent=2)
        (folder / "trait.json").write_text(text)
    rows = [pair(i) for i in range(25)] if pairs is None else pairs
    lines = [r if isinstance(r, str) else json.dumps(r) for r in rows]
    (folder / "pairs.jsonl").write_text("".join(line + "\n" for line in lines))
    if steering is not None:
        (folder / "steering.txt").write_text(steering)
    return folder


def found(problems: list[Problem], file: str, line: int | None, text: str) -> Problem:
    """The one problem in ``file`` at ``line`` whose message contains ``text``."""
    hits = [
        p for p in problems if Path(p.file).name == file and p.line == line and text in p.message
    ]
    assert len(hits) == 1, f"expected {file}:{line} {text!r} once in:\n" + "\n".join(
        map(str, problems)
    )
    return hits[0]


class TestStarterTraits:
    def test_listed(self) -> None:
        assert list_traits() == STARTERS

    @pytest.mark.parametrize("name", STARTERS)
    def test_clean_and_big_enough(self, name: str) -> None:
        assert validate_trait(trait_path(name)) == []
        ds = load_trait(name)
        assert ds.name == name
        assert len(ds.pairs) >= 60 and len(ds.steering_questions) >= 20
        assert len({p.question for p in ds.pairs}) == len(ds.pairs)
        assert ds.definition.positive and ds.definition.negative

    def test_unknown_name_lists_builtins(self) -> None:
        with pytest.raises(FileNotFoundError, match="built-in traits: formality, humour"):
            load_trait("no_such_trait")


class TestDataset:
    def test_load_by_path_and_fields(self, tmp_path: Path) -> None:
        folder = write_trait(tmp_path)
        ds = load_trait(folder)
        assert (ds.name, ds.kind, ds.recommended_position) == ("mytrait", "prefix", "response[:]")
        assert ds.pairs[3].id == "p3" and ds.pairs[3].system is None
        assert ds.steering_questions == ("What lies ahead?", "How was your day?")
        assert load_trait(str(folder)).pairs == ds.pairs

    def test_split_is_deterministic_disjoint_and_order_free(self, tmp_path: Path) -> None:
        rows: list[dict[str, object] | str] = [pair(i) for i in range(30)]
        ds = load_trait(write_trait(tmp_path, pairs=rows))
        train, val = ds.split(0.2, seed=0)
        assert (len(train), len(val)) == (24, 6)
        assert {p.id for p in train} | {p.id for p in val} == {p.id for p in ds.pairs}
        assert not {p.id for p in train} & {p.id for p in val}
        assert ds.split(0.2, seed=0) == (train, val)
        assert {p.id for p in ds.split(0.2, seed=1)[1]} != {p.id for p in val}
        random.Random(3).shuffle(rows)
        shuffled = load_trait(write_trait(tmp_path, pairs=rows, name="shuffled"))
        assert {p.id for p in shuffled.split(0.2, seed=0)[1]} == {p.id for p in val}

    def test_split_edges(self, tmp_path: Path) -> None:
        ds = load_trait("refusal")
        assert ds.split(0.0)[1] == [] and len(ds.split(0.0)[0]) == len(ds.pairs)
        assert len(ds.split(0.001)[1]) == 1  # never an empty validation set when asked for one
        with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\), got 1.0"):
            ds.split(1.0)

    def test_prompts_and_responses_per_kind(self, tmp_path: Path) -> None:
        rows: list[dict[str, object] | str] = [pair(i, system="Be brief.") for i in range(25)]
        prefix = load_trait(write_trait(tmp_path, pairs=rows))
        assert prefix.prompts("positive")[0] == prefix.prompts("negative")[0]
        assert prefix.prompts("positive")[0][0] == {"role": "system", "content": "Be brief."}
        assert prefix.responses("negative", prefix.pairs[:2]) == ["Bad news 0.", "Bad news 1."]
        meta = {**META, "kind": "system_prompt"}
        sysp = load_trait(write_trait(tmp_path, meta=meta, name="sys"))
        assert sysp.recommended_position == "prompt[-1]"
        assert sysp.prompts("positive")[1] == [
            {"role": "system", "content": "Great news 1!"},
            {"role": "user", "content": "Question number 1?"},
        ]
        assert sysp.responses("positive") is None
        with pytest.raises(ValueError, match="pole must be 'positive' or 'negative'"):
            sysp.prompts("pos")  # type: ignore[arg-type]


class TestValidation:
    def test_missing_folder_and_files(self, tmp_path: Path) -> None:
        assert "does not exist" in validate_trait(tmp_path / "nope")[0].message
        (tmp_path / "empty").mkdir()
        problems = validate_trait(tmp_path / "empty")
        found(problems, "trait.json", None, "missing file")
        found(problems, "pairs.jsonl", None, "missing file")
        found(problems, "steering.txt", None, "missing file; every trait needs steering.txt")

    def test_empty_files(self, tmp_path: Path) -> None:
        folder = write_trait(tmp_path, meta="", pairs=[], steering="\n\n")
        (folder / "trait.json").write_text("  \n")
        problems = validate_trait(folder)
        found(problems, "trait.json", None, "empty file")
        found(problems, "pairs.jsonl", None, "empty file")
        found(problems, "steering.txt", None, "empty file")

    def test_every_pair_problem_with_its_line(self, tmp_path: Path) -> None:
        rows: list[dict[str, object] | str] = [pair(i) for i in range(22)]
        rows += [
            pair(22, negative=None),  # line 23: unbalanced
            pair(23, question="  "),  # line 24: empty question
            '{"id": "p24", "question": "Q?", "positive": "a"',  # line 25: bad JSON
            pair(25, postive="typo"),  # line 26: unknown key
            dict(pair(3)),  # line 27: exact duplicate of line 4 (and a duplicate id)
            pair(27, question="Question number 5?", positive="Great news 5!"),  # line 28: near
            pair(28, negative="great NEWS 28!"),  # line 29: no contrast
            "",  # line 30: blank
            "[1, 2]",  # line 31: not an object
            pair(29, id=None),  # line 32: no id
            pair(30, positive=7),  # line 33: not a string
            pair(31, positive=None, negative=None),  # line 34: no poles at all
        ]
        problems = validate_trait(write_trait(tmp_path, pairs=rows))
        found(problems, "pairs.jsonl", 23, "unbalanced pair: 'positive' without 'negative'")
        found(problems, "pairs.jsonl", 24, "empty string in 'question'")
        found(problems, "pairs.jsonl", 25, "bad JSON: Expecting ',' delimiter at column")
        p = found(problems, "pairs.jsonl", 26, "unknown key 'postive' (did you mean 'positive'?)")
        assert str(p).endswith("pairs.jsonl:26: error: " + p.message)
        found(problems, "pairs.jsonl", 27, "duplicate id 'p3' (first used on line 4)")
        found(problems, "pairs.jsonl", 27, "duplicate pair: same question and poles as line 4")
        near = found(problems, "pairs.jsonl", 28, "near-duplicate: same question and positive")
        assert near.severity == "warning" and "line 6" in near.message
        found(problems, "pairs.jsonl", 29, "same text: no contrast")
        assert found(problems, "pairs.jsonl", 30, "blank line").severity == "warning"
        found(problems, "pairs.jsonl", 31, "must be a JSON object, got list")
        found(problems, "pairs.jsonl", 32, "missing key 'id'")
        found(problems, "pairs.jsonl", 33, "'positive' must be a string, got int")
        found(problems, "pairs.jsonl", 34, "missing keys 'positive' and 'negative'")
        assert len([p for p in problems if p.severity == "error"]) == 11

    def test_too_few_pairs_is_a_warning(self, tmp_path: Path) -> None:
        rows: list[dict[str, object] | str] = [pair(i) for i in range(5)]
        folder = write_trait(tmp_path, pairs=rows)
        (warning,) = validate_trait(folder)
        assert warning.severity == "warning" and "only 5 valid pairs" in warning.message
        with pytest.warns(UserWarning, match="only 5 valid pairs"):
            assert len(load_trait(folder).pairs) == 5

    def test_steering_leakage_and_duplicates(self, tmp_path: Path) -> None:
        steering = "Fresh question?\n\nquestion   NUMBER 7?\nFresh question?\n"
        problems = validate_trait(write_trait(tmp_path, steering=steering))
        found(problems, "steering.txt", 3, "also appears in pairs.jsonl (line 8)")
        found(problems, "steering.txt", 4, "duplicate steering question (line 1)")

    def test_metadata_problems_with_lines(self, tmp_path: Path) -> None:
        meta = {
            "format_version": 2,
            "definition": {"positive": "", "negative": "x", "sumary": "y"},
            "kind": "prefx",
            "recommended_position": "prompt[-1]",
            "colour": "blue",
        }
        problems = validate_trait(write_trait(tmp_path, meta=meta))
        found(problems, "trait.json", 2, "format_version 2 unknown")
        found(problems, "trait.json", 4, "empty string in 'positive'")
        found(problems, "trait.json", 3, "unknown key 'sumary' (did you mean 'summary'?)")
        found(problems, "trait.json", 8, "'kind' is 'prefx' (did you mean 'prefix'?)")
        found(problems, "trait.json", None, "unknown key 'colour'")

    def test_prefix_needs_a_response_position(self, tmp_path: Path) -> None:
        meta = {**META, "recommended_position": "prompt[-1]"}
        problems = validate_trait(write_trait(tmp_path, meta=meta))
        found(problems, "trait.json", 7, "cannot see a 'prefix' pair's poles")
        meta = {**META, "recommended_position": "respons[:]"}
        found(validate_trait(write_trait(tmp_path, meta=meta, name="b")), "trait.json", 7, "bad")

    def test_bad_json_metadata(self, tmp_path: Path) -> None:
        folder = write_trait(tmp_path, meta='{\n  "kind": "prefix",\n}\n')
        found(validate_trait(folder), "trait.json", 3, "bad JSON")

    def test_system_key_only_for_prefix(self, tmp_path: Path) -> None:
        meta = {**META, "kind": "system_prompt"}
        rows: list[dict[str, object] | str] = [pair(i, system="S") for i in range(25)]
        problems = validate_trait(write_trait(tmp_path, meta=meta, pairs=rows))
        assert len(problems) == 25
        found(problems, "pairs.jsonl", 1, "'system' is not used by kind 'system_prompt'")

    def test_load_lists_every_problem(self, tmp_path: Path) -> None:
        rows: list[dict[str, object] | str] = [pair(i) for i in range(25)]
        rows[2] = "{oops"
        rows[9] = pair(9, negative="")
        folder = write_trait(tmp_path, pairs=rows, steering="Question number 4?\n")
        with pytest.raises(TraitFormatError) as info:
            load_trait(folder)
        assert len(info.value.problems) == 3
        text = str(info.value)
        assert "has 3 error(s)" in text and "docs/traits.md" in text
        for where in ("pairs.jsonl:3:", "pairs.jsonl:10:", "steering.txt:1:"):
            assert where in text
