"""Trait folders and prompt sets: user text that is not UTF-8, names that are no trait, and
random or mutated files (property-based) give every problem or our own clear error.

``validate_trait`` promises (docs/traits.md) to return every problem of a folder without
raising; ``load_trait`` raises ``TraitFormatError`` listing them. Both are fed non-UTF-8 files,
random bytes and mutations of a valid folder; ``load_prompt_set`` is fed random file content.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from tests.faults.checks import clear_error, is_our_error
from trait_lab.prompts.prompt_sets import load_prompt_set
from trait_lab.traits.dataset import (
    TraitDataset,
    TraitFormatError,
    load_trait,
    trait_path,
    validate_trait,
)

FILES = ("trait.json", "pairs.jsonl", "steering.txt", "steering_report.txt")
STARTERS = "formality, humour, optimism, refusal, sycophancy"
FAST = settings(deadline=None, max_examples=100)


def copy_starter(root: Path, name: str = "mytrait") -> Path:
    """A writable copy of the starter trait ``refusal``."""
    return Path(shutil.copytree(trait_path("refusal"), root / name))


def put_bad_byte(file: Path, line: int, byte: bytes = b"\xe9") -> int:
    """Insert ``byte`` (Latin-1 'é') at the start of line ``line``; returns its byte offset."""
    lines = file.read_bytes().splitlines(keepends=True)
    offset = sum(len(x) for x in lines[: line - 1])
    lines[line - 1] = byte + lines[line - 1]
    file.write_bytes(b"".join(lines))
    return offset


# ------------------------------------------------------------------ 3. non-UTF-8 files


class TestNotUtf8:
    @pytest.mark.parametrize(
        ("name", "line"),
        [("pairs.jsonl", 3), ("steering.txt", 2), ("steering_report.txt", 1), ("trait.json", 1)],
    )
    def test_one_file(self, tmp_path: Path, name: str, line: int) -> None:
        folder = copy_starter(tmp_path)
        offset = put_bad_byte(folder / name, line)
        problems = validate_trait(folder)
        bad = [p for p in problems if "not UTF-8" in p.message]
        assert [(Path(p.file).name, p.line) for p in bad] == [(name, line)]
        assert f"byte 0xe9 at byte offset {offset}" in bad[0].message
        assert "save the file as UTF-8" in bad[0].message
        err = clear_error(TraitFormatError, load_trait, folder, mentions=[name, "UTF-8"])
        assert f"offset {offset}" in str(err)

    def test_every_file_reported_at_once(self, tmp_path: Path) -> None:
        folder = copy_starter(tmp_path)
        for name in FILES:
            put_bad_byte(folder / name, 2, b"\xff")
        problems = validate_trait(folder)
        bad = sorted(Path(p.file).name for p in problems if "not UTF-8" in p.message)
        assert bad == sorted(FILES)
        utf8 = [p for p in problems if "not UTF-8" in p.message]
        assert all(p.severity == "error" and p.line == 2 for p in utf8)

    def test_a_bad_byte_inside_a_string_keeps_the_other_lines_checked(self, tmp_path: Path) -> None:
        folder = copy_starter(tmp_path)
        rows = (folder / "pairs.jsonl").read_text().splitlines()
        rows[4] = rows[3]  # a duplicate pair on line 5, beside the bad byte on line 2
        (folder / "pairs.jsonl").write_text("\n".join(rows) + "\n")
        data = (folder / "pairs.jsonl").read_bytes().splitlines(keepends=True)
        data[1] = data[1].replace(b'"question": "', b'"question": "\xe9', 1)
        (folder / "pairs.jsonl").write_bytes(b"".join(data))
        where = {f"{Path(p.file).name}:{p.line}" for p in validate_trait(folder)}
        assert where == {"pairs.jsonl:2", "pairs.jsonl:5"}

    def test_prompt_set(self, tmp_path: Path) -> None:
        path = tmp_path / "prompts.txt"
        path.write_bytes(b"Say hello.\nCaf\xe9 au lait?\n")
        clear_error(
            ValueError,
            load_prompt_set,
            str(path),
            mentions=[str(path), "byte offset 14 (line 2)", "save the file as UTF-8"],
        )


class TestJsonLimits:
    """JSON that Python refuses with ValueError/RecursionError, not JSONDecodeError."""

    @pytest.mark.parametrize("text", ['{"id": ' + "1" * 5000 + "}", "[" * 100_000])
    @pytest.mark.parametrize("name", ["trait.json", "pairs.jsonl"])
    def test_reported_as_bad_json(self, tmp_path: Path, text: str, name: str) -> None:
        folder = copy_starter(tmp_path)
        (folder / name).write_text(text + "\n")
        bad = [p for p in validate_trait(folder) if Path(p.file).name == name]
        line = None if name == "trait.json" else 1  # a whole-file parse has no line to name
        assert [(p.line, p.message[:9]) for p in bad] == [(line, "bad JSON:")]


# ------------------------------------------------------------------ 4. names that are no trait


class TestNotATrait:
    @pytest.mark.parametrize("name", ["", "  "])
    def test_empty_name_never_reads_the_working_folder(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
    ) -> None:
        folder = copy_starter(tmp_path)
        monkeypatch.chdir(folder)  # a valid trait here: an empty name must still be refused
        clear_error(ValueError, load_trait, name, mentions=[repr(name), "empty", "optimism"])
        clear_error(ValueError, validate_trait, name, mentions=[repr(name), "empty"])

    @pytest.mark.parametrize("value", [None, 3, b"optimism"])
    def test_not_a_name(self, value: object) -> None:
        clear_error(TypeError, load_trait, value, mentions=[repr(value), STARTERS])

    def test_folder_without_trait_files(self, tmp_path: Path) -> None:
        (tmp_path / "notes.txt").write_text("hello")
        clear_error(
            ValueError,
            load_trait,
            tmp_path,
            mentions=[str(tmp_path), "not a trait folder", STARTERS, "trait.json"],
        )

    def test_file(self, tmp_path: Path) -> None:
        path = tmp_path / "pairs.jsonl"
        path.write_text("{}\n")
        clear_error(ValueError, load_trait, path, mentions=[str(path), "a file", STARTERS])

    def test_missing_path(self, tmp_path: Path) -> None:
        path = tmp_path / "no" / "such"
        clear_error(FileNotFoundError, load_trait, path, mentions=[str(path), STARTERS])

    def test_incomplete_trait_folder_still_lists_its_problems(self, tmp_path: Path) -> None:
        folder = copy_starter(tmp_path)
        (folder / "steering.txt").unlink()
        clear_error(TraitFormatError, load_trait, folder, mentions=["steering.txt: error"])


# ------------------------------------------------------------------ 8. property-based parsers


def check_folder(folder: Path) -> None:
    """The property: validate_trait returns problems, and load_trait agrees with them.

    Errors found: load_trait raises our error (TraitFormatError listing exactly those problems,
    or "not a trait folder" when no trait file is left). None: load_trait returns the dataset.
    """
    problems = validate_trait(folder)
    errors = [p for p in problems if p.severity == "error"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # few pairs, near-duplicates: warnings
        if not errors:
            assert isinstance(load_trait(folder), TraitDataset)
            return
        try:
            load_trait(folder)
        except Exception as exc:
            assert is_our_error(exc), f"not our error: {type(exc).__name__}: {exc}"
            if isinstance(exc, TraitFormatError):
                assert exc.problems == problems
            else:
                assert "not a trait folder" in str(exc)
            return
    raise AssertionError(f"load_trait accepted a folder with errors: {errors}")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=12,
)
KEYS = ["id", "question", "positive", "negative", "system", "definition", "kind", "notes"]
KEYS += ["recommended_position", "format_version", "summary"]


@st.composite
def json_objects(draw: st.DrawFn) -> str:
    """A JSON object (as text) over the keys the format knows, with random values."""
    keys = draw(st.lists(st.sampled_from(KEYS) | st.text(max_size=8), max_size=6))
    return json.dumps({k: draw(JSON) for k in keys})


@st.composite
def mutations(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few bytes replaced, inserted or deleted, or cut short."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(out)))
        op = draw(st.sampled_from(["replace", "insert", "delete", "cut"]))
        byte = draw(st.binary(min_size=1, max_size=3))
        if op == "replace":
            out[at : at + len(byte)] = byte
        elif op == "insert":
            out[at:at] = byte
        elif op == "delete":
            del out[at : at + 3]
        else:
            del out[at:]
    return bytes(out)


STARTER = trait_path("refusal")


@st.composite
def file_contents(draw: st.DrawFn, name: str) -> bytes:
    """Content for one trait file: random bytes or text, JSON objects, or a mutated valid file."""
    valid = (STARTER / name).read_bytes()
    lines = st.lists(json_objects() | st.text(max_size=40), max_size=5)
    return draw(
        st.binary(max_size=200)
        | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass"))
        | lines.map(lambda rows: "\n".join(rows).encode("utf-8", "surrogatepass"))
        | mutations(valid)
    )


@st.composite
def trait_folders(draw: st.DrawFn) -> dict[str, bytes | None]:
    """New content for 1–3 files of a valid trait (``None``: the file is removed)."""
    names = draw(st.lists(st.sampled_from(FILES), min_size=1, max_size=3, unique=True))
    return {n: draw(st.none() | file_contents(n)) for n in names}


class TestProperties:
    @FAST
    @given(changes=trait_folders())
    def test_trait_folders(self, changes: dict[str, bytes | None]) -> None:
        with tempfile.TemporaryDirectory() as root:
            folder = copy_starter(Path(root))
            for name, content in changes.items():
                if content is None:
                    (folder / name).unlink()
                else:
                    (folder / name).write_bytes(content)
            check_folder(folder)

    @FAST
    @given(meta=json_objects(), pairs=st.lists(json_objects(), max_size=4))
    def test_random_json_trait(self, meta: str, pairs: list[str]) -> None:
        with tempfile.TemporaryDirectory() as root:
            folder = copy_starter(Path(root))
            (folder / "trait.json").write_text(meta)
            with (folder / "pairs.jsonl").open("a") as fh:
                fh.write("".join(row + "\n" for row in pairs))
            check_folder(folder)

    @FAST
    @given(
        content=st.binary(max_size=300)
        | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass"))
    )
    def test_prompt_sets(self, content: bytes) -> None:
        with tempfile.TemporaryDirectory() as root:
            path = Path(root) / "set.txt"
            path.write_bytes(content)
            try:
                prompts = load_prompt_set(path)
            except Exception as exc:
                assert is_our_error(exc), f"not our error: {type(exc).__name__}: {exc}"
                return
            text = content.decode("utf-8")  # loaded, so it was UTF-8: the ground truth
            assert prompts == [s.strip() for s in text.splitlines() if s.strip()]
