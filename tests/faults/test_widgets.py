"""Widgets refuse arguments they could only show wrongly, with errors that say what to do.

Each fault is a constructor (or export, or chat formatting) call with one bad argument; the
error must be ours, of the promised type, and name the value and the fix (``clear_error``).
Accepted edge values are checked against the number the library computes on its own.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from tests.faults.checks import clear_error
from tests.helpers import CALIBRATION
from trait_lab.activations import coefficient_for
from trait_lab.core import VectorResult
from trait_lab.generation.backends import LocalBackend
from trait_lab.io.vectors import save_vector
from trait_lab.prompts.formatting import ROLES, format_prompt, to_messages
from trait_lab.testing import tiny_tokenizer
from widgets.common.export import ExportBar, export_figure
from widgets.common.runner import LatestRunner
from widgets.dynamics.view import TraitDynamics
from widgets.geometry.explorer import GeometryExplorer
from widgets.steering.panel import SteeringPanel

pytestmark = pytest.mark.usefixtures("one_thread")

HIDDEN, LAYERS = 32, 3  # the tiny model's width and depth


@pytest.fixture(scope="module")
def backend(model: Any) -> LocalBackend:
    return LocalBackend(model, tokenizer=None, use_chat_template=False)


def _panel(backend: LocalBackend, vectors: Any = None, **kwargs: Any) -> SteeringPanel:
    kwargs.setdefault("norms", 10.0)
    vectors = {"t": (torch.ones(HIDDEN), 1)} if vectors is None else vectors
    panel = SteeringPanel(backend, vectors, autorun=False, **kwargs)
    panel.close()
    return panel


def _ensemble(weight: float) -> dict[str, Any]:
    return {"e": [(torch.ones(HIDDEN), 1, weight)]}


# ----- case 1: the panel's numbers -------------------------------------------------------------

PANEL_FAULTS = [
    ("norm zero", {"norms": 0}, ["norms=0", "positive finite", "typical_norms"]),
    ("norm nan", {"norms": math.nan}, ["norms=nan", "positive finite", "norms=none"]),
    ("norm negative", {"norms": -1.0}, ["norms=-1.0", "positive finite"]),
    ("norm inf", {"norms": math.inf}, ["norms=inf", "positive finite"]),
    ("norm nan at a layer", {"norms": {1: math.nan}}, ["norms[1]=nan", "typical_norms"]),
    ("norm missing", {"norms": {0: 1.0}}, ["no value at layer 1", "covers layers [0]", "add it"]),
    ("norm key", {"norms": {7: 1.0}}, ["norms key 7", "0..2", "pass a layer"]),
    ("value above", {"value": 5.0}, ["value=5.0", "-1.0 to 1.0", "pass a starting fraction"]),
    ("value nan", {"value": math.nan}, ["value=nan", "-1.0 to 1.0"]),
    (
        "value below ablate",
        {"value": {"t": -0.5}, "mode": "ablate"},
        ["value['t']=-0.5", "0.0 to 1.0", "'ablate'"],
    ),
    ("tokens zero", {"max_new_tokens": 0}, ["max_new_tokens=0", "from 4 to 256"]),
    ("tokens many", {"max_new_tokens": 1000}, ["max_new_tokens=1000", "LocalBackend.generate"]),
    ("debounce nan", {"debounce": math.nan}, ["got nan", "0.15"]),
]


@pytest.mark.parametrize(("case", "kwargs", "mentions"), PANEL_FAULTS, ids=lambda x: str(x))
def test_panel_refuses_numbers_it_would_show_wrongly(backend, case, kwargs, mentions) -> None:
    clear_error(ValueError, _panel, backend, mentions=mentions, **kwargs)


@pytest.mark.parametrize("weight", [math.nan, math.inf, -math.inf])
def test_panel_refuses_a_non_finite_ensemble_weight(backend, weight) -> None:
    shown = repr(weight)
    clear_error(
        ValueError, _panel, backend, _ensemble(weight), mentions=[f"weight={shown}", "finite"]
    )


def test_panel_refuses_a_layer_the_vectors_do_not_have(backend) -> None:
    per_layer = {"t": {1: torch.ones(HIDDEN), 2: torch.ones(HIDDEN)}}
    clear_error(
        ValueError, _panel, backend, per_layer, layer=0, mentions=["layer=0", "[1, 2]", "unset"]
    )
    clear_error(ValueError, _panel, backend, per_layer, layer=99, mentions=["99", "0..2"])


def test_panel_refuses_a_recommended_start_outside_the_slider(backend, tmp_path) -> None:
    path = tmp_path / "layer_1.safetensors"
    save_vector(torch.ones(HIDDEN), path)
    result = VectorResult(
        layer=1,
        component="residual",
        position="response[:]",
        method="probe",
        source="steering",
        delta=20.0,
        coherence=80.0,
        coefficient=30.0,
        path=path,
    )
    clear_error(
        ValueError,
        _panel,
        backend,
        {"a": result},
        mentions=["recommends coefficient 30", "3 × the norm 10", "value={'a': ...}"],
    )
    started = _panel(backend, {"a": result}, value={"a": 0.25})  # a value given wins
    assert started.sliders["a"].value == 0.25


def test_panel_keeps_edge_values_exactly(backend) -> None:
    """The range's ends are accepted, unclamped: the spec carries fraction × norm."""
    norms = {layer: 10.0 * (layer + 1) for layer in range(LAYERS)}
    panel = _panel(backend, value=-1.0, norms=norms)
    (spec,) = panel.specs()
    assert panel.sliders["t"].value == -1.0
    assert spec.coefficient == coefficient_for(norms, 1, -1.0) == -20.0
    ensemble = _panel(backend, _ensemble(-0.5), value=1.0, norms=2.0)
    assert [s.coefficient for s in ensemble.specs()] == [-1.0]


