"""01_extract.ipynb, executed once; its text claims and the panel's agreement with the library."""

from __future__ import annotations

import pytest

from tests.notebooks.runner import ExecutedNotebook

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHECKS = {
    "replies": "replies",
    "steered": "panel.texts['steered']",
    "reference": "panel.reference()",
    "best": "{'method': best.method, 'layer': best.layer, 'accuracy': best.accuracy}",
    "best_layers": "best_layers.to_dict('records')",
    "pairs": "len(trait.pairs)",
}


@pytest.fixture(scope="module")
def run(notebook_runs) -> ExecutedNotebook:
    return notebook_runs.get("01_extract.ipynb", CHECKS)


def test_runs_without_error(run: ExecutedNotebook) -> None:
    run.assert_ran()


def test_steered_replies_differ_from_unsteered(run: ExecutedNotebook) -> None:
    replies = run.value("replies")
    unsteered = replies.pop("coefficient +0")
    assert len(replies) == 2
    for name, texts in replies.items():
        assert len(texts) == len(unsteered) == 3
        assert all(a != b for a, b in zip(texts, unsteered, strict=True)), (name, texts, unsteered)


def test_panel_shows_what_the_library_computes(run: ExecutedNotebook) -> None:
    steered = run.value("steered")
    assert steered and steered == run.value("reference")
    # the notebook's last cell prints the same reply for the reader
    assert run.text("print(panel.reference())").strip() == steered.strip()


def test_chosen_vector_matches_the_text(run: ExecutedNotebook) -> None:
    # "restricted to layers 10–16 ... accuracy ≥ 0.7"
    best = run.value("best")
    assert 10 <= best["layer"] <= 16 and best["accuracy"] >= 0.7, best


def test_random_baseline_is_below_the_fitted_methods(run: ExecutedNotebook) -> None:
    # "a random direction should sit near chance (0.5), so anything well above it is signal"
    rows = {r["method"]: r for r in run.value("best_layers")}
    fitted = [r["held-out accuracy"] for m, r in rows.items() if m != "random_baseline"]
    assert max(fitted) > rows["random_baseline"]["held-out accuracy"], rows


def test_tables_are_formatted_for_reading(run: ExecutedNotebook) -> None:
    pairs = run.html("trait.pairs[:3]")
    assert "pre-wrap" in pairs and "TraitPair(" not in pairs
    best = run.html("best_layers.style")
    assert "held-out accuracy" in best and "0000<" not in best
    replies = run.html("table.style")
    assert "pre-wrap" in replies and "\\n" not in replies
