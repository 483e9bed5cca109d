"""TraitDynamics shows exactly what trait_matrix computes, for every control setting.

Ground truth: :func:`trait_lab.dynamics.matrix.trait_matrix` called with the same arguments, and for
the massive-dim record an independent numpy computation on the activations it was built from.
Records come from tiny random models (``trait_lab.testing.tiny_model``).
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from traitlets import TraitError

from tests.helpers import CALIBRATION, PROMPTS, html_title, make_tokenizer
from trait_lab.dynamics.cleaning import CLEAN_LABELS, CLEAN_OPTIONS, MODES, dims_to_clean
from trait_lab.dynamics.inference import project_prompts
from trait_lab.dynamics.matrix import trait_matrix
from trait_lab.dynamics.records import RecordError, build_record
from trait_lab.testing import tiny_model
from widgets.common.export import find_chromium
from widgets.dynamics.figures import MAX_WIDTH, dynamics_figure, read, record_label, token_labels
from widgets.dynamics.view import TraitDynamics

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup():
    gen = torch.Generator().manual_seed(7)
    traits = {
        "t": {layer: torch.randn(32, generator=gen) for layer in (0, 1, 2)},
        "u": {layer: torch.randn(32, generator=gen) for layer in (1, 2)},
    }
    return tiny_model(), make_tokenizer(), traits


@pytest.fixture(scope="module")
def records(setup):
    model, tok, traits = setup
    return project_prompts(model, tok, PROMPTS, traits, CALIBRATION, max_new_tokens=6)


@pytest.fixture(scope="module")
def massive(setup):
    """A record whose dim 3 (cleaned by "top5" and by "all") is huge on every token,
    with the activations and vector it was built from."""
    tok = setup[1]
    gen = torch.Generator().manual_seed(11)
    prompt_ids, response_ids = [1, 11, 12, 13], [18, 19, 20]
    n = len(prompt_ids) + len(response_ids)
    acts = {layer: torch.randn(n, 32, generator=gen, dtype=torch.float64) for layer in (0, 1, 2)}
    for h in acts.values():
        h[:, 3] = 400.0
    vector = torch.randn(32, generator=gen, dtype=torch.float64)
    vector[3] = 2.0
    traits = {"t": {layer: [(1.0, vector)] for layer in acts}}
    rec = build_record(
        "hello how are", "you fine thanks", prompt_ids, response_ids, tok, acts, traits, CALIBRATION
    )
    return rec, acts, vector


def part(view: TraitDynamics, css: str):
    """The one child of the view with CSS class ``css``."""
    (found,) = [c for c in view.children if css in c._dom_classes]
    return found


def z(view: TraitDynamics) -> np.ndarray:
    return np.array(view.figure.data[0].z, dtype=float)


def expect_layers_view(view: TraitDynamics, rec, trait: str, **kwargs) -> None:
    """The heatmap's rows, z and hover norms equal trait_matrix(rec, trait, **kwargs)."""
    layers, values, norms = trait_matrix(rec, trait, **kwargs)
    (trace,) = view.figure.data
    assert isinstance(trace, go.Heatmap)
    assert list(trace.y) == [f"L{layer}" for layer in layers]
    np.testing.assert_array_equal(trace.z, values)
    np.testing.assert_array_equal(trace.customdata, norms)
    assert list(trace.x) == token_labels(rec.tokens)
    shown = view.shown()
    assert shown.rows == list(trace.y)
    np.testing.assert_array_equal(shown.values, values)
    np.testing.assert_array_equal(shown.norms, norms)


