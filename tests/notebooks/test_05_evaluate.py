"""05_evaluate.ipynb, executed once: the steered answers and the claims about the report."""

from __future__ import annotations

import pytest

from tests.notebooks.runner import ExecutedNotebook

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHECKS = {
    "answers": "rows",
    "recommendations": "[{'direction': r.direction, 'report_delta': r.report_delta} "
    "for r in summary.recommendations]",
    "best": "{'source': best.source, 'coefficient': best.coefficient}",
    "slider": "panel.sliders[TRAIT].value",
    "steered": "panel.texts['steered']",
    "reference": "panel.reference()",
}


@pytest.fixture(scope="module")
def run(notebook_runs) -> ExecutedNotebook:
    return notebook_runs.get("05_evaluate.ipynb", CHECKS)


def test_runs_without_error(run: ExecutedNotebook) -> None:
    run.assert_ran()


def test_steering_changes_the_held_out_answers(run: ExecutedNotebook) -> None:
    answers = run.value("answers")
    assert answers and all(a["steered"] != a["unsteered"] for a in answers), answers


def test_negative_direction_moves_the_score_more(run: ExecutedNotebook) -> None:
    # "SmolLM2 already answers formally, so +1 has little room ... -1 moves the score far more"
    delta = {r["direction"]: r["report_delta"] for r in run.value("recommendations")}
    assert set(delta) == {-1, 1}, delta
    assert abs(delta[-1]) > abs(delta[1]) and abs(delta[1]) < 20, delta


def test_panel_starts_at_the_recommendation(run: ExecutedNotebook) -> None:
    best = run.value("best")
    if best["source"] != "steering":  # "when nothing was validated ... the panel starts at 0"
        assert run.value("slider") == 0.0
    assert run.value("steered") == run.value("reference")


def test_tables_are_formatted_for_reading(run: ExecutedNotebook) -> None:
    assert "held-out accuracy" in run.html("extraction.best_by_method()")
    recommended = run.html("recommended.style")
    assert "vector_paths" not in recommended and "0000<" not in recommended
    assert "pre-wrap" in run.html("answers.style")
    assert "VectorSpec(" not in run.text("spec = best.to_vector_spec()")