# ----- case 2: complex vectors -------------------------------------------------------------------


def _complex(numpy: bool = False) -> Any:
    v = torch.ones(HIDDEN, dtype=torch.complex64) * (1 + 1j)
    return v.numpy() if numpy else v


@pytest.mark.parametrize("numpy", [False, True], ids=["torch", "numpy"])
def test_panel_refuses_complex_vectors(backend, numpy) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "discards the imaginary part" warning either
        for vectors in (
            {"t": (_complex(numpy), 1)},
            {"t": {1: _complex(numpy)}},
            {"t": [(_complex(numpy), 1, 1.0)]},
        ):
            clear_error(TypeError, _panel, backend, vectors, mentions=["vectors['t']", "complex"])


def test_geometry_explorer_refuses_complex_vectors() -> None:
    gen = torch.Generator().manual_seed(0)
    vectors: dict[tuple[str, int, str], Any] = {
        (t, 4, "probe"): torch.randn(16, generator=gen) for t in ("a", "b", "c")
    }
    vectors[("a", 4, "probe")] = torch.ones(16, dtype=torch.complex64)
    clear_error(
        TypeError, GeometryExplorer, vectors, mentions=["('a', 4, 'probe')", "complex", "real"]
    )


# ----- case 3: chat roles ----------------------------------------------------------------------

TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


@pytest.fixture
def chat_tokenizer() -> Any:
    tok = tiny_tokenizer()
    tok.chat_template = TEMPLATE
    return tok


@pytest.mark.parametrize("role", ["tool", "hacker", "User", None, 3])
def test_unknown_roles_are_refused(chat_tokenizer, role) -> None:
    conversation = [{"role": role, "content": "hi"}, {"role": "user", "content": "and?"}]
    mentions = ["message 0", f"role {role!r}", "system, user, assistant", "rename it"]
    clear_error(ValueError, to_messages, conversation, mentions=mentions)
    clear_error(ValueError, format_prompt, chat_tokenizer, conversation, mentions=mentions)


def test_content_must_be_text(chat_tokenizer) -> None:
    conversation = [{"role": "user", "content": None}]
    clear_error(TypeError, format_prompt, chat_tokenizer, conversation, mentions=["None", "string"])


def test_known_roles_render_as_the_template_says(chat_tokenizer) -> None:
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Bye"},
    ]
    assert ROLES == ("system", "user", "assistant")
    expected = "<|system|>Be brief.\n<|user|>Hi\n<|assistant|>Hello\n<|user|>Bye\n<|assistant|>"
    assert format_prompt(chat_tokenizer, conversation) == expected


# ----- case 4: TraitDynamics.live vectors --------------------------------------------------------


def _live(model: Any, traits: Any, **kwargs: Any) -> TraitDynamics:
    return TraitDynamics.live(model, tiny_tokenizer(), traits, CALIBRATION, **kwargs)


@pytest.mark.parametrize(
    ("vector", "exc", "mentions"),
    [
        (torch.ones(40), ValueError, ["trait 't' layer 1", "width 40", "hidden size is 32"]),
        (torch.ones(2, HIDDEN), ValueError, ["trait 't' layer 1", "width 64", "shape [32]"]),
        (torch.full((HIDDEN,), math.nan), ValueError, ["traits['t'][1]", "nan", "drop"]),
        (torch.zeros(HIDDEN), ValueError, ["traits['t'][1]", "all zeros", "non-zero"]),
        (_complex(), TypeError, ["traits['t'][1]", "complex", "real"]),
    ],
    ids=["wide", "2-d", "nan", "zero", "complex"],
)
def test_live_refuses_bad_vectors_before_generating(model, vector, exc, mentions) -> None:
    forwards: list[int] = []
    handle = model.register_forward_pre_hook(lambda *_: forwards.append(1))
    try:
        clear_error(exc, _live, model, {"t": {1: vector}}, mentions=mentions)
    finally:
        handle.remove()
    assert forwards == []