class TestMatchesTraitMatrix:
    @pytest.mark.parametrize("mode", MODES)
    @pytest.mark.parametrize("clean", CLEAN_OPTIONS)
    def test_every_smoothing_and_centring(self, records, clean: str, mode: str) -> None:
        rec = records[0]
        view = TraitDynamics(records)
        view.clean.value, view.mode.value = clean, mode
        for smoothing, centre in itertools.product((1, 3, 5, 7, 9), (False, True)):
            view.smoothing.value, view.centre.value = smoothing, centre
            expect_layers_view(
                view, rec, "t", clean=clean, mode=mode, smoothing=smoothing, centre=centre
            )

    @pytest.mark.parametrize("clean", CLEAN_OPTIONS)
    def test_layer_subsets(self, records, clean: str) -> None:
        view = TraitDynamics(records, clean=clean)
        view.smoothing.value = 3
        for subset in [(0,), (1, 2), (0, 2), (0, 1, 2)]:
            view.layers.value = subset
            expect_layers_view(view, records[0], "t", clean=clean, smoothing=3, layers=subset)

    def test_each_control_changes_the_figure_in_place(self, records) -> None:
        view = TraitDynamics(records)
        figure, wrapper = view.figure, part(view, "tl-dynamics-figure")
        settings: dict = {}
        steps = [
            ("mode", "raw"),
            ("clean", "all"),
            ("smoothing", 5),
            ("centre", True),
            ("mode", "normalized"),
            ("clean", "top5"),
        ]
        for name, value in steps:
            before = z(view)
            getattr(view, name).value = value
            settings[name] = value
            assert not np.allclose(z(view), before), f"setting {name}={value!r} changed nothing"
            expect_layers_view(view, records[0], "t", **settings)
        view.trait.value = "u"
        expect_layers_view(view, records[0], "u", **settings)
        assert view.layers.options == (("L1", 1), ("L2", 2))
        view.record.value = 1
        expect_layers_view(view, records[1], "u", **settings)
        assert view.figure is figure and figure in wrapper.children
        assert "u · normalized · Top 5, 3+ layers" in figure.layout.title.text

    def test_even_smoothing_snaps_to_the_next_odd_window(self, records) -> None:
        view = TraitDynamics(records)
        view.smoothing.value = 4
        assert view.smoothing.value == 5
        expect_layers_view(view, records[0], "t", smoothing=5)

    def test_records_from_paths(self, records, tmp_path) -> None:
        paths = [rec.save(tmp_path / f"{i}.json") for i, rec in enumerate(records)]
        view = TraitDynamics([str(paths[0]), paths[1]], mode="raw", clean="all")
        view.record.value = 1
        expect_layers_view(view, records[1], "t", mode="raw", clean="all")


def test_cleaning_a_massive_dim_changes_the_figure(massive) -> None:
    rec, acts, vector = massive
    view = TraitDynamics([rec])
    assert view.clean.value == "none" and view.clean.label == "No cleaning"
    raw = z(view)
    unit = (vector / vector.norm()).numpy()
    np.testing.assert_allclose(raw, unit[3], atol=0.02)  # uncleaned, dim 3 is all one sees
    for clean in ("top5", "all"):
        view.clean.value = clean
        cleaned = z(view)
        assert np.abs(cleaned - raw).mean() > 0.1
        expect_layers_view(view, rec, "t", clean=clean)
        for row, layer in enumerate((0, 1, 2)):  # independent: zero the dims, then cosine
            h = acts[layer].numpy().copy()
            h[:, dims_to_clean(CALIBRATION, clean)] = 0
            np.testing.assert_allclose(cleaned[row], h @ unit / np.linalg.norm(h, axis=-1))
    view.clean.value = "none"
    np.testing.assert_array_equal(z(view), raw)


def test_clean_dropdown_shows_labels_and_maps_them_to_keys(records) -> None:
    view = TraitDynamics(records)
    assert view.clean.options == tuple((CLEAN_LABELS[key], key) for key in CLEAN_OPTIONS)
    assert view.clean.options == (
        ("No cleaning", "none"),
        ("Top 5, 3+ layers", "top5"),
        ("All candidates", "all"),
    )
    for key, label in CLEAN_LABELS.items():
        view.clean.label = label  # what a click in the browser does
        assert view.clean.value == key
        expect_layers_view(view, records[0], "t", clean=key)
        assert f" · {label}" in view.figure.layout.title.text
    view = TraitDynamics(records, clean="top5")
    assert view.clean.label == "Top 5, 3+ layers"
    with pytest.raises(TraitError):
        view.clean.value = "Top 5, 3+ layers"  # the attribute takes keys


