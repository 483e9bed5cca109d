"""GeometryExplorer against independent references: numpy cosines, sklearn PCA, scipy Spearman
correlations, and clusters built to be found."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.decomposition import PCA

from tests.helpers import html_title
from trait_lab.math import representational_similarity, trait_clusters
from trait_lab.vectors.grids import VectorGrid
from widgets.common.export import find_chromium
from widgets.geometry.explorer import GeometryExplorer

TRAITS = ("joy", "calm", "rage", "fear")
LAYERS = (4, 8, 12)
METHODS = ("mean_diff", "probe")
HIDDEN = 24


@pytest.fixture(scope="module")
def vectors() -> dict[tuple[str, int, str], np.ndarray]:
    rng = np.random.default_rng(0)
    return {(t, la, m): rng.normal(size=HIDDEN) for t in TRAITS for la in LAYERS for m in METHODS}


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _keys(traits, layers, methods) -> list[tuple[str, int, str]]:
    return [(t, la, m) for t in traits for la in layers for m in methods]


def _label(key) -> str:
    return f"{key[0]}·L{key[1]}·{key[2]}"


class TestCosine:
    def test_heatmap_is_numpys_cosines_of_the_subset_in_label_order(self, vectors):
        explorer = GeometryExplorer(vectors)
        explorer.trait_picker.value = ("rage", "joy")  # order of picking does not matter
        explorer.layer_picker.value = (12, 4)
        keys = _keys(["joy", "rage"], [4, 12], METHODS)  # grid order
        heat = explorer.figure.data[0]
        assert list(heat.x) == list(heat.y) == [_label(k) for k in keys]
        unit = np.stack([_unit(vectors[k]) for k in keys])
        np.testing.assert_allclose(np.asarray(heat.z), unit @ unit.T, atol=1e-6)
        shown = explorer.shown()
        assert shown.labels == [_label(k) for k in keys]
        np.testing.assert_allclose(shown.matrix, unit @ unit.T, atol=1e-6)
        assert heat.zmin == -1 and heat.zmax == 1 and heat.zmid == 0
        assert explorer.figure.layout.title.text.startswith("cosine similarity of 8 vectors")

    def test_changing_a_picker_redraws_with_the_new_subset(self, vectors):
        explorer = GeometryExplorer(vectors)
        before = list(explorer.figure.data[0].x)
        assert len(before) == len(vectors)  # 24 vectors: all of them fit the default
        explorer.method_picker.value = ("probe",)
        explorer.trait_picker.value = ("calm", "fear")
        after = list(explorer.figure.data[0].x)
        assert after == [_label(k) for k in _keys(["calm", "fear"], LAYERS, ["probe"])]
        assert explorer.status.value.startswith("6 vectors: 2 traits × 3 layers × 1 method")

    def test_the_default_selection_keeps_about_30_vectors_from_the_middle_layers(self):
        rng = np.random.default_rng(1)
        many = {k: rng.normal(size=8) for k in _keys("abcde", [6, 9, 12, 15, 18, 21], "xyz")}
        explorer = GeometryExplorer(many)
        assert explorer.layer_picker.value == (12, 15)
        assert len(explorer.shown().labels) == 30


class TestPCA:
    def test_coordinates_and_variance_are_sklearns(self, vectors):
        explorer = GeometryExplorer(vectors, methods=["probe"], view="PCA")
        keys = _keys(TRAITS, LAYERS, ["probe"])
        unit = np.stack([_unit(vectors[k]) for k in keys])
        reference = PCA(n_components=2, svd_solver="full").fit(unit)
        expected = reference.transform(unit)
        drawn = {}
        for trace in explorer.figure.data:
            if trace.customdata is not None:
                for (name, layer), x, y in zip(trace.customdata, trace.x, trace.y, strict=True):
                    drawn[name] = (x, y)
                    assert f"L{layer}" in name
        assert set(drawn) == {_label(k) for k in keys}
        got = np.array([drawn[_label(k)] for k in keys])
        for pc in range(2):
            sign = np.sign(got[:, pc] @ expected[:, pc])
            np.testing.assert_allclose(sign * got[:, pc], expected[:, pc], atol=1e-5)
        np.testing.assert_allclose(explorer.shown().explained, reference.explained_variance_ratio_)
        layout = explorer.figure.layout
        for axis, ratio in zip(
            (layout.xaxis, layout.yaxis), reference.explained_variance_ratio_, strict=True
        ):
            percent = float(re.search(r"\(([\d.]+)% of variance\)", axis.title.text).group(1))
            assert percent == pytest.approx(100 * ratio, abs=0.05)

    def test_colour_by_trait_and_symbol_by_method(self, vectors):
        explorer = GeometryExplorer(vectors, view="PCA")
        traces = {t.name: t for t in explorer.figure.data}
        assert set(traces) == {*TRAITS, *METHODS}
        assert len({traces[t].marker.color for t in TRAITS}) == len(TRAITS)
        joy = traces["joy"]
        symbols = dict(zip((n for n, _ in joy.customdata), joy.marker.symbol, strict=True))
        assert symbols["joy·L4·probe"] == traces["probe"].marker.symbol
        assert (
            symbols["joy·L4·mean_diff"]
            == traces["mean_diff"].marker.symbol
            != symbols["joy·L4·probe"]
        )


class TestRSA:
    def test_values_are_representational_similarity_and_spearman(self, vectors):
        explorer = GeometryExplorer(vectors, methods=["mean_diff"], view="RSA")
        heat = explorer.figure.data[0]
        assert list(heat.x) == ["L4", "L8", "L12"]
        by_layer = {la: {t: vectors[(t, la, "mean_diff")] for t in TRAITS} for la in LAYERS}
        rsa, layers = representational_similarity(by_layer)
        assert layers == list(LAYERS)
        np.testing.assert_allclose(np.asarray(heat.z), rsa.numpy(), atol=1e-6)
        upper = np.triu_indices(len(TRAITS), k=1)

        def cosines(layer):
            unit = np.stack([_unit(vectors[(t, layer, "mean_diff")]) for t in TRAITS])
            return (unit @ unit.T)[upper]

        rho = spearmanr(cosines(4), cosines(12)).statistic
        assert heat.z[0][2] == pytest.approx(rho, abs=1e-6)

    def test_several_methods_compare_every_trait_method_vector(self, vectors):
        explorer = GeometryExplorer(vectors, view="RSA")
        by_layer = {
            la: {f"{t}·{m}": vectors[(t, la, m)] for t in TRAITS for m in METHODS} for la in LAYERS
        }
        np.testing.assert_allclose(
            explorer.shown().matrix, representational_similarity(by_layer)[0].numpy(), atol=1e-6
        )


class TestClusters:
    def test_well_separated_groups_are_found_and_drawn_as_blocks(self):
        rng = np.random.default_rng(2)
        centres = np.eye(6)[:3] * 5
        names = ["a1", "b1", "c1", "a2", "b2", "c2"]  # groups interleaved in grid order
        vectors = {
            (name, 10, "probe"): centres["abc".index(name[0])] + rng.normal(scale=0.3, size=6)
            for name in names
        }
        explorer = GeometryExplorer(vectors, view="clusters", k=3)
        shown = explorer.shown()
        assert shown.labels == [
            "a1·L10·probe",
            "a2·L10·probe",
            "b1·L10·probe",
            "b2·L10·probe",
            "c1·L10·probe",
            "c2·L10·probe",
        ]
        assert shown.groups == [1, 1, 2, 2, 3, 3]
        reference, _, _ = trait_clusters(
            {_label(k): torch.as_tensor(v) for k, v in vectors.items()}, k=3
        )
        by_name = dict(zip(names, reference.tolist(), strict=True))
        drawn = dict(zip((lab.split("·")[0] for lab in shown.labels), shown.groups, strict=True))
        assert all(
            (by_name[a] == by_name[b]) == (drawn[a] == drawn[b]) for a in names for b in names
        )
        heat = explorer.figure.data[0]
        assert heat.x[0] == "[1] a1·L10·probe" and len(explorer.figure.layout.shapes) == 3
        unit = np.stack([_unit(vectors[(lab.split("·")[0], 10, "probe")]) for lab in shown.labels])
        np.testing.assert_allclose(np.asarray(heat.z), unit @ unit.T, atol=1e-6)
        explorer.k.value = 2
        assert len(set(explorer.shown().groups)) == 2


class TestMessages:
    def test_too_small_selections_explain_instead_of_failing(self, vectors):
        explorer = GeometryExplorer(vectors)
        explorer.trait_picker.value = ("joy",)
        explorer.layer_picker.value = (8,)
        explorer.method_picker.value = ("probe",)
        assert "pick at least 2 vectors" in explorer.status.value
        assert len(explorer.figure.data) == 0
        assert "pick at least 2" in explorer.figure.layout.annotations[0].text
        assert explorer.shown().labels == []
        explorer.view.value = "RSA"
        assert "at least 3 traits (picked 1) and 2 layers (picked 1)" in explorer.status.value
        explorer.method_picker.value = METHODS
        explorer.view.value = "PCA"
        assert "pick at least 3 vectors" in explorer.status.value
        explorer.view.value = "clusters"
        explorer.k.value = 4
        assert "k=4 clusters needs 2 ≤ k ≤ 2" in explorer.status.value
        explorer.trait_picker.value = TRAITS  # a valid selection draws again
        assert len(explorer.shown().groups) == 8 and explorer.figure.data

    def test_an_empty_pick_is_a_message(self, vectors):
        explorer = GeometryExplorer(vectors)
        explorer.trait_picker.value = ()
        assert "pick at least 2 vectors for the cosine view (picked 0)" in explorer.status.value

    def test_bad_inputs_name_the_value_and_the_fix(self, vectors):
        with pytest.raises(TypeError, match=r"VectorGrid .*load_vector_grid.*got list"):
            GeometryExplorer([1, 2])
        with pytest.raises(ValueError, match=r"key \('joy', 4\) is not \(trait, layer, method\)"):
            GeometryExplorer({("joy", 4): np.ones(3)})
        with pytest.raises(ValueError, match=r"\['b·L1·probe'\] are all zeros"):
            GeometryExplorer({("a", 1, "probe"): np.ones(3), ("b", 1, "probe"): np.zeros(3)})
        with pytest.raises(ValueError, match=r"unknown view 'tsne'.*'cosine', 'PCA'"):
            GeometryExplorer(vectors, view="tsne")
        with pytest.raises(ValueError, match=r"traits \['hope'\] are not in this grid"):
            GeometryExplorer(vectors, traits=["hope"])
        with pytest.raises(ValueError, match="k=99 clusters"):
            GeometryExplorer(vectors, k=99)

    def test_accepts_a_vector_grid(self, vectors):
        grid = VectorGrid.from_mapping(vectors)
        explorer = GeometryExplorer(grid, layers=[8])
        assert explorer.shown().labels == [_label(k) for k in _keys(TRAITS, [8], METHODS)]


class TestExport:
    def test_html(self, vectors, tmp_path):
        explorer = GeometryExplorer(vectors, view="PCA")
        explorer.export.filename.value = str(tmp_path / "geometry")
        explorer.export.format.value = "html"
        path = explorer.export.save()
        assert path is not None and path.exists(), explorer.export.status.value
        assert html_title(path.read_text()).startswith("PCA of 24 unit vectors")

    @pytest.mark.skipif(find_chromium() is None, reason="PNG export needs chromium")
    def test_png(self, vectors, tmp_path):
        explorer = GeometryExplorer(vectors)
        explorer.export.filename.value = str(tmp_path / "geometry")
        explorer.export.format.value = "png"
        path = explorer.export.save()
        assert path is not None, explorer.export.status.value
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
