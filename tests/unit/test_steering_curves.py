"""steering_curves draws exactly the SteeringResults it is given.

Ground truth: hand-built entries at layers 9 and 12 in both directions, one multi-layer set and
incoherent points; the stars must sit where ``SteeringResults.best`` says, and the hover must
carry each entry's saved answers, escaped.
"""

from __future__ import annotations

import html

import pytest

from tests.helpers import figures_in_html, html_title
from trait_lab.core import JudgeResult
from trait_lab.evaluation import (
    DEFAULT_THRESHOLD,
    ResultsLog,
    SteeringEntry,
    SteeringResults,
    SteeringRunRecord,
)
from widgets import export_figure
from widgets.common.colours import NEGATIVE_RGB, POSITIVE_RGB
from widgets.evaluation import answers_html, curve_name, steering_curves

RUN = SteeringRunRecord("demo", "optimism", "instruct", "f" * 16, {"kind": "test"})
BASELINE = JudgeResult(20.0, 90.0, 4)


def entry(
    layers: tuple[int, ...],
    coefs: tuple[float, ...],
    fraction: float | None,
    trait: float,
    coherence: float,
    coherent: bool = True,
) -> SteeringEntry:
    delta = trait - BASELINE.trait_mean
    return SteeringEntry(
        layers, coefs, "residual", "probe", trait, coherence, 4, coherent, delta, fraction=fraction
    )


# deliberately out of x order: the figure sorts each line
ENTRIES = [
    entry((12,), (6.0,), 0.02, 70.0, 75.0),
    entry((9,), (2.0,), 0.01, 35.0, 88.0),
    entry((9, 12), (2.0, 3.0), 0.01, 50.0, 78.0),
    entry((12,), (-3.0,), -0.01, 8.0, 80.0),
    entry((9,), (4.0,), 0.02, 85.0, 40.0, coherent=False),
    entry((12,), (3.0,), 0.01, 45.0, 86.0),
    entry((9,), (-2.0,), -0.01, 12.0, 85.0),
]
RESULTS = SteeringResults(RUN, BASELINE, ENTRIES)
ANSWER = "<b>great</b> day! " + "so very fine " * 30


def answers(key: str) -> list[dict[str, object]]:
    return [
        {"question": f"How is {key}?", "answer": ANSWER, "trait": 80.0, "coherence": 90.0},
        {"question": "Second?", "answer": "second answer", "trait": None, "coherence": 50.0},
        {"question": "Third?", "answer": "never shown", "trait": 1.0, "coherence": 1.0},
    ]


RESPONSES = {e.key: answers(e.key) for e in ENTRIES} | {"baseline": answers("baseline")}


def by_name(fig, name: str) -> list:
    return [t for t in fig.data if t.name == name]


class TestTraces:
    def test_names_and_count(self) -> None:
        fig = steering_curves(RESULTS)
        names = [t.name for t in fig.data]
        lines = ["L9 probe", "L9 probe", "L12 probe", "L12 probe", "L9+L12 probe", "L9+L12 probe"]
        stars = ["recommended +"] * 2 + ["recommended −"] * 2
        assert names == [*lines, "baseline", "baseline", *stars]
        assert [t.showlegend for t in fig.data] == [True, False] * 6
        assert [t.yaxis for t in fig.data] == ["y", "y2"] * 6

    def test_values_sorted_by_fraction_in_both_rows(self) -> None:
        fig = steering_curves(RESULTS)
        top, bottom = by_name(fig, "L9 probe")
        assert list(top.x) == list(bottom.x) == [-0.01, 0.01, 0.02]
        assert list(top.y) == [12.0, 35.0, 85.0]
        assert list(bottom.y) == [85.0, 88.0, 40.0]
        top, bottom = by_name(fig, "L12 probe")
        assert list(top.x) == [-0.01, 0.01, 0.02] and list(top.y) == [8.0, 45.0, 70.0]
        assert top.line.color == bottom.line.color == top.marker.color
        assert top.legendgroup == bottom.legendgroup == "L12 probe"
        assert len({by_name(fig, n)[0].line.color for n in ("L9 probe", "L12 probe")}) == 2

    def test_coefficient_axis(self) -> None:
        single = SteeringResults(RUN, BASELINE, [e for e in ENTRIES if len(e.layers) == 1])
        fig = steering_curves(single, x="coefficient")
        top, _ = by_name(fig, "L12 probe")
        assert list(top.x) == [-3.0, 3.0, 6.0] and list(top.y) == [8.0, 45.0, 70.0]
        assert fig.layout.xaxis2.title.text == "coefficient"

    def test_incoherent_points_are_hollow(self) -> None:
        top, bottom = by_name(steering_curves(RESULTS), "L9 probe")
        assert list(top.marker.symbol) == ["circle", "circle", "circle-open"]
        assert list(top.marker.opacity) == list(bottom.marker.opacity) == [1.0, 1.0, 0.55]

    def test_stars_at_best_entries(self) -> None:
        fig = steering_curves(RESULTS)
        for name, direction in (("recommended +", 1), ("recommended −", -1)):
            best = RESULTS.best(direction)
            assert best is not None
            top, bottom = by_name(fig, name)
            assert list(top.x) == list(bottom.x) == [best.fraction]
            assert list(top.y) == [best.trait_mean] and list(bottom.y) == [best.coherence_mean]
            assert top.marker.symbol == "star" and best.key in top.hovertext[0]
        assert RESULTS.best(1).key == "residual/probe/L12@+6"  # the incoherent L9 +4 loses

    def test_stars_follow_the_pole_colours(self) -> None:
        # the same convention as every other view: red toward +, blue toward −
        fig = steering_curves(RESULTS)
        for name, rgb in (("recommended +", POSITIVE_RGB), ("recommended −", NEGATIVE_RGB)):
            top, _ = by_name(fig, name)
            assert top.marker.color == "rgb({}, {}, {})".format(*rgb)

    def test_no_stars_or_baseline_when_there_are_none(self) -> None:
        incoherent = [e for e in ENTRIES if not e.coherent]
        fig = steering_curves(SteeringResults(RUN, None, incoherent))
        assert [t.name for t in fig.data] == ["L9 probe", "L9 probe"]

    def test_baseline_and_threshold_lines(self) -> None:
        fig = steering_curves(RESULTS, threshold=60)
        lines = [(s.yref, s.y0, s.line.dash) for s in fig.layout.shapes]
        assert ("y", 20.0, "dash") in lines and ("y2", 90.0, "dash") in lines
        assert ("y2", 60.0, "dot") in lines and len(lines) == 3
        top, bottom = by_name(fig, "baseline")
        assert list(top.x) == [0.0] and list(top.y) == [20.0] and list(bottom.y) == [90.0]
        default = steering_curves(RESULTS).layout.shapes
        assert [s.y0 for s in default if s.line.dash == "dot"] == [DEFAULT_THRESHOLD]

    def test_component_named_when_mixed(self) -> None:
        other = SteeringEntry((9,), (1.0,), "attn_out", "probe", 30.0, 90.0, 4, True, fraction=0.01)
        fig = steering_curves(SteeringResults(RUN, BASELINE, [ENTRIES[1], other]))
        assert [t.name for t in fig.data][:4:2] == ["L9 probe attn_out", "L9 probe residual"]
        assert curve_name(ENTRIES[2]) == "L9+L12 probe"