class TestLayout:
    @pytest.mark.parametrize("kind", ["tokens × layers", "tokens × traits", "lines"])
    def test_boundary_line_at_boundary_minus_half(self, records, kind: str) -> None:
        view = TraitDynamics(records, view=kind)
        (line,) = view.figure.layout.shapes
        assert line.x0 == line.x1 == records[0].boundary - 0.5
        assert line.line.dash == "dash" and line.yref == "paper"
        (note,) = view.figure.layout.annotations
        assert note.text == "response →" and note.x == records[0].boundary - 0.5

    def test_tokens_by_traits_rows_are_trait_matrix_rows(self, records) -> None:
        rec = records[0]
        view = TraitDynamics(records, view="tokens × traits", mode="normalized")
        view.clean.value = "top5"
        assert view.layer.options == (("L0", 0), ("L1", 1), ("L2", 2))
        for layer, names in [(1, ["t", "u"]), (0, ["t"]), (2, ["t", "u"])]:
            view.layer.value = layer
            shown = view.shown()
            assert shown.rows == names
            for row, name in enumerate(names):
                _, values, norms = trait_matrix(
                    rec, name, clean="top5", mode="normalized", layers=[layer]
                )
                np.testing.assert_array_equal(shown.values[row], values[0])
                np.testing.assert_array_equal(shown.norms[row], norms[0])
            assert f"L{layer}" in view.figure.layout.title.text

    def test_lines_one_trace_per_selected_layer(self, records) -> None:
        rec = records[0]
        view = TraitDynamics(records, view="lines", clean="all")
        view.layers.value = (0, 2)
        _, values, norms = trait_matrix(rec, "t", clean="all", layers=[0, 2])
        assert [t.name for t in view.figure.data] == ["L0", "L2"]
        for trace, row, norm in zip(view.figure.data, values, norms, strict=True):
            assert isinstance(trace, go.Scatter)
            np.testing.assert_array_equal(trace.x, np.arange(rec.n_tokens))
            np.testing.assert_array_equal(trace.y, row)
            np.testing.assert_array_equal(trace.customdata, norm)
            assert list(trace.text) == token_labels(rec.tokens)
        assert list(view.figure.layout.xaxis.ticktext) == token_labels(rec.tokens)
        view.view.value = "tokens × layers"  # back to one heatmap with all selected layers
        expect_layers_view(view, rec, "t", clean="all", layers=[0, 2])

    def test_static_figure_is_what_the_view_draws(self, records) -> None:
        options = {"clean": "all", "mode": "raw", "smoothing": 3}
        fig = dynamics_figure(records[1], view="tokens × traits", layer=2, **options)
        view = TraitDynamics(records, view="tokens × traits", **options)
        view.record.value, view.layer.value, view.smoothing.value = 1, 2, 3
        shown, static = view.shown(), read(fig)
        assert static.rows == shown.rows == ["t", "u"]
        np.testing.assert_array_equal(static.values, shown.values)
        _, values, _ = trait_matrix(records[1], "u", layers=[2], **options)
        np.testing.assert_array_equal(static.values[1], values[0])
        with pytest.raises(ValueError, match=r"needs trait=; traits: \['t', 'u'\]"):
            dynamics_figure(records[1], view="lines")

    def test_controls_have_css_classes(self, records) -> None:
        view = TraitDynamics(records)
        for name in (
            "record",
            "trait",
            "view",
            "clean",
            "mode",
            "smoothing",
            "centre",
            "layers",
            "layer",
        ):
            assert f"tl-{name}" in getattr(view, name)._dom_classes
        assert view.figure in part(view, "tl-dynamics-figure").children
        assert repr(view).startswith("TraitDynamics(")  # what a notebook's text/plain shows
        assert view.mode.value == "cosine" and view.clean.value == "none"

    def test_labels(self) -> None:
        assert token_labels(["<|im_start|>", "Ġhi", "Ċ"]) == [
            "0:&lt;|im_start|&gt;",
            "1: hi",
            "2:↵",
        ]
        chat = "<|im_start|>system\nBe kind<|im_end|>\n<|im_start|>user\nHi  there<|im_end|>\n"
        assert record_label(type("R", (), {"prompt": chat + "<|im_start|>assistant\n"})) == (
            "Hi there"
        )


