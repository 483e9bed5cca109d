"""ResumableRun (trait_lab.core.runs): which units are done, warnings, and counts."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from trait_lab.core.atomic import atomic_write_json
from trait_lab.core.runs import ResumableRun


def read(path: Path) -> object:
    return json.loads(path.read_text())


def test_pending_skips_outputs_that_load_and_counts(tmp_path: Path) -> None:
    paths = [tmp_path / f"{i}.json" for i in range(4)]
    for i in (0, 2):
        atomic_write_json(paths[i], [i])
    run = ResumableRun("demo")
    todo = run.pending(range(4), lambda i: run.done(paths[i], read))
    assert todo == [1, 3] and (run.skipped, run.computed) == (2, 0)
    for i in todo:
        assert run.save(paths[i], lambda path, i=i: atomic_write_json(path, [i])) == paths[i]
    assert (run.skipped, run.computed) == (2, 2)
    again = ResumableRun("demo")
    assert again.pending(range(4), lambda i: again.done(paths[i], read)) == []
    assert again.skipped == 4


def test_a_damaged_output_is_recomputed_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "0.json"
    path.write_text('{"cut short')
    run = ResumableRun("demo run")
    with caplog.at_level(logging.WARNING, logger="trait_lab.core.runs"):
        assert run.pending([0], lambda i: run.done(path, read)) == [0]
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert message.startswith("demo run: recomputing") and str(path) in message
    assert "Unterminated string" in message  # the loader's own reason
    assert run.skipped == 0


def test_a_missing_output_is_pending_without_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = ResumableRun("demo")
    with caplog.at_level(logging.WARNING, logger="trait_lab.core.runs"):
        assert run.load(tmp_path / "nope.json", read) is None
    assert caplog.records == []


def test_only_the_declared_errors_mean_unusable(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text("x")

    def broken(p: Path) -> object:
        raise KeyError("a bug, not a damaged file")

    with pytest.raises(KeyError):
        ResumableRun("demo").load(path, broken)
    run = ResumableRun("demo", errors=(KeyError,))
    assert run.load(path, broken) is None


def test_load_returns_what_the_loader_read(tmp_path: Path) -> None:
    path = atomic_write_json(tmp_path / "a.json", {"n": 1})
    assert ResumableRun("demo").load(path, read) == {"n": 1}


def test_a_failing_saver_counts_nothing(tmp_path: Path) -> None:
    run = ResumableRun("demo")

    def fails(path: Path) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        run.save(tmp_path / "a.json", fails)
    assert run.computed == 0
