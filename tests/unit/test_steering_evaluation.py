"""The steering evaluation pipeline on a tiny model: search, report, summary, selection, resume."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from trait_lab.core.paths import steering_dir
from trait_lab.evaluation.probe_judge import ProbeJudge
from trait_lab.evaluation.results import RESULTS_FILE, ResultsMismatchError, SteeringEntry
from trait_lab.evaluation.search import SearchSettings
from trait_lab.evaluation.summary import (
    MIN_REPORT_DELTA,
    SUMMARY_FILE,
    read_summary,
    write_summary,
)
from trait_lab.extraction.pipeline import extract_trait
from trait_lab.extraction.plan import ExtractionSettings
from trait_lab.testing import tiny_model, tiny_tokenizer
from trait_lab.traits.dataset import load_trait
from trait_lab.vectors.evaluate import evaluate_steering
from trait_lab.vectors.selection import select_vector, select_vectors

SETTINGS = SearchSettings(start=0.5, growth=2.0, refine=1, max_rounds=3, max_new_tokens=4)
EXTRACTION = ExtractionSettings(methods=("mean_diff",), layers=(1, 2))
TEMPLATE = (  # the starter traits' prompts are conversations: the tokenizer needs a template
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> "
    "{% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


class LengthJudge:
    """A deterministic trait score of the answer's characters; can be 'killed' after N calls."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls = 0
        self.fail_after = fail_after

    @property
    def identity(self) -> dict[str, str]:
        return {"kind": "length"}

    async def score_trait(self, items):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("killed")
        self.calls += 1
        return [float(sum(map(ord, item.answer)) % 101) for item in items]

    async def score_coherence(self, items):
        return [None for _ in items]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A tiny model, and an experiment folder holding its refusal extraction."""
    root = tmp_path_factory.mktemp("experiments")
    model, tok = tiny_model(), tiny_tokenizer()
    tok.chat_template = TEMPLATE
    out = root / "demo" / "extraction" / "refusal" / "instruct"
    extract_trait(model, tok, "refusal", out, EXTRACTION)
    return model, tok, root


def _run(lab, folder: Path, judge=None, threshold: float = 0.0, progress: bool = False):
    model, tok, root = lab
    candidates = select_vectors("demo", "refusal", root=str(root), n=2, min_accuracy=0.0)
    dataset = load_trait("refusal")
    return evaluate_steering(
        model,
        tok,
        dataset,
        candidates,
        folder,
        judge=judge,
        settings=SETTINGS,
        threshold=threshold,
        names=("demo", "instruct", "default"),
        progress=progress,
    )


def _content(folder: Path) -> dict[str, list[dict]]:
    """Every line of both logs and the summary, timestamps dropped."""
    out = {}
    for part in ("search", "report"):
        rows = [json.loads(x) for x in (folder / part / RESULTS_FILE).read_text().splitlines()]
        rows[0]["run"].pop("created")
        out[part] = rows
    out["summary"] = [json.loads((folder / SUMMARY_FILE).read_text())]
    return out


def test_search_then_report_on_held_out_questions(lab, tmp_path) -> None:
    summary = _run(lab, tmp_path / "run", LengthJudge())
    search_q, report_q = load_trait("refusal").steering_split()
    keys = {}
    for part in ("search", "report"):
        rows = [json.loads(x) for x in (tmp_path / "run" / part / RESULTS_FILE).open()]
        keys[part] = [SteeringEntry.from_dict(r["entry"]).key for r in rows[2:]]
        assert [r["line"] for r in rows[:2]] == ["header", "baseline"]
    assert summary.recommendations, "threshold 0: every strength is coherent"
    for rec in summary.recommendations:
        assert rec.search_key in keys["search"] and rec.search_key in keys["report"]
        assert rec.validated == (rec.report_delta * rec.direction >= MIN_REPORT_DELTA)
        assert rec.search_delta * rec.direction > 0  # it moved the trait that way when searched
        assert rec.fraction is not None and rec.fraction * rec.direction > 0
        assert all(c * rec.direction > 0 for c in rec.coefficients)
    # the report ran only the recommended configurations, on the held-out questions
    assert sorted(keys["report"]) == sorted(r.search_key for r in summary.recommendations)
    assert summary.report_baseline.n == len(report_q) and summary.search_baseline.n == len(search_q)
    assert read_summary(tmp_path / "run") == summary


def test_progress_shows_every_stage_and_round_and_changes_nothing(lab, tmp_path, capsys):
    quiet, shown = _run(lab, tmp_path / "quiet"), _run(lab, tmp_path / "shown", progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert any("unsteered baseline" in line for line in lines), lines
    rounds = [line for line in lines if " round " in line]
    assert rounds and rounds[0].startswith("[") and "s] " in rounds[0], lines
    assert any(line.endswith("held-out questions") for line in lines), lines
    assert quiet.recommendations == shown.recommendations
    assert logging.getLogger("trait_lab.evaluation.search").level == logging.NOTSET


@pytest.mark.parametrize("fail_after", [0, 1, 3, 4, 5])
def test_resume_after_a_kill_gives_the_same_files(lab, tmp_path, fail_after: int) -> None:
    """Killed at the baseline, mid-search, at the report baseline or mid-report: same files."""
    _run(lab, tmp_path / "whole", LengthJudge())
    with pytest.raises(KeyboardInterrupt):
        _run(lab, tmp_path / "killed", LengthJudge(fail_after=fail_after))
    assert not (tmp_path / "killed" / SUMMARY_FILE).exists()
    resumed = LengthJudge()
    _run(lab, tmp_path / "killed", resumed)
    assert _content(tmp_path / "killed") == _content(tmp_path / "whole")
    whole_calls = LengthJudge()
    _run(lab, tmp_path / "again", whole_calls)
    assert resumed.calls == whole_calls.calls - fail_after  # nothing judged twice


def test_another_judge_in_the_same_run_folder_is_refused(lab, tmp_path) -> None:
    _run(lab, tmp_path / "run", LengthJudge())

    class Other(LengthJudge):
        @property
        def identity(self) -> dict[str, str]:
            return {"kind": "other"}

    with pytest.raises(ResultsMismatchError, match="different judges are never mixed"):
        _run(lab, tmp_path / "run", Other())


def test_selection_prefers_the_validated_steering_result(lab) -> None:
    root = lab[2]
    folder = steering_dir("demo", "refusal", "instruct", root=str(root))
    summary = _run(lab, folder, LengthJudge())
    extraction = select_vector("demo", "refusal", root=str(root), source="extraction")
    assert extraction.source == "extraction" and extraction.coefficient is None
    # The character-sum judge moves the trait by a few points only, below MIN_REPORT_DELTA; the
    # first recommendation is marked validated by hand so that both branches are exercised.
    assert summary.recommendations
    first = replace(summary.recommendations[0], validated=True)
    summary = replace(summary, recommendations=[first, *summary.recommendations[1:]])
    write_summary(folder, summary)
    for direction in (1, -1):
        rec = summary.recommended(direction)
        if rec is None or not rec.validated:
            with pytest.raises(ValueError, match="no steering-validated"):
                select_vector(
                    "demo", "refusal", root=str(root), source="steering", direction=direction
                )
            fallback = select_vector("demo", "refusal", root=str(root), direction=direction)
            assert fallback == extraction
            continue
        best = select_vector("demo", "refusal", root=str(root), direction=direction)
        assert best.source == "steering" and best.layer == rec.layers[0]
        assert best.delta == rec.report_delta and best.coherence == rec.report_coherence
        assert best.to_vector_spec().weight == rec.coefficients[0]
        assert best.path == rec.vector_paths[0]
    ranked = select_vectors("demo", "refusal", root=str(root), n=2, min_accuracy=0.0)
    assert len({(r.method, r.layer) for r in ranked}) == len(ranked)


def test_the_default_judge_is_a_probe_fitted_once_and_reused(lab, tmp_path) -> None:
    summary = _run(lab, tmp_path / "run", threshold=0.0)
    assert summary.judge["kind"] == "probe"
    saved = (tmp_path / "run" / "judge.json").read_text()
    model, tok, _ = lab
    assert ProbeJudge.load(tmp_path / "run" / "judge.json", model, tok).identity == summary.judge
    again = _run(lab, tmp_path / "run", threshold=0.0)  # resumes: loads the judge, no refit
    assert again == summary and (tmp_path / "run" / "judge.json").read_text() == saved


def test_a_trait_without_report_questions_is_refused(lab, tmp_path) -> None:
    source = load_trait("refusal").path
    trait = tmp_path / "mine"
    trait.mkdir()
    for name in ("trait.json", "pairs.jsonl", "steering.txt"):
        (trait / name).write_text((source / name).read_text())
    model, tok, root = lab
    candidates = select_vectors("demo", "refusal", root=str(root), min_accuracy=0.0)
    with pytest.raises(ValueError, match=r"no held-out report questions: add steering_report"):
        evaluate_steering(model, tok, load_trait(trait), candidates, tmp_path / "run")
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_bad_input_is_refused_before_anything_is_written(lab, tmp_path) -> None:
    model, tok, root = lab
    candidates = select_vectors("demo", "refusal", root=str(root), min_accuracy=0.0)
    dataset = load_trait("refusal")
    with pytest.raises(TypeError, match="is not a judge"):
        evaluate_steering(model, tok, dataset, candidates, tmp_path / "a", judge="gpt-4o")
    with pytest.raises(ValueError, match="at least 2 questions"):
        evaluate_steering(model, tok, dataset, candidates, tmp_path / "b", max_questions=1)
    with pytest.raises(ValueError, match="no candidate vectors"):
        evaluate_steering(model, tok, dataset, [], tmp_path / "c", judge=LengthJudge())
    assert not any((tmp_path / name / "search").exists() for name in "abc")


def test_several_components_and_methods_are_searched_each_with_its_own_vectors(
    lab, tmp_path
) -> None:
    model, tok, _ = lab
    root = tmp_path / "experiments"
    out = root / "demo" / "extraction" / "refusal" / "instruct"
    settings = ExtractionSettings(
        methods=("mean_diff", "probe"), components=("residual", "attn_contribution"), layers=(1,)
    )
    extract_trait(model, tok, "refusal", out, settings)
    candidates = [
        r
        for component in ("residual", "attn_contribution")
        for r in select_vectors(
            "demo", "refusal", root=str(root), n=2, component=component, min_accuracy=0.0
        )
    ]
    assert {(c.component, c.method) for c in candidates} == {
        (c, m) for c in ("residual", "attn_contribution") for m in ("mean_diff", "probe")
    }
    dataset = load_trait("refusal")
    evaluate_steering(
        model,
        tok,
        dataset,
        candidates,
        tmp_path / "run",
        judge=LengthJudge(),
        settings=SearchSettings(start=0.5, max_rounds=1, max_new_tokens=3),
        threshold=0.0,
    )
    rows = [json.loads(x) for x in (tmp_path / "run" / "search" / RESULTS_FILE).open()]
    spots = {(r["entry"]["component"], r["entry"]["method"]) for r in rows[2:]}
    assert spots == {(c.component, c.method) for c in candidates}


SCRIPT = """
import sys, time
from trait_lab.testing import tiny_model, tiny_tokenizer
from trait_lab.traits.dataset import load_trait
from trait_lab.vectors.evaluate import evaluate_steering
from trait_lab.vectors.selection import select_vectors
from trait_lab.evaluation.search import SearchSettings