class TestLive:
    def test_run_appends_the_project_prompts_record(self, setup, records) -> None:
        model, tok, traits = setup
        view = TraitDynamics.live(
            model, tok, traits, CALIBRATION, records=records[:1], max_new_tokens=4
        )
        assert "tl-prompt" in view.prompt._dom_classes and "tl-run" in view.run_button._dom_classes
        view.prompt.value = "the cat sat"
        view.run_button.click()
        (expected,) = project_prompts(
            model, tok, ["the cat sat"], traits, CALIBRATION, max_new_tokens=4
        )
        assert len(view.records) == 2 and view.record.value == 1
        assert view.records[1] == expected
        expect_layers_view(view, expected, "t")
        assert "error" not in view.status.value and "failed" not in view.status.value

    def test_run_errors_go_to_the_status_line(self, setup, records) -> None:
        model, tok, _ = setup
        bad = {"t": {7: torch.ones(32)}}  # the tiny model has 3 layers
        view = TraitDynamics.live(model, tok, bad, CALIBRATION, records=records[:1])
        before = z(view)
        view.run_button.click()
        assert "type a prompt" in view.status.value and len(view.records) == 1
        view.prompt.value = "hello"
        assert view.run() is None
        assert "run failed" in view.status.value and len(view.records) == 1
        np.testing.assert_array_equal(z(view), before)

    def test_live_without_records_starts_empty(self, setup) -> None:
        model, tok, traits = setup
        view = TraitDynamics.live(model, tok, traits, CALIBRATION, max_new_tokens=2)
        assert view.records == [] and view.figure.data == ()
        view.run("hello world")
        expect_layers_view(view, view.records[0], "t")


class TestExport:
    def test_html(self, records, tmp_path) -> None:
        view = TraitDynamics(records)
        view.export_bar.filename.value = str(tmp_path / "dynamics")
        view.export_bar.format.value = "html"
        path = view.export_bar.save()
        assert path == tmp_path / "dynamics.html" and path.exists()
        last = records[0].n_tokens - 1
        assert html_title(path.read_text()) == (
            f"t · cosine · No cleaning · layers L0, L1, L2 · tokens 0–{last}"
            "<br><sup>prompt “hello how are you”</sup>"
        )

    @pytest.mark.skipif(find_chromium() is None, reason="static export needs chromium")
    def test_png(self, records, tmp_path) -> None:
        view = TraitDynamics(records)
        view.export_bar.filename.value = str(tmp_path / "dynamics")
        path = view.export_bar.save()
        assert path == tmp_path / "dynamics.png"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class TestBadInput:
    def test_no_records(self) -> None:
        with pytest.raises(ValueError, match=r"no records to show; pass TraitDynamics\(\[record"):
            TraitDynamics([])

    def test_unknown_trait(self, records) -> None:
        with pytest.raises(ValueError, match=r"unknown trait 'nope'; choose one of \['t', 'u'\]"):
            TraitDynamics(records, trait="nope")

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"clean": "Top 5"}, r"unknown clean option 'Top 5'; choose one of \['none', 'top5'"),
            ({"clean": "All candidates"}, r"'All candidates' is the label.*clean option 'all'"),
            ({"mode": "cos"}, r"unknown mode 'cos'; choose one of \['raw', 'normalized'"),
            ({"view": "grid"}, r"unknown view 'grid'; choose one of \['tokens × layers'"),
            ({"smoothing": 4}, r"unknown smoothing window 4; choose one of \[1, 3, 5, 7, 9\]"),
        ],
    )
    def test_unknown_options(self, records, kwargs, message) -> None:
        with pytest.raises(ValueError, match=message):
            TraitDynamics(records, **kwargs)

    def test_bad_records(self, records, tmp_path) -> None:
        with pytest.raises(ValueError, match=r"records\[1\] is a dict; pass ProjectionRecord"):
            TraitDynamics([records[0], {"prompt": "x"}])
        with pytest.raises(FileNotFoundError, match="no projection record at"):
            TraitDynamics([tmp_path / "missing.json"])
        broken = tmp_path / "broken.json"
        broken.write_text(json.dumps(records[0].to_dict() | {"boundary": -1}))
        with pytest.raises(RecordError, match=r"broken\.json"):
            TraitDynamics([broken])

    def test_half_live_and_run_without_model(self, setup, records) -> None:
        model, tok, _ = setup
        with pytest.raises(ValueError, match=r"\['traits', 'calibration'\] missing"):
            TraitDynamics(records, model=model, tokenizer=tok)
        with pytest.raises(ValueError, match=r"TraitDynamics.live\(model"):
            TraitDynamics(records).run("hi")

    def test_no_layers_selected(self, records) -> None:
        view = TraitDynamics(records)
        before = z(view)
        view.layers.value = ()
        assert "no layers selected" in view.status.value
        np.testing.assert_array_equal(z(view), before)
        view.layers.value = (1,)
        assert view.status.value == ""
        expect_layers_view(view, records[0], "t", layers=[1])


# --- issue 15: colour convention, fit, layer rows, skip, NaN-free layouts, new panels -----------


