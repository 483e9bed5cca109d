"""Append-only JSON-lines logs: durable lines, a kill's cut-off line repaired, damage refused."""

from __future__ import annotations

import logging

import pytest

from trait_lab.core.jsonl import append_jsonl, read_jsonl


def test_round_trip_and_missing_file(tmp_path) -> None:
    log = tmp_path / "deep" / "log.jsonl"
    assert read_jsonl(log) == []
    append_jsonl(log, {"a": 1})
    append_jsonl(log, {"b": [1.5, None]})
    assert read_jsonl(log) == [{"a": 1}, {"b": [1.5, None]}]


@pytest.mark.parametrize("cut", [1, 5, 9])
def test_a_kill_mid_write_drops_only_the_cut_line(tmp_path, caplog, cut: int) -> None:
    log = tmp_path / "log.jsonl"
    append_jsonl(log, {"unit": 1})
    whole = log.read_bytes()
    log.write_bytes(whole + b'{"unit": 2}\n'[:cut])  # what a kill -9 during the write leaves
    with caplog.at_level(logging.WARNING, logger="trait_lab"):
        assert read_jsonl(log) == [{"unit": 1}]
    assert any("cut-off last line" in r.getMessage() for r in caplog.records)
    assert log.read_bytes() == whole  # repaired on disk, so the next append starts a line
    append_jsonl(log, {"unit": 2})
    assert read_jsonl(log) == [{"unit": 1}, {"unit": 2}]


def test_a_whole_line_missing_its_newline_is_completed(tmp_path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text('{"unit": 1}\n{"unit": 2}')
    assert read_jsonl(log) == [{"unit": 1}, {"unit": 2}]
    append_jsonl(log, {"unit": 3})
    assert read_jsonl(log) == [{"unit": 1}, {"unit": 2}, {"unit": 3}]


def test_damage_before_the_last_line_raises(tmp_path) -> None:
    log = tmp_path / "log.jsonl"
    log.write_text('{"unit": 1}\nnot json\n{"unit": 3}\n')
    with pytest.raises(ValueError, match=r"line 2 is not a JSON object.*Delete the file"):
        read_jsonl(log)
    log.write_text('[1, 2]\n{"unit": 3}\n')
    with pytest.raises(ValueError, match="line 1"):
        read_jsonl(log)


def test_nan_is_refused_before_anything_is_written(tmp_path) -> None:
    log = tmp_path / "log.jsonl"
    with pytest.raises(ValueError):
        append_jsonl(log, {"x": float("nan")})
    assert not log.exists()
