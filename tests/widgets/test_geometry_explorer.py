"""GeometryExplorer against independent references: numpy cosines, sklearn PCA, scipy Spearman
correlations, and clusters built to be found."""

from __future__ import annotations

import base64
import itertools
import json
import random
import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.decomposition import PCA

from tests.helpers import html_title
from trait_lab.math import representational_similarity, trait_clusters
from trait_lab.vectors.grids import VectorGrid
from widgets.common.colours import SIGNED_SCALE, pole_legend
from widgets.common.export import find_chromium
from widgets.common.figures import metrics_heatmap, replace_figure, token_heatmap
from widgets.geometry.explorer import K_CAP, VIEWS, GeometryExplorer
from widgets.geometry.figures import cosine_heatmap

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
        explorer.k.value = 4  # the slider stops at what makes sense for 2 vectors
        assert (explorer.k.value, explorer.k.max) == (2, 2)
        assert "2 vectors" in explorer.status.value
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


# ----- stale overlays: the figure after any sequence of control changes equals a fresh one -----


def _set_path(target: dict, path: str, value) -> None:
    """lodash's ``_.set`` / ``_.unset`` as plotly's widget model uses them (``a.b[0].c``)."""
    parts = [p for p in re.split(r"\.|\[(\d+)\]", path) if p]
    keys = [int(p) if p.isdigit() else p for p in parts]
    for key in keys[:-1]:
        target = target[key] if isinstance(target, list) else target.setdefault(key, {})
    if value is None:
        if isinstance(target, dict):
            target.pop(keys[-1], None)
    else:
        target[keys[-1]] = value


class FrontendMirror:
    """The figure state the browser's widget model holds: built only from the messages the
    FigureWidget sends (``_py2js_*``), applied the way plotly's ``widgetbundle.js`` applies
    them. Leftovers that Python forgot to remove show up here, not in ``figure.layout``."""

    def __init__(self, figure) -> None:
        self.data = [dict(t) for t in figure._widget_data]
        self.layout = dict(figure._widget_layout)
        self.layout_at_add: list[dict] = []  # the layout on the page as each trace arrived
        figure.observe(self._on_message, names=[n for n in figure.trait_names() if "py2js" in n])

    def _on_message(self, change) -> None:
        msg, name = change["new"], change["name"]
        if msg is None:
            return
        msg = json.loads(json.dumps(msg, default=_jsonable))
        if name == "_py2js_addTraces":
            self.layout_at_add.append(_normalised(self.layout))
            self.data.extend(msg["trace_data"])
        elif name == "_py2js_deleteTraces":
            for i in sorted(msg["delete_inds"], reverse=True):
                del self.data[i]
        elif name == "_py2js_relayout":
            self._relayout(msg["relayout_data"])
        elif name in ("_py2js_restyle", "_py2js_update"):
            style = msg["restyle_data" if name == "_py2js_restyle" else "style_data"]
            traces = msg["restyle_traces" if name == "_py2js_restyle" else "style_traces"]
            traces = range(len(self.data)) if traces is None else traces
            for key, values in style.items():
                values = values if isinstance(values, list) else [values]
                for j, i in enumerate(traces):
                    _set_path(self.data[i], key, values[j % len(values)])
            if name == "_py2js_update":
                self._relayout(msg["layout_data"])
        elif name == "_py2js_removeLayoutProps":
            for path in msg["remove_props"]:
                _set_path(self.layout, ".".join(map(str, path)), None)
        else:
            raise AssertionError(f"FrontendMirror does not model {name}")

    def _relayout(self, data: dict) -> None:
        for key, value in data.items():
            _set_path(self.layout, key, value)

    def state(self) -> dict:
        return _normalised({"data": self.data, "layout": self.layout})


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict) and "dtype" in value:  # plotly's binary array spec
        return value
    raise TypeError(type(value))


