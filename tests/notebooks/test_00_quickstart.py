"""00_quickstart.ipynb, executed once; the claims its text makes about the model."""

from __future__ import annotations

import pytest

from tests.notebooks.runner import ExecutedNotebook

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHECKS = {
    "texts": "{str(k): v for k, v in texts.items()}",
    "median": "norms['median token norm'].tolist()",
    "first": "norms['first token norm'].tolist()",
}


@pytest.fixture(scope="module")
def run(notebook_runs) -> ExecutedNotebook:
    return notebook_runs.get("00_quickstart.ipynb", CHECKS)


def test_runs_without_error(run: ExecutedNotebook) -> None:
    run.assert_ran()


def test_steering_changes_what_the_model_says(run: ExecutedNotebook) -> None:
    texts = run.value("texts")
    assert set(texts) == {"-50.0", "0.0", "50.0"}
    assert texts["-50.0"] != texts["0.0"] and texts["50.0"] != texts["0.0"], texts


def test_residual_norms_as_the_text_says(run: ExecutedNotebook) -> None:
    median, first = run.value("median"), run.value("first")
    # "Its norm grows with depth"
    assert median[-1] > median[12] > median[0], median
    # "from layer ~12 on the first token carries a few massive dimensions" (until the last
    # layers, where its norm falls back towards the others')
    assert all(first[layer] > 20 * median[layer] for layer in range(12, 28)), (first, median)
    assert all(first[layer] < 10 * median[layer] for layer in range(11)), (first, median)
    # "about a third of the median token norm there (~140)"
    assert 100 < median[12] < 200, median[12]


def test_norm_table_is_formatted(run: ExecutedNotebook) -> None:
    html = run.html("norms.iloc[::3]")
    assert "median token norm" in html and ".0000" not in html
