"""04_geometry.ipynb, executed once: the explorers' state and the four findings its text states.

The explorer the reader sees is only read; changing a selection is tried on a second explorer
built the same way, in the kernel, after the notebook's own cells.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from tests.notebooks.runner import ExecutedNotebook

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PICK_TWO_TRAITS = """
_probe = GeometryExplorer(grid, layers=[12, 15])
_before = list(_probe.figure.data[0].x)
_probe.trait_picker.value = tuple(TRAITS[:2])
{"before": _before, "after": list(_probe.figure.data[0].x), "picked": list(TRAITS[:2])}
"""
CHECKS = {
    "explorer": "{'view': explorer.shown().view, 'labels': explorer.shown().labels, "
    "'matrix': explorer.shown().matrix.tolist(), 'x': list(explorer.figure.data[0].x)}",
    "pick_two": PICK_TWO_TRAITS,
    "pairs": "{layer: table.to_dict('records') for layer, table in pairs.items()}",
    "by_layer": "by_layer.to_dict('records')",
    "turns": "grid.layer_to_layer('probe').mean(axis=1).to_dict()",
    "rsa": "{'labels': rsa.shown().labels, 'matrix': rsa.shown().matrix.tolist()}",
    "clusters": "{'labels': clusters.shown().labels, 'groups': list(clusters.shown().groups)}",
}


@pytest.fixture(scope="module")
def run(notebook_runs) -> ExecutedNotebook:
    return notebook_runs.get("04_geometry.ipynb", CHECKS)


def test_runs_without_error(run: ExecutedNotebook) -> None:
    run.assert_ran()


def test_explorer_shows_a_symmetric_cosine_matrix(run: ExecutedNotebook) -> None:
    shown = run.value("explorer")
    matrix = np.array(shown["matrix"])
    assert shown["view"] == "cosine" and matrix.shape == (30, 30) == (len(shown["labels"]),) * 2
    np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-6)
    np.testing.assert_allclose(matrix, matrix.T, atol=1e-6)
    # the reader's explorer was left as built: all five traits
    assert len({label.split("·")[0] for label in shown["x"]}) == 5


def test_picking_traits_redraws_with_just_those(run: ExecutedNotebook) -> None:
    pick = run.value("pick_two")
    assert pick["after"] != pick["before"]
    assert {label.split("·")[0] for label in pick["after"]} == set(pick["picked"])


def test_reuses_what_01_extracted(notebook_runs, run: ExecutedNotebook) -> None:
    if not notebook_runs.ran("01_extract.ipynb"):
        pytest.skip("01_extract did not run earlier in this session")
    printed = run.text("for trait in TRAITS:\n    summary = run_extraction(")
    found = re.search(r"optimism: (\d+) vectors computed, (\d+) reused", printed)
    assert found and found.group(1) == "0" and int(found.group(2)) > 0, printed


def _pair(row: dict) -> frozenset[str]:
    return frozenset((row["trait_a"], row["trait_b"]))


def test_finding_1_which_traits_share_a_direction(run: ExecutedNotebook) -> None:
    for layer, rows in run.value("pairs").items():
        cosine = {_pair(r): r["cosine"] for r in rows}
        # "humour and sycophancy share the most (cos ≈ +0.3)"
        assert _pair(rows[0]) == {"humour", "sycophancy"}, (layer, rows[0])
        assert 0.15 < rows[0]["cosine"] < 0.45, (layer, rows[0])
        # "formality points away from humour (≈ −0.5) and sycophancy (≈ −0.4)"
        assert cosine[frozenset(("formality", "humour"))] < -0.35, (layer, cosine)
        assert cosine[frozenset(("formality", "sycophancy"))] < -0.25, (layer, cosine)
        assert min(cosine.values()) == cosine[frozenset(("formality", "humour"))], layer


def test_finding_2_gradient_vectors_are_the_odd_ones_out(run: ExecutedNotebook) -> None:
    rows = run.value("by_layer")
    for layer in sorted({r["layer"] for r in rows}):
        at = {r["method"]: r for r in rows if r["layer"] == layer}
        agreement = {m: r["method_agreement"] for m, r in at.items()}
        entangled = {m: r["mean_abs_cosine"] for m, r in at.items()}
        assert min(agreement, key=agreement.get) == "gradient", (layer, agreement)
        assert min(entangled, key=entangled.get) == "gradient", (layer, entangled)


def test_finding_2_traits_get_more_entangled_with_depth(run: ExecutedNotebook) -> None:
    rows = run.value("by_layer")
    for method in ("mean_diff", "probe"):
        by_depth = sorted((r["layer"], r["mean_abs_cosine"]) for r in rows if r["method"] == method)
        assert by_depth[-1][1] > by_depth[0][1], (method, by_depth)


def test_finding_2_optimism_turns_most_between_layers(run: ExecutedNotebook) -> None:
    turns = run.value("turns")  # mean cosine between neighbouring layers: low = turns more
    assert min(turns, key=turns.get) == "optimism", turns


def test_finding_3_arrangement_is_stable_from_layer_12(run: ExecutedNotebook) -> None:
    rsa = run.value("rsa")
    labels, matrix = rsa["labels"], np.array(rsa["matrix"])
    np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-6)
    late = [i for i, label in enumerate(labels) if int(label[1:]) >= 12]
    assert matrix[np.ix_(late, late)].min() >= 0.8, matrix
    off = np.where(np.eye(len(labels), dtype=bool), np.nan, matrix)
    assert labels[int(np.nanargmin(np.nanmean(off, axis=1)))] == "L9", matrix


def test_finding_4_each_cluster_is_one_trait(run: ExecutedNotebook) -> None:
    clusters = run.value("clusters")
    members: dict[int, set[str]] = {}
    for label, group in zip(clusters["labels"], clusters["groups"], strict=True):
        members.setdefault(group, set()).add(label.split("·")[0])
    assert len(members) == 5 and all(len(traits) == 1 for traits in members.values()), members


def test_tables_are_formatted_for_reading(run: ExecutedNotebook) -> None:
    for marker in ("ranked.style", "by_layer = grid", 'layer_to_layer("probe").style'):
        html = run.html(marker)
        assert html and "000000" not in html, marker