class SlowJudge:
    identity = {"kind": "slow"}
    async def score_trait(self, items):
        time.sleep(0.2)  # room for the kill to land anywhere
        return [float(sum(map(ord, i.answer)) % 101) for i in items]
    async def score_coherence(self, items):
        return [None for _ in items]

root, folder, template = sys.argv[1:4]
tok = tiny_tokenizer()
tok.chat_template = template
candidates = select_vectors("demo", "refusal", root=root, n=2, min_accuracy=0.0)
settings = SearchSettings(start=0.5, refine=1, max_rounds=3, max_new_tokens=4)
evaluate_steering(tiny_model(), tok, load_trait("refusal"), candidates, folder,
                  judge=SlowJudge(), settings=settings, threshold=0.0)
"""


@pytest.fixture(scope="module")
def whole_run(lab, tmp_path_factory) -> Path:
    """The script's run, never interrupted."""
    folder = tmp_path_factory.mktemp("whole") / "run"
    command = [sys.executable, "-c", SCRIPT, str(lab[2]), str(folder), TEMPLATE]
    subprocess.run(command, check=True, timeout=600)
    return folder


@pytest.mark.parametrize("lines", [3, 8])
def test_kill_9_at_any_point_then_resume_gives_the_same_files(
    lab, whole_run, tmp_path, lines: int
) -> None:
    """A real SIGKILL once the search log has ``lines`` lines, then a rerun: the same files."""
    killed = tmp_path / "run"  # the same folder name: the summary records it
    command = [sys.executable, "-c", SCRIPT, str(lab[2]), str(killed), TEMPLATE]
    process = subprocess.Popen(command)
    log = killed / "search" / RESULTS_FILE
    deadline = time.monotonic() + 600
    while process.poll() is None and time.monotonic() < deadline:
        if log.is_file() and len(log.read_text().splitlines()) >= lines:
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / SUMMARY_FILE).exists()
    subprocess.run(command, check=True, timeout=600)
    assert _content(killed) == _content(whole_run)
