"""Coefficient search: the adaptive walk, the grid, batching, and resume after a kill."""

from __future__ import annotations

import json

import pytest
import torch

from trait_lab.core.types import JudgeResult
from trait_lab.evaluation.coherence import CoherenceRule
from trait_lab.evaluation.judges import JudgeItem
from trait_lab.evaluation.results import RESULTS_FILE, ResultsLog, SteeringRunRecord
from trait_lab.evaluation.search import SearchSettings, Track, search_coefficients
from trait_lab.testing import tiny_model, tiny_tokenizer

QUESTIONS = ["How are you today?", "Why is the sky blue?"]
RUN = SteeringRunRecord("demo", "optimism", "instruct", "a" * 16, {"kind": "fixed"})


def _walk(settings: SearchSettings, breaks_at: float) -> list[float]:
    """The strengths one track tries when answers break at ``breaks_at`` and above."""
    track = Track((12,), 1)
    while (fraction := track.next_fraction(settings)) is not None:
        track.record(fraction, fraction < breaks_at)
    return track.tried


def test_adaptive_walk_grows_then_bisects_the_edge() -> None:
    tried = _walk(SearchSettings(start=0.01, growth=2.0, refine=3), breaks_at=0.05)
    assert tried == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.06, 0.05, 0.045])
    assert _walk(SearchSettings(start=0.1, refine=1), breaks_at=0.01) == pytest.approx([0.1, 0.05])
    assert len(_walk(SearchSettings(start=0.01, max_rounds=4), breaks_at=1e9)) == 4
    grid = SearchSettings(fractions=(0.01, 0.03, 0.02))
    assert _walk(grid, breaks_at=0.015) == [0.01, 0.03, 0.02]  # a grid ignores coherence


class CountingJudge:
    """Trait score = answer length; counts the items it judged; can fail after N calls."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls = 0
        self.items = 0
        self.fail_after = fail_after

    @property
    def identity(self) -> dict[str, str]:
        return {"kind": "fixed"}

    async def score_trait(self, items):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("killed")  # what a kill in the middle of a round looks like
        self.calls += 1
        self.items += len(items)
        return [min(100.0, float(len(item.answer))) for item in items]

    async def score_coherence(self, items):
        return [None for _ in items]


def _setup(folder):
    model, tok = tiny_model(), tiny_tokenizer()
    gen = torch.Generator().manual_seed(5)
    vectors = {layer: torch.randn(32, generator=gen) for layer in range(3)}
    norms = {0: 4.0, 1: 5.0, 2: 6.0}
    items = [JudgeItem(q, "", "optimism", "Hope.") for q in QUESTIONS]
    log = ResultsLog(folder, RUN)
    if log.baseline is None:
        log.add_baseline(JudgeResult(20.0, 100.0, 2), [])
    rule = CoherenceRule(baseline_nll=4.6, threshold=0.0)  # every strength counts as coherent
    return model, tok, vectors, norms, items, log, rule


SETTINGS = SearchSettings(start=0.5, growth=2.0, refine=1, max_rounds=4, max_new_tokens=4)


def _search(folder, judge, layer_sets=None):
    model, tok, vectors, norms, items, log, rule = _setup(folder)
    return search_coefficients(
        model,
        tok,
        judge,
        items,
        vectors,
        norms,
        rule,
        log,
        layer_sets=layer_sets,
        settings=SETTINGS,
    )


def test_each_round_is_one_batch_and_multi_layer_sets_get_per_layer_magnitudes(tmp_path) -> None:
    judge = CountingJudge()
    entries = _search(tmp_path, judge, layer_sets=[(1,), (0, 2)])
    assert judge.calls == SETTINGS.max_rounds  # all tracks' strengths of a round: one batch
    assert len(entries) == 4 * SETTINGS.max_rounds  # 2 layer sets x 2 directions per round
    assert judge.items == len(entries) * len(QUESTIONS)
    multi = [e for e in entries if e.layers == (0, 2)]
    ratios = [e.coefficients[0] / e.coefficients[1] for e in multi]
    assert multi and ratios == pytest.approx([4 / 6] * len(multi))
    signs = {(e.layers, e.coefficients[0] > 0) for e in entries}
    assert signs == {((1,), True), ((1,), False), ((0, 2), True), ((0, 2), False)}


def _content(folder) -> list[dict]:
    rows = [json.loads(x) for x in (folder / RESULTS_FILE).read_text().splitlines()]
    rows[0]["run"].pop("created")
    return rows


@pytest.mark.parametrize("fail_after", [0, 1, 3])
def test_resume_after_a_kill_gives_the_same_results(tmp_path, fail_after: int) -> None:
    """Killed in round ``fail_after + 1``: the rerun judges only what was not logged."""
    whole = CountingJudge()
    _search(tmp_path / "whole", whole)
    assert whole.calls == SETTINGS.max_rounds  # every track grows: one batch per round
    with pytest.raises(KeyboardInterrupt):
        _search(tmp_path / "killed", CountingJudge(fail_after=fail_after))
    logged = len(_content(tmp_path / "killed")) - 2  # header and baseline
    resumed = CountingJudge()
    _search(tmp_path / "killed", resumed)
    assert _content(tmp_path / "killed") == _content(tmp_path / "whole")
    entries = len(_content(tmp_path / "whole")) - 2
    assert logged == fail_after * entries // SETTINGS.max_rounds
    assert resumed.items == (entries - logged) * len(QUESTIONS)  # nothing recomputed
    assert resumed.calls == SETTINGS.max_rounds - fail_after


def test_bad_input(tmp_path) -> None:
    model, tok, vectors, norms, items, _, rule = _setup(tmp_path / "a")
    empty = ResultsLog(tmp_path / "b", RUN)
    with pytest.raises(ValueError, match="add_baseline"):
        search_coefficients(model, tok, CountingJudge(), items, vectors, norms, rule, empty)
    log = ResultsLog(tmp_path / "a", RUN)
    with pytest.raises(ValueError, match="no typical norm for layers"):
        search_coefficients(model, tok, CountingJudge(), items, vectors, {0: 1.0}, rule, log)
    bad: list[dict] = [
        {"start": 0.0},
        {"growth": 1.0},
        {"refine": -1},
        {"fractions": ()},
        {"fractions": (float("nan"),)},
        {"fractions": (0.1, 1e6)},
        {"start": float("inf")},
        {"directions": (2,)},
        {"max_new_tokens": 0},
    ]
    for kwargs in bad:
        with pytest.raises(ValueError, match=str(next(iter(kwargs)))):
            SearchSettings(**kwargs)
    # a track that never breaks stops growing at MAX_FRACTION instead of running away
    assert max(_walk(SearchSettings(start=1.0, max_rounds=50), breaks_at=1e9)) == 4.0