def long_record(n: int = 120, boundary: int = 20, seed: int = 3):
    """A synthetic record of ``n`` tokens at 6 layers whose first token is huge (a sink)."""
    gen = torch.Generator().manual_seed(seed)
    tok = type(
        "Tok", (), {"convert_ids_to_tokens": staticmethod(lambda ids: [f"w{i}" for i in ids])}
    )
    layers = (0, 2, 4, 6, 8, 10)
    acts = {layer: torch.randn(n, 32, generator=gen, dtype=torch.float64) for layer in layers}
    for h in acts.values():
        h[0] *= 200.0
    traits = {
        "t": {layer: [(1.0, torch.randn(32, generator=gen))] for layer in layers},
        "u": {layer: [(1.0, torch.randn(32, generator=gen))] for layer in layers},
    }
    ids = list(range(1, n + 1))
    return build_record(
        "a long prompt",
        "a long reply",
        ids[:boundary],
        ids[boundary:],
        tok,
        acts,
        traits,
        CALIBRATION,
    )


def nan_paths(obj, path: str = "") -> list[str]:
    """Where a NaN (or infinity) sits in a plotly JSON dict (None is allowed)."""
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in nan_paths(v, f"{path}.{k}")]
    if isinstance(obj, list | tuple):
        return [p for i, v in enumerate(obj) for p in nan_paths(v, f"{path}[{i}]")]
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "f" and not np.isfinite(obj).all():
            return [path]
        if obj.dtype == object:
            return nan_paths(obj.tolist(), path)
        return []
    if isinstance(obj, float) and not np.isfinite(obj):
        return [path]
    return []


def plain(fig) -> dict:
    """A figure as JSON-comparable data, trace uids dropped."""
    data = json.loads(fig.to_json())
    for trace in data["data"]:
        trace.pop("uid", None)
    return data


class TestIssue15:
    def test_red_means_positive_and_the_colour_bar_says_so(self, records) -> None:
        from plotly.colors import get_colorscale

        view = TraitDynamics(records)
        trace = view.figure.data[0]
        assert [c for _, c in trace.colorscale] == [c for _, c in get_colorscale("RdBu_r")]
        low, high = trace.colorscale[0][1], trace.colorscale[-1][1]
        red = lambda c: int(c[4:-1].split(",")[0]) > int(c[4:-1].split(",")[2])  # noqa: E731
        assert red(high) and not red(low)
        assert trace.zmid == 0 and trace.zmin == -trace.zmax
        legend = trace.colorbar.title.text.replace("<br>", " ")
        assert legend == "cosine (red = positive pole, blue = negative)"

    def test_long_record_fits_the_output_area_and_shows_every_layer(self) -> None:
        rec = long_record()
        view = TraitDynamics([rec])
        assert view.figure.layout.width <= MAX_WIDTH <= 940
        assert view.details.layout.width == view.figure.layout.width
        assert view.layers.rows == len(view.layers.options) == 6

    def test_skip_first_drops_the_sink_from_values_and_normalisation(self) -> None:
        rec = long_record()
        view = TraitDynamics([rec], mode="normalized")
        full = z(view)
        view.skip.value = 1
        skipped = z(view)
        assert skipped.shape == (6, rec.n_tokens - 1)
        assert np.abs(skipped).max() < np.abs(full).max() / 5  # the range is no longer washed out
        expect_x = token_labels(rec.tokens[1:], start=1)
        assert list(view.figure.data[0].x) == expect_x
        for row, layer in enumerate(sorted(rec.projections["t"])):  # independent: numpy
            s = np.array(rec.projections["t"][layer])[1:]
            n = np.array(rec.norms[layer])[1:]
            np.testing.assert_allclose(skipped[row], s / n[rec.boundary - 1 :].mean())
        (line,) = view.figure.layout.shapes
        assert line.x0 == rec.boundary - 1 - 0.5
        assert "tokens 1–119 (first 1 skipped)" in view.figure.layout.title.text

    def test_no_nan_anywhere_and_a_sequence_equals_a_fresh_figure(self) -> None:
        rec = long_record()
        view = TraitDynamics([rec, long_record(seed=4)])
        steps = [
            ("view", "lines"),
            ("skip", 3),
            ("view", "tokens × traits"),
            ("layer", 4),
            ("mode", "raw"),
            ("view", "lines"),
            ("view", "tokens × layers"),
            ("clean", "all"),
            ("record", 1),
            ("layers", (2, 6)),
            ("smoothing", 3),
        ]
        for name, value in steps:
            getattr(view, name).value = value
            for fig in (view.figure, view.details):
                assert nan_paths(fig.to_plotly_json()) == [], name
        fresh = TraitDynamics(
            [rec, long_record(seed=4)], mode="raw", clean="all", smoothing=3, skip=3
        )
        fresh.record.value, fresh.layers.value, fresh.layer.value = 1, (2, 6), 4
        assert plain(view.figure) == plain(fresh.figure)
        assert plain(view.details) == plain(fresh.details)

    def test_velocity_and_magnitude_panels(self, records) -> None:
        rec = records[1]
        view = TraitDynamics(records, skip=1)
        view.record.value = 1
        values = z(view)
        velocity = [t for t in view.details.data if t.name.startswith("Δ")]
        magnitude = [t for t in view.details.data if t.name.startswith("‖h‖")]
        assert [t.name for t in velocity] == ["Δ L0", "Δ L1", "Δ L2"]
        for trace, row in zip(velocity, values, strict=True):
            np.testing.assert_allclose(trace.y, [row[i + 1] - row[i] for i in range(len(row) - 1)])
            np.testing.assert_array_equal(trace.x, np.arange(1, len(row)))
        for trace, layer in zip(magnitude, (0, 1, 2), strict=True):
            np.testing.assert_allclose(trace.y, np.array(rec.norms[layer])[1:])
        view.view.value = "tokens × traits"
        assert [t.name for t in view.details.data] == ["Δ t", "‖h‖ L0"]  # only t has L0
        view.layer.value = 1
        assert [t.name for t in view.details.data] == ["Δ t", "Δ u", "‖h‖ L1"]

    def test_titles_name_prompt_and_sampling(self, records) -> None:
        view = TraitDynamics(records, sampling=["greedy", "temperature 0.8, seed 1"])
        assert "prompt “hello how are you” · greedy" in view.figure.layout.title.text
        view.record.value = 1
        assert "temperature 0.8, seed 1" in view.figure.layout.title.text
        with pytest.raises(ValueError, match="sampling has 1 entries for 2 records"):
            TraitDynamics(records, sampling=["greedy"])


