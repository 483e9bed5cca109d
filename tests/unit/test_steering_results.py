"""Steering results: round trips, resume after a kill at any point, refusal to mix runs."""

from __future__ import annotations

import json

import pytest

from trait_lab.core.types import JudgeResult
from trait_lab.evaluation.results import (
    RESULTS_FILE,
    ResultsLog,
    ResultsMismatchError,
    SteeringEntry,
    SteeringResults,
    SteeringRunRecord,
)

RUN = SteeringRunRecord("demo", "optimism", "instruct", "f" * 16, {"kind": "local", "m": 1})
BASE = JudgeResult(30.0, 90.0, 4, 5.0, 2.0)
ENTRIES = [
    SteeringEntry((12,), (2.0,), "residual", "probe", 45.0, 88.0, 4, True),
    SteeringEntry((12,), (4.0,), "residual", "probe", 70.0, 75.0, 4, True),
    SteeringEntry((12,), (8.0,), "residual", "probe", 90.0, 30.0, 4, False),
    SteeringEntry((9, 12), (-2.0, -2.0), "residual", "probe", 10.0, 80.0, 4, True),
]


def _responses(entry: SteeringEntry) -> list[dict]:
    return [{"question": "q", "answer": f"answer at {entry.key}", "trait": entry.trait_mean}]


def _run_all(folder, stop_after: int | None = None) -> ResultsLog:
    log = ResultsLog(folder, RUN)
    if log.baseline is None:
        log.add_baseline(BASE, [{"question": "q", "answer": "plain"}])
    for i, entry in enumerate(ENTRIES):
        if stop_after is not None and i == stop_after:
            break
        if not log.done(entry.key):
            log.add(entry, _responses(entry))
    return log


def _content(folder) -> list[dict]:
    rows = [json.loads(line) for line in (folder / RESULTS_FILE).read_text().splitlines()]
    rows[0]["run"].pop("created")
    return rows


def test_round_trips_and_best() -> None:
    for entry in ENTRIES:
        assert SteeringEntry.from_dict(json.loads(json.dumps(entry.to_dict()))) == entry
    results = SteeringResults(RUN, BASE, ENTRIES)
    assert SteeringResults.from_dict(json.loads(json.dumps(results.to_dict()))) == results


def test_deltas_best_and_responses_beside(tmp_path) -> None:
    log = _run_all(tmp_path)
    results = log.results()
    assert [e.delta for e in results.entries] == [15.0, 40.0, 60.0, -20.0]
    best_up, best_down = results.best(+1), results.best(-1)
    assert best_up is not None and best_up.coefficients == (4.0,)  # 8.0 is incoherent
    assert best_down is not None and best_down.layers == (9, 12)
    saved = json.loads((tmp_path / best_up.responses).read_text())
    assert saved["key"] == best_up.key and "answer at" in saved["responses"][0]["answer"]
    assert ResultsLog(tmp_path, RUN).results() == results  # reopened: the same
    opened = ResultsLog.open(tmp_path)  # reopened from its own header
    assert opened.run == RUN and opened.results() == results
    assert opened.responses(best_up.key) == saved["responses"]
    assert opened.responses("baseline") == [{"question": "q", "answer": "plain"}]
    with pytest.raises(KeyError, match="is not in"):
        opened.responses("residual/probe/L1@+1")
    with pytest.raises(FileNotFoundError, match="no steering results"):
        ResultsLog.open(tmp_path / "nothing")


@pytest.mark.parametrize("stop_after", [0, 1, 3])
@pytest.mark.parametrize("cut", [0, 7, -1])
def test_resume_after_a_kill_gives_the_same_file(tmp_path, stop_after: int, cut: int) -> None:
    """Stop after some entries, cut the next line mid-write (kill -9), resume: same content."""
    whole = tmp_path / "whole"
    _run_all(whole)
    killed = tmp_path / "killed"
    log = _run_all(killed, stop_after=stop_after)
    if cut:
        # the line add() was writing when killed (baseline is line 2, entry i is line 3 + i)
        line = (whole / RESULTS_FILE).read_text().splitlines(keepends=True)[2 + stop_after]
        with (killed / RESULTS_FILE).open("a") as handle:
            handle.write(line[:cut])
    del log
    _run_all(killed)
    assert _content(killed) == _content(whole)


def test_another_fingerprint_judge_or_trait_is_refused(tmp_path) -> None:
    _run_all(tmp_path)
    before = (tmp_path / RESULTS_FILE).read_bytes()
    others = [
        SteeringRunRecord("demo", "optimism", "instruct", "0" * 16, RUN.judge),
        SteeringRunRecord("demo", "optimism", "instruct", RUN.fingerprint, {"kind": "other"}),
        SteeringRunRecord("demo", "humour", "instruct", RUN.fingerprint, RUN.judge),
    ]
    for other, what in zip(others, ["fingerprint", "judge", "trait"], strict=True):
        with pytest.raises(ResultsMismatchError, match=f"{what}.*never mixed.*delete"):
            ResultsLog(tmp_path, other)
    assert (tmp_path / RESULTS_FILE).read_bytes() == before  # nothing written


def test_a_newer_results_file_is_refused(tmp_path) -> None:
    _run_all(tmp_path)
    path = tmp_path / RESULTS_FILE
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    header["schema_version"] = 99
    path.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    with pytest.raises(ValueError, match="schema_version 99"):
        ResultsLog(tmp_path, RUN)


def test_bad_input(tmp_path) -> None:
    log = ResultsLog(tmp_path, RUN)
    with pytest.raises(ValueError, match="add_baseline"):
        log.add(ENTRIES[0], [])
    log.add_baseline(BASE, [])
    with pytest.raises(ValueError, match="already has a baseline"):
        log.add_baseline(BASE, [])
    log.add(ENTRIES[0], [])
    with pytest.raises(ValueError, match="already in"):
        log.add(ENTRIES[0], [])
    bad = [
        dict(layers=(12,), coefficients=(1.0, 2.0)),
        dict(layers=(12, 12), coefficients=(1.0, 2.0)),
        dict(layers=(), coefficients=()),
        dict(layers=(12,), coefficients=(float("nan"),)),
        dict(layers="12", coefficients=(1.0,)),
        dict(layers=(12,), coefficients=(1.0,), trait_mean=150.0),
        dict(layers=(12,), coefficients=(1.0,), coherent="yes"),
    ]
    for kwargs in bad:
        base = {
            "component": "residual",
            "method": "probe",
            "trait_mean": 50.0,
            "coherence_mean": 80.0,
            "n": 4,
            "coherent": True,
        }
        with pytest.raises(ValueError, match="SteeringEntry"):
            SteeringEntry(**{**base, **kwargs})
    with pytest.raises(ValueError, match="judge"):
        SteeringRunRecord("demo", "optimism", "instruct", "f" * 16, {})
    with pytest.raises(ValueError, match="direction"):
        log.results().best(0)
