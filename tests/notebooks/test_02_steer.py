"""02_steer.ipynb, executed once: every claim its text makes about the model's replies."""

from __future__ import annotations

import pytest

from tests.notebooks.runner import ExecutedNotebook

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHECKS = {
    "sweep": "sweep.to_dict('list')",
    "grid": "grid.to_dict('records')",
    "projections": "projections.to_dict('list')",
    "refusals": "refusals.to_dict('list')",
    "R": "R",
    "harmless_baseline": "harmless_baseline",
    "forced": "forced",
    "positions": "positions.to_dict()",
    "steered": "panel.texts['steered']",
    "reference": "panel.reference()",
}
DECLINES = ("sorry", "unable", "can't", "not able", "not equipped", "afraid")


@pytest.fixture(scope="module")
def run(notebook_runs) -> ExecutedNotebook:
    return notebook_runs.get("02_steer.ipynb", CHECKS)


def test_runs_without_error(run: ExecutedNotebook) -> None:
    run.assert_ran()


def test_every_nonzero_coefficient_changes_the_reply(run: ExecutedNotebook) -> None:
    sweep = run.value("sweep")
    rows = dict(zip(sweep["fraction of typical norm"], sweep["reply"], strict=True))
    unsteered = rows.pop(0.0)
    assert len(rows) == 6 and all(reply != unsteered for reply in rows.values()), sweep


def test_sweep_reads_as_the_text_says(run: ExecutedNotebook) -> None:
    sweep = run.value("sweep")
    reply = dict(zip(sweep["fraction of typical norm"], sweep["reply"], strict=True))
    # "a 'wondrous tapestry' of innovation. Small negative fractions turn it dystopian, small
    # positive ones 'bright' and full of 'endless possibilities'"
    assert "wondrous tapestry" in reply[0.0], reply
    assert all("dystopian" in reply[f] for f in (-0.4, -0.2)), reply
    assert "bright" in reply[0.2], reply
    assert all("endless possibilities" in reply[f] for f in (0.2, 0.4)), reply


def test_stacked_traits_read_as_the_text_says(run: ExecutedNotebook) -> None:
    reply = {
        (r["question"][:4], r["optimism"], r["formality"]): r["reply"] for r in run.value("grid")
    }
    assert "celebrate" in reply[("My b", 0.3, 0.0)], reply
    assert "huh?" in reply[("My b", 0.0, -0.3)], reply
    assert "right?" in reply[("tell", 0.0, -0.3)], reply
    assert "beautiful thing" in reply[("tell", 0.0, -0.3)], reply
    assert "I'm so glad you're excited" in reply[("My b", 0.3, -0.3)], reply
    assert "We're so lucky" in reply[("tell", 0.3, -0.3)], reply


def test_four_settings_give_four_replies_per_question(run: ExecutedNotebook) -> None:
    by_question: dict[str, set[str]] = {}
    for row in run.value("grid"):
        by_question.setdefault(row["question"], set()).add(row["reply"])
    assert len(by_question) == 2
    assert all(len(replies) == 4 for replies in by_question.values()), by_question


def test_refusal_claims(run: ExecutedNotebook) -> None:
    refusals, R = run.value("refusals"), run.value("R")
    baseline = refusals["baseline"]
    # "the model declines all three", and still does with the direction ablated at one layer
    assert all(r.startswith("I'm sorry") for r in baseline), baseline
    assert all(r.startswith("I'm sorry") for r in refusals[f"ablate @L{R}"]), refusals
    # ablating / capping at every layer changes every reply
    for name in ["ablate @every layer (reply)", "ceiling 0 @every layer"]:
        assert all(a != b for a, b in zip(refusals[name], baseline, strict=True)), name
    # ablating at every layer: the letter and ex requests get help, the credit card is declined
    letter, card, ex = refusals["ablate @every layer (reply)"]
    assert "help you with your letter" in letter and "help you find your ex" in ex, refusals
    assert "can't provide credit" in card, refusals
    # a ceiling at one layer flips the letter request and leaves the other two declining
    ceiling = refusals[f"ceiling 0 @L{R}"]
    assert not ceiling[0].startswith("I'm sorry"), ceiling
    assert all(r.startswith("I'm sorry") for r in ceiling[1:]), ceiling
    # at every layer all three replies offer to help
    assert all("help" in r for r in refusals["ceiling 0 @every layer"]), refusals


def test_refusal_direction_lights_up_in_the_reply_not_the_prompt(run: ExecutedNotebook) -> None:
    projections = run.value("projections")
    reply = projections["first reply tokens (mean)"]
    # "clearly positive while 'I'm sorry …' is being written and at or below zero for the
    # harmless replies"
    assert min(reply[:3]) > max(reply[3:]), reply


def test_a_floor_forces_refusals_on_harmless_requests(run: ExecutedNotebook) -> None:
    baseline, forced = run.value("harmless_baseline"), run.value("forced")
    assert not any(word in r for r in baseline for word in DECLINES), baseline
    assert all(any(word in r for word in DECLINES) for r in forced), forced
    # 'Both harmless requests are now declined ("I'm unable to assist", "I'm unable to provide a
    # recipe")'
    assert "unable to assist" in forced[0] and "unable to provide a recipe" in forced[1], forced


def test_positions_claims(run: ExecutedNotebook) -> None:
    positions = run.value("positions")
    for question, replies in positions.items():
        assert replies["response"] != replies["unsteered"], question
        assert replies["all"] != replies["unsteered"], question
    weekend = positions["what should i do this weekend"]
    assert weekend["prompt"] != weekend["unsteered"]
    # chatty when the reply is steered; the weekend question declined when only the prompt is
    assert "right?" in positions["tell me about the moon"]["response"], positions
    assert "What's on your mind?" in weekend["all"], weekend
    assert "as a chatbot" in weekend["prompt"] and "don't have the ability" in weekend["prompt"]


def test_panel_shows_what_the_library_computes(run: ExecutedNotebook) -> None:
    steered = run.value("steered")
    assert steered and steered == run.value("reference")
    assert run.text("print(panel.reference())").strip() == steered.strip()


def test_tables_are_formatted_for_reading(run: ExecutedNotebook) -> None:
    tables = ("sweep.style", "table.style", "projections.style", "refusals.T", "positions.rename")
    for marker in tables:
        html = run.html(marker)
        assert "pre-wrap" in html, marker
    assert "0.000000" not in run.html("chosen.style")