class TestAnalyses:
    def test_top_spans_table_lists_the_best_windows(self, records) -> None:
        view = TraitDynamics(records)
        view.analyses.selected_index = 0
        view.analyses.span_width.value = 2
        view.analyses.span_layer.value = 1
        best = []
        for i, rec in enumerate(records):  # independent: every response window, numpy
            x = np.array(rec.projections["t"][1]) / np.array(rec.norms[1])
            for s in range(rec.boundary, rec.n_tokens - 1):
                best.append((x[s : s + 2].mean(), i, s))
        top = max(best)
        first_row = view.analyses.spans.value.split("<tr>")[2]
        assert f"<td>{top[1]}: " in first_row and f"{top[2]}–{top[2] + 1}" in first_row
        assert f"{top[0]:+.3f}" in first_row

    def test_difference_of_two_records(self, records) -> None:
        view = TraitDynamics(records, compare=(1, 0), mode="raw")
        view.analyses.selected_index = 1
        a, b = records[1], records[0]
        (trace,) = view.analyses.difference.data
        before = min(a.boundary, b.boundary)
        after = min(a.n_tokens - a.boundary, b.n_tokens - b.boundary)
        for row, layer in enumerate((0, 1, 2)):
            x, y = np.array(a.projections["t"][layer]), np.array(b.projections["t"][layer])
            expected = [x[a.boundary + i] - y[b.boundary + i] for i in range(-before, after)]
            np.testing.assert_allclose(trace.z[row], expected)
        assert trace.colorscale == view.figure.data[0].colorscale
        view.analyses.diff_b.value = 1
        assert "same record" in view.analyses.status.value

    def test_correlation_matrix_equals_numpy_corrcoef(self, records) -> None:
        view = TraitDynamics(records)
        view.analyses.selected_index = 2
        view.analyses.corr_layer.value = 2
        (trace,) = view.analyses.correlation.data
        pooled = [
            np.stack([np.array(r.projections[t][2]) / np.array(r.norms[2]) for t in ("t", "u")])[
                :, r.boundary :
            ]
            for r in records
        ]
        np.testing.assert_allclose(trace.z, np.corrcoef(np.concatenate(pooled, 1)), atol=1e-12)
        assert (trace.zmin, trace.zmax) == (-1.0, 1.0)
        assert nan_paths(view.analyses.correlation.to_plotly_json()) == []