def _normalised(obj):
    """Figure JSON with trace uids (random per widget) dropped and arrays as lists."""
    if isinstance(obj, dict) and "bdata" in obj:  # plotly's base64 typed array
        flat = np.frombuffer(base64.b64decode(obj["bdata"]), dtype=obj["dtype"])
        shape = [int(n) for n in str(obj.get("shape", len(flat))).split(",")]
        return flat.reshape(shape).tolist()
    if isinstance(obj, dict):
        return {k: _normalised(v) for k, v in obj.items() if k != "uid"}
    if isinstance(obj, list | tuple):
        return [_normalised(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _normalised(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


SMALL = {
    (t, la, m): np.random.default_rng(abs(hash((t, la, m))) % 2**32).normal(size=12)
    for t in TRAITS
    for la in LAYERS
    for m in METHODS
}
ACTIONS = [
    *[("view", v) for v in ("cosine", "PCA", "RSA", "clusters")],
    ("k", 2),
    ("k", 5),
    ("trait_picker", ("joy",)),
    ("trait_picker", ("joy", "calm")),
    ("trait_picker", TRAITS),
    ("layer_picker", (8,)),
    ("layer_picker", LAYERS),
    ("method_picker", ("probe",)),
    ("method_picker", METHODS),
]


def _controls(explorer) -> dict:
    return {
        "traits": explorer.trait_picker.value,
        "layers": explorer.layer_picker.value,
        "methods": explorer.method_picker.value,
        "view": explorer.view.value,
        "k": (explorer.k.value, explorer.k.min, explorer.k.max, explorer.k.layout.display),
        "status": explorer.status.value,
    }


class MirroredFigureWidget(go.FigureWidget):
    """A FigureWidget that keeps a :class:`FrontendMirror` of itself from its first message."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._mirror = FrontendMirror(self)


@pytest.fixture
def mirrored(monkeypatch):
    monkeypatch.setattr(go, "FigureWidget", MirroredFigureWidget)


def _page(explorer) -> dict:
    """What a page that first shows ``explorer`` now draws: the whole figure at once."""
    return _normalised(explorer.figure.to_plotly_json())


def _assert_same(actions) -> None:
    """An explorer moved through ``actions`` shows what one built in the final state shows."""
    moved = GeometryExplorer(SMALL)
    for name, value in actions:
        getattr(moved, name).value = value
    fresh = GeometryExplorer(
        SMALL,
        traits=moved.trait_picker.value,
        layers=moved.layer_picker.value,
        methods=moved.method_picker.value,
        view=moved.view.value,
        k=moved.k.value,
    )
    assert _controls(moved) == _controls(fresh), actions
    want = _page(fresh)
    assert _page(moved) == want, actions
    got = moved.figure._mirror.state()  # what the page that watched every change draws
    assert sorted(got["layout"]) == sorted(want["layout"]), actions
    assert got == want, actions
    # New traces arrive on the new layout: a heatmap added while a PCA's linear axes are still
    # on the page draws at NaN positions (plotly.js logs '<image> attribute width: ... "NaN"').
    if moved.figure.data:
        assert moved.figure._mirror.layout_at_add[-1] == want["layout"], actions


@pytest.mark.usefixtures("mirrored")
class TestNoStaleOverlays:
    @pytest.mark.parametrize(
        "first,second", list(itertools.product(ACTIONS, ACTIONS)), ids=lambda a: f"{a[0]}={a[1]}"
    )
    def test_every_ordered_pair_of_changes(self, first, second):
        _assert_same([first, second])

    @pytest.mark.parametrize("seed", range(12))
    def test_random_longer_sequences(self, seed):
        rng = random.Random(seed)
        _assert_same([rng.choice(ACTIONS) for _ in range(6)])

    def test_clusters_then_cosine_leaves_no_outlines_on_the_page(self):
        moved = GeometryExplorer(SMALL, view="clusters", k=3)
        mirror = moved.figure._mirror
        moved.view.value = "cosine"
        assert not mirror.layout.get("shapes")
        moved.trait_picker.value = ("joy",)
        moved.view.value = "RSA"
        assert "RSA needs at least 3 traits" in mirror.layout["annotations"][0]["text"]
        moved.trait_picker.value = TRAITS
        moved.view.value = "PCA"
        assert not mirror.layout.get("annotations")
        assert mirror.layout["xaxis"].get("visible", True) is not False


# ----- what each view says: colours, sizes, titles, no NaN, the k slider -------------------------


def _numbers(obj):
    """Every number in a figure's JSON (typed arrays decoded)."""
    obj = _normalised(obj)
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, float):
        yield obj


@pytest.mark.usefixtures("mirrored")
class TestEveryViewReadsRight:
    def test_no_figure_ever_holds_nan_or_infinity(self):
        explorer = GeometryExplorer(SMALL)
        sent = []
        explorer.figure.observe(
            lambda c: sent.append(c["new"]) if c["new"] is not None else None,
            names=[n for n in explorer.figure.trait_names() if "py2js" in n],
        )
        for first, second in itertools.product(ACTIONS, ACTIONS[:4]):
            for name, value in (first, second):
                getattr(explorer, name).value = value
                bad = [x for x in _numbers(explorer.figure.to_plotly_json()) if not np.isfinite(x)]
                assert not bad, (first, second, bad)
        assert not [
            x
            for x in _numbers(json.loads(json.dumps(sent, default=_jsonable)))
            if not np.isfinite(x)
        ]

    @pytest.mark.parametrize("view", ["cosine", "RSA", "clusters"])
    def test_signed_heatmaps_use_the_pole_convention_on_a_symmetric_range(self, view):
        explorer = GeometryExplorer(SMALL, view=view, k=3)
        heat = explorer.figure.data[0]
        red_high = explorer.figure.data[0].colorscale[-1][1]
        assert heat.zmin == -heat.zmax and heat.zmid == 0
        assert (
            red_high
            == go.Figure(go.Heatmap(z=[[0]], colorscale=SIGNED_SCALE)).data[0].colorscale[-1][1]
        )
        assert heat.colorbar.title.text == pole_legend("Spearman ρ" if view == "RSA" else "cosine")
        r, _g, b = (int(x) for x in re.findall(r"\d+", red_high))
        assert r > 100 > b  # the top of the scale (positive) is red

    @pytest.mark.parametrize("view", VIEWS)
    @pytest.mark.parametrize("traits", [TRAITS, ("joy",)])
    def test_figures_fit_a_jupyterlab_output_area(self, view, traits):
        many = {
            (f"t{i}", la, "probe"): np.random.default_rng(i * 31 + la).normal(size=8)
            for i in range(30)
            for la in (1, 2, 3)
        }
        for explorer in (
            GeometryExplorer(SMALL, traits=traits, view=view),
            GeometryExplorer(many, layers=[1, 2, 3], view=view),
        ):
            layout = explorer.figure.layout
            assert layout.width is not None and layout.width <= 940, (view, layout.width)

    def test_titles_say_which_traits_layers_and_methods(self):
        explorer = GeometryExplorer(
            SMALL, traits=["joy", "fear"], layers=[4, 12], methods=["probe"]
        )
        for view in VIEWS:
            explorer.view.value = view
            title = explorer.figure.layout.title.text
            if explorer.shown().message:
                continue
            assert "traits joy, fear" in title and "layers L4, L12" in title, title
            assert "methods probe" in title, title

    def test_k_slider_stops_below_the_number_of_vectors_and_at_the_cap(self):
        many = {
            (f"t{i}", la, "probe"): np.random.default_rng(i * 7 + la).normal(size=8)
            for i in range(30)
            for la in (1, 2, 3)
        }
        explorer = GeometryExplorer(many, layers=[1, 2, 3], view="clusters")
        assert len(explorer.selection()) == 90
        assert (explorer.k.min, explorer.k.max) == (2, K_CAP)
        assert explorer.k.value == K_CAP  # one per trait (30), capped
        explorer.trait_picker.value = ("t0", "t1")  # 6 vectors
        assert (explorer.k.max, explorer.k.value) == (5, 5)
        assert len(set(explorer.shown().groups)) == 5
        with pytest.raises(ValueError, match=r"k=6 clusters: k must be an int from 2 to 5"):
            GeometryExplorer(many, traits=["t0", "t1"], layers=[1, 2, 3], k=6)

    def test_export_names_follow_the_view_until_the_user_types_one(self, tmp_path):
        explorer = GeometryExplorer(SMALL)
        assert explorer.export.filename.value == "figures/geometry_cosine"
        explorer.view.value = "PCA"
        assert explorer.export.filename.value == "figures/geometry_pca"
        explorer.export.filename.value = str(tmp_path / "mine")
        explorer.view.value = "RSA"
        assert explorer.export.filename.value == str(tmp_path / "mine")
        fixed = GeometryExplorer(SMALL, export_stem="figures/04_geometry")
        fixed.view.value = "PCA"
        assert fixed.export.filename.value == "figures/04_geometry"


# ----- the shared figures of widgets.common.figures follow the same colour convention -------------


class TestSharedFiguresColours:
    def _top_is_red(self, heat) -> bool:
        r, _, b = (int(x) for x in re.findall(r"\d+", heat.colorscale[-1][1]))
        return r > 100 > b

    def test_token_heatmap_is_red_for_positive_on_a_symmetric_range(self):
        values = np.array([[0.3, -0.1, 0.05], [-0.7, 0.2, 0.0]])
        heat = token_heatmap(["a", "b", "c"], values, [4, 8]).data[0]
        assert self._top_is_red(heat) and heat.zmid == 0
        assert (heat.zmin, heat.zmax) == (-0.7, 0.7)
        assert heat.colorbar.title.text == pole_legend("projection")
        assert heat.customdata is None and "norm" not in heat.hovertemplate  # no NaN filler

    def test_token_heatmap_never_sends_nan(self):
        fig = token_heatmap(["a", "b"], np.zeros((1, 2)), [3])
        heat = fig.data[0]
        assert (heat.zmin, heat.zmax) == (-1.0, 1.0)  # all zero: not a zero-wide range
        assert all(np.isfinite(x) for x in _numbers(fig.to_plotly_json()))
        with_norms = token_heatmap(["a", "b"], np.ones((1, 2)), [3], norms=np.full((1, 2), 5.0))
        assert "norm %{customdata" in with_norms.data[0].hovertemplate

    def test_metrics_heatmap_signed_metrics_use_the_pole_scale(self):
        table = pd.DataFrame(
            {
                "method": ["probe", "probe", "mean_diff"],
                "layer": [1, 2, 1],
                "component": ["residual"] * 3,
                "val_effect_size": [1.5, -0.5, 0.2],
                "val_accuracy": [0.9, 0.6, 0.7],
            }
        )
        signed = metrics_heatmap(table, "val_effect_size").data[0]
        assert self._top_is_red(signed) and signed.zmid == 0
        assert (signed.zmin, signed.zmax) == (-1.5, 1.5)
        assert signed.colorbar.title.text == pole_legend("validation effect size")
        assert "" in [t for row in signed.text for t in row]  # the missing cell is blank
        accuracy = metrics_heatmap(table, "val_accuracy").data[0]
        assert (accuracy.zmin, accuracy.zmax) == (0.5, 1.0)

    def test_replace_figure_leaves_nothing_of_the_old_figure_on_the_page(self, mirrored):
        widget = go.FigureWidget()
        old = cosine_heatmap(["a", "b"], np.eye(2), groups=[1, 2])
        old.add_annotation(text="old note", x=0, y=0)
        replace_figure(widget, old)
        new = go.Figure(go.Bar(y=[1, 2]), layout={"title": "bars"})
        replace_figure(widget, new)
        assert widget._mirror.state() == _normalised(new.to_plotly_json())