def test_live_refuses_a_non_positive_length(model) -> None:
    traits = {"t": {1: torch.ones(HIDDEN)}}
    clear_error(
        ValueError, _live, model, traits, max_new_tokens=0, mentions=["max_new_tokens=0", ">= 1"]
    )


# ----- case 5: export paths --------------------------------------------------------------------


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_export_to_a_path_whose_parent_is_a_file(tmp_path) -> None:
    (tmp_path / "notes").write_text("x")
    target = tmp_path / "notes" / "fig.html"
    exc = clear_error(
        NotADirectoryError,
        export_figure,
        go.Figure(),
        target,
        mentions=[str(target), "is a file, not a folder", "another folder"],
    )
    assert ".tmp" not in str(exc)
    assert _tree(tmp_path) == ["notes"]


def test_export_over_a_folder(tmp_path) -> None:
    (tmp_path / "fig.html").mkdir()
    exc = clear_error(
        IsADirectoryError,
        export_figure,
        go.Figure(),
        tmp_path / "fig.html",
        mentions=[str(tmp_path / "fig.html"), "is a folder"],
    )
    assert ".tmp" not in str(exc)
    assert _tree(tmp_path) == ["fig.html"]


@pytest.mark.parametrize(
    ("name", "mentions"),
    [
        ("fig.txt", ["fig.txt", "unknown extension '.txt'", ".png, .svg, .pdf, .html"]),
        ("fig", ["fig'", "unknown extension ''", "fig.png"]),
        (".html", ["'.html'", "only an extension", "figure.html"]),
        ("", ["''", "empty", "figures/figure.png"]),
        ("   ", ["'   '", "empty"]),
    ],
    ids=["txt", "none", "only-extension", "empty", "blank"],
)
def test_export_refuses_paths_that_name_no_figure_file(tmp_path, monkeypatch, name, mentions):
    monkeypatch.chdir(tmp_path)
    clear_error(ValueError, export_figure, go.Figure(), name, mentions=mentions)
    assert _tree(tmp_path) == []


def test_export_to_a_folder_path(tmp_path) -> None:
    clear_error(
        ValueError,
        export_figure,
        go.Figure(),
        tmp_path,
        mentions=[str(tmp_path), "names a folder", "figure.png"],
    )
    assert _tree(tmp_path) == []


def test_export_bar_reports_bad_paths_in_its_status(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes").write_text("x")
    bar = ExportBar(lambda: go.Figure(), "notes/fig")
    bar.format.value = "html"
    assert bar.save() is None
    assert "is a file, not a folder" in bar.status.value and ".tmp" not in bar.status.value
    for stem in ("", "  ", "figures/"):
        bar.filename.value = stem
        assert bar.save() is None
        assert "file name is empty" in bar.status.value and "save as" in bar.status.value
    assert _tree(tmp_path) == ["notes"]
    bar.filename.value = "out/fig"
    assert bar.save() == Path("out/fig.html") and (tmp_path / "out" / "fig.html").is_file()


# ----- case 6: other constructor arguments -----------------------------------------------------


@pytest.mark.parametrize("name", ["", "  ", 1, None])
def test_panel_vector_names_must_be_text(backend, name) -> None:
    clear_error(
        ValueError,
        _panel,
        backend,
        {name: (torch.ones(HIDDEN), 1)},
        mentions=[f"name {name!r}", "non-empty string", "rename"],
    )


@pytest.mark.parametrize("debounce", [math.nan, math.inf, -1.0, "0.1"])
def test_runner_refuses_a_debounce_that_never_ends(debounce) -> None:
    clear_error(
        ValueError,
        LatestRunner,
        lambda request, cancel: None,
        debounce=debounce,
        mentions=[repr(debounce), ">= 0 seconds", "0.15"],
    )


def test_panel_norm_mapping_accepts_numpy_and_json_keys(backend) -> None:
    """Norms from numpy or from a JSON file (string keys) are read as the same numbers."""
    panel = _panel(backend, norms={"0": np.float32(2.0), 1: np.float64(3.0), 2: 4})
    assert panel.norms == {0: 2.0, 1: 3.0, 2: 4.0}
