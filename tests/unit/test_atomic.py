"""trait_lab.core.atomic: a failed write leaves the old file intact and no temporary file behind."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from trait_lab.core.atomic import TEMP_GLOB, atomic_write, atomic_write_json, atomic_write_text


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


class TestAtomicWrite:
    def test_writes_creates_parents_and_returns_path(self, tmp_path: Path) -> None:
        target = tmp_path / "a" / "b" / "data.bin"
        assert atomic_write(str(target), lambda tmp: tmp.write_bytes(b"abc")) == target
        assert target.read_bytes() == b"abc"
        assert names(target.parent) == ["data.bin"]

    def test_tmp_is_new_hidden_and_beside_target(self, tmp_path: Path) -> None:
        seen: list[Path] = []

        def write(tmp: Path) -> None:
            seen.append(tmp)
            assert not tmp.exists()  # the writer creates it (open(tmp, "xb") works)
            with open(tmp, "xb") as fh:
                fh.write(b"x")

        atomic_write(tmp_path / "f.bin", write)
        (tmp,) = seen
        assert tmp.parent == tmp_path and tmp.match(TEMP_GLOB) and tmp.name.startswith(".f.bin.")

    def test_replaces_an_existing_file(self, tmp_path: Path) -> None:
        target = atomic_write_text(tmp_path / "t.txt", "old")
        atomic_write_text(target, "new")
        assert target.read_text() == "new" and names(tmp_path) == ["t.txt"]

    def test_failing_writer_keeps_old_file_and_leaves_no_tmp(self, tmp_path: Path) -> None:
        target = atomic_write_text(tmp_path / "t.txt", "old")

        def half_write(tmp: Path) -> None:
            tmp.write_bytes(b"partial")
            raise OSError("disk full")

        with pytest.raises(OSError, match="disk full"):
            atomic_write(target, half_write)
        assert target.read_text() == "old"
        assert names(tmp_path) == ["t.txt"]

    def test_interrupt_is_cleaned_up_and_propagates(self, tmp_path: Path) -> None:
        def interrupted(tmp: Path) -> None:
            tmp.write_bytes(b"partial")
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            atomic_write(tmp_path / "k.bin", interrupted)
        assert names(tmp_path) == []

    @pytest.mark.parametrize("fail_in", ["fsync", "replace"])
    def test_failing_fsync_or_rename_keeps_old_file(
        self, fail_in: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        target = atomic_write_text(tmp_path / "t.txt", "old")

        def boom(*args: Any, **kwargs: Any) -> None:
            raise OSError(f"simulated failure in {fail_in}")

        monkeypatch.setattr(os, fail_in, boom)
        with pytest.raises(OSError, match="simulated"):
            atomic_write_text(target, "new")
        monkeypatch.undo()
        assert target.read_text() == "old"
        assert names(tmp_path) == ["t.txt"]

    def test_folder_fsync_failure_is_not_fatal(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real_fsync, calls = os.fsync, []

        def file_only(fd: int) -> None:
            calls.append(fd)
            if len(calls) > 1:  # the second fsync is the folder's, after the rename
                raise OSError("folders cannot be fsynced here")
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", file_only)
        assert atomic_write_text(tmp_path / "t.txt", "new").read_text() == "new"
        assert len(calls) == 2

    def test_folder_another_process_creates_meanwhile_is_no_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Two ranks write into the same new folder: the other one creates it right after this
        # process looked. (A check in two steps, "is it a folder?" then "does something exist
        # there?", took the fresh folder for a file and failed a 2-process extraction in CI.)
        target = tmp_path / "vectors" / "residual" / "probe" / "layer_3.pt"
        real_stat = Path.stat

        def racing_stat(self: Path, *args: Any, **kwargs: Any) -> os.stat_result:
            if self == target.parent and not os.path.exists(self):
                os.makedirs(self)  # the other rank, between this rank's check and its mkdir
                raise FileNotFoundError(self)
            return real_stat(self, *args, **kwargs)

        monkeypatch.setattr(Path, "stat", racing_stat)
        atomic_write(target, lambda tmp: tmp.write_bytes(b"v"))
        assert target.read_bytes() == b"v"

    def test_parent_that_is_a_file_is_refused_by_name(self, tmp_path: Path) -> None:
        (tmp_path / "vectors").write_text("not a folder")
        with pytest.raises(NotADirectoryError, match="vectors' is a file, not a folder"):
            atomic_write(tmp_path / "vectors" / "a" / "v.pt", lambda tmp: tmp.write_bytes(b"v"))


class TestAtomicWriteJson:
    def test_round_trip_with_newline(self, tmp_path: Path) -> None:
        path = atomic_write_json(tmp_path / "a.json", {"n": [1, 2]}, indent=None)
        assert path.read_text() == '{"n": [1, 2]}\n'
        assert json.loads(path.read_text()) == {"n": [1, 2]}

    @pytest.mark.parametrize("bad", [float("nan"), float("inf"), {1, 2}])
    def test_unserialisable_keeps_old_file(self, tmp_path: Path, bad: Any) -> None:
        target = atomic_write_json(tmp_path / "a.json", {"ok": True})
        with pytest.raises((ValueError, TypeError)):
            atomic_write_json(target, {"bad": bad})
        assert json.loads(target.read_text()) == {"ok": True}
        assert names(tmp_path) == ["a.json"]
