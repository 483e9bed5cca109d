"""03_trait_dynamics.ipynb, executed once: the Clean dropdown and the claims about cleaning."""

from __future__ import annotations

import numpy as np
import pytest

from tests.notebooks.runner import ExecutedNotebook

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Drives the view the notebook built, in the kernel, after the notebook's own cells ran.
DRIVE_CLEAN = """
_before = np.array(view.figure.data[0].z, dtype=float)
_start = view.clean.value
view.clean.value = "top5"
_after = np.array(view.figure.data[0].z, dtype=float)
_, _expected, _ = trait_matrix(view.current, view.trait.value, clean="top5", mode=view.mode.value)
view.clean.value = _start
{"start": _start, "mode": view.mode.value, "before": _before.tolist(), "after": _after.tolist(),
 "expected": np.asarray(_expected, dtype=float).tolist(),
 "restored": np.array(view.figure.data[0].z, dtype=float).tolist()}
"""
CHECKS = {
    "clean": DRIVE_CLEAN,
    "candidates": "list(calibration['candidates'])",
    "table": "table.to_dict('list')",
    "raw_first_norms": "trait_matrix(records[0], 'optimism', clean='none')[2][:, 0].tolist()",
    "layers": "LAYERS",
    "skip_view": "{'skip': skipped.skip.value, 'zmax': float(np.nanmax(np.abs(np.array("
    "skipped.figure.data[0].z, dtype=float)))), 'title': skipped.figure.layout.title.text}",
    "first_view_zmax": "float(np.nanmax(np.abs(trait_matrix(records[0], skipped.trait.value, "
    "clean='top5', mode='normalized')[1])))",
    "spans": "[(s.record, s.start, s.stop, s.mean) for s in spans]",
    "span_check": "[float(trait_matrix(records[s.record], 'optimism', clean='top5', "
    "layers=[12])[1][0, s.start:s.stop].mean()) for s in spans]",
    "correlation": "r.tolist()",
    "texts": "{'steered': pair[0].response, 'unsteered': pair[1].response}",
    "difference": "from trait_lab import variant_difference\n"
    "float(np.nanmean(variant_difference(pair[0], pair[1], 'optimism', "
    "layers=[12], clean='top5').values))",
    "difference_tab": "{'index': compare.analyses.selected_index, "
    "'traces': len(compare.analyses.difference.data)}",
    "live": "{'prompt_box': hasattr(live, 'prompt'), 'records': len(live.records)}",
}


@pytest.fixture(scope="module")
def run(notebook_runs) -> ExecutedNotebook:
    return notebook_runs.get("03_trait_dynamics.ipynb", CHECKS)


def test_runs_without_error(run: ExecutedNotebook) -> None:
    run.assert_ran()


def test_clean_dropdown_shows_what_trait_matrix_computes(run: ExecutedNotebook) -> None:
    clean = run.value("clean")
    assert clean["start"] == "none"  # the reader's view starts uncleaned, as the text says
    before, after = np.array(clean["before"]), np.array(clean["after"])
    assert before.shape == after.shape and not np.allclose(before, after, equal_nan=True)
    np.testing.assert_array_equal(after, np.array(clean["expected"]))
    np.testing.assert_array_equal(np.array(clean["restored"]), before)


def test_cleaning_changes_every_token(run: ExecutedNotebook) -> None:
    table = run.value("table")
    assert all(change > 0 for change in table["mean |Δ cosine|, other tokens"]), table


def test_massive_first_token_as_the_text_says(run: ExecutedNotebook) -> None:
    # "the first token's norm is ~25,000 from layer ~11 on (dimension 507)"
    assert 507 in run.value("candidates")
    norms = dict(zip(run.value("layers"), run.value("raw_first_norms"), strict=True))
    assert all(norms[layer] > 10_000 for layer in (12, 16, 20, 24)), norms
    assert norms[4] < 10_000 and norms[8] < 10_000, norms
    table = run.value("table")
    cleaned = table["first-token norm at L16, cleaned"]
    raw = table["first-token norm at L16, raw"]
    assert all(c < r / 10 for c, r in zip(cleaned, raw, strict=True)), table


def test_tables_are_formatted_for_reading(run: ExecutedNotebook) -> None:
    calibration = run.html("ensure_calibration(")
    assert "[" not in calibration.split("<table", 1)[1], "lists shown as Python lists"
    assert "0.000000" not in run.html("table.style")


def test_skipping_the_first_token_widens_the_colour_range(run: ExecutedNotebook) -> None:
    # "skip=1 drops it from the colour range": the attention sink no longer sets the range
    view = run.value("skip_view")
    assert view["skip"] == 1 and "first 1 skipped" in view["title"], view
    assert view["zmax"] < run.value("first_view_zmax") / 5, view


def test_top_spans_are_the_windows_the_text_says(run: ExecutedNotebook) -> None:
    spans = run.value("spans")
    assert len(spans) == 5 and all(stop - start == 5 for _, start, stop, _ in spans), spans
    means = [mean for *_, mean in spans]
    assert means == sorted(means, reverse=True), means
    np.testing.assert_allclose(means, run.value("span_check"), rtol=1e-5, atol=1e-7)


def test_trait_correlation_is_a_correlation_matrix(run: ExecutedNotebook) -> None:
    r = np.array(run.value("correlation"))
    assert r.shape == (2, 2) and np.allclose(np.diag(r), 1) and np.allclose(r, r.T)
    assert np.all(np.abs(r) <= 1 + 1e-9)


def test_steered_reply_reads_more_optimistic(run: ExecutedNotebook) -> None:
    # "red where the steered text reads more optimistic": steered − unsteered > 0 on average
    texts = run.value("texts")
    assert texts["steered"] != texts["unsteered"], texts
    assert run.value("difference") > 0, texts
    assert run.value("difference_tab") == {"index": 1, "traces": 1}


def test_live_mode_has_a_prompt_box(run: ExecutedNotebook) -> None:
    assert run.value("live") == {"prompt_box": True, "records": 3}