class TestHover:
    def test_every_point_has_key_numbers_and_two_answers(self) -> None:
        fig = steering_curves(RESULTS, RESPONSES)
        top, bottom = by_name(fig, "L9 probe")
        for trace in (top, bottom):
            text = trace.hovertext[1]  # L9 @ +0.01
            assert "residual/probe/L9@+2" in text and "trait 35.0 (Δ +15.0)" in text
            assert "coherence 88.0 · n 4" in text
            assert "How is residual/probe/L9@+2?" in text and "second answer" in text
            assert "never shown" not in text
        assert "incoherent" in top.hovertext[2] and "incoherent" not in top.hovertext[1]

    def test_answers_are_escaped_cut_and_wrapped(self) -> None:
        text = answers_html(answers("k"))
        assert "&lt;b&gt;great&lt;/b&gt;" in text and "<b>great" not in text
        answer = html.unescape(text.split("→ ")[1].split("<br>  trait")[0])
        assert answer.endswith("…") and len(answer.replace("<br>", " ")) <= 160
        assert max(len(line) for line in answer.split("<br>")) <= 64
        assert "trait 80 · coherence 90" in text and "trait – · coherence 50" in text

    def test_baseline_hover(self) -> None:
        top, _ = by_name(steering_curves(RESULTS, RESPONSES), "baseline")
        assert "baseline" in top.hovertext[0] and "How is baseline?" in top.hovertext[0]

    def test_callable_responses_from_a_results_log(self, tmp_path) -> None:
        log = ResultsLog(tmp_path, RUN)
        log.add_baseline(BASELINE, answers("baseline"))
        for e in ENTRIES[:3]:
            log.add(e, answers(e.key))
        fig = steering_curves(log.results(), log.responses)
        top, _ = by_name(fig, "L12 probe")
        assert "How is residual/probe/L12@+6?" in top.hovertext[0]

    def test_missing_keys_show_no_answers(self) -> None:
        fig = steering_curves(RESULTS, {})
        assert all("→" not in h for t in fig.data for h in t.hovertext)

    def test_bad_responses(self) -> None:
        with pytest.raises(TypeError, match=r"ResultsLog\.responses"):
            steering_curves(RESULTS, 3)  # type: ignore[arg-type]


class TestErrors:
    def test_multi_layer_against_coefficient(self) -> None:
        with pytest.raises(
            ValueError, match=r"L9@\+2,L12@\+3 steers layers \[9, 12\].*x='fraction'"
        ):
            steering_curves(RESULTS, x="coefficient")

    def test_missing_fraction(self) -> None:
        old = entry((12,), (3.0,), None, 45.0, 86.0)
        with pytest.raises(ValueError, match=r"has no fraction.*x='coefficient'"):
            steering_curves(SteeringResults(RUN, BASELINE, [old]))
        assert len(steering_curves(SteeringResults(RUN, BASELINE, [old]), x="coefficient").data)

    def test_unknown_axis(self) -> None:
        with pytest.raises(ValueError, match="x='layer'; use one of"):
            steering_curves(RESULTS, x="layer")


def test_exports_to_html(tmp_path) -> None:
    fig = steering_curves(RESULTS, RESPONSES, title="optimism steering")
    path = export_figure(fig, tmp_path / "curves.html")
    text = path.read_text()
    assert html_title(text) == "optimism steering"
    (shown,) = figures_in_html(text)
    assert [t["name"] for t in shown["data"]] == [t.name for t in fig.data]
