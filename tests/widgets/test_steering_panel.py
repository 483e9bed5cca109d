"""SteeringPanel on a tiny model: status, labels, colour scale, titles and recolouring.

Ground truths: a panel built fresh for the final state (colours), the library's own
generation (texts), and the page-facing state (``status``, ``stream.columns``, ``legend``).
"""

from __future__ import annotations

import time

import pytest
import torch

from trait_lab.activations import typical_cosines
from trait_lab.generation import GenerationConfig, LocalBackend
from trait_lab.prompts import load_prompt_set
from trait_lab.testing import tiny_model, tiny_tokenizer
from widgets.common.colours import NEGATIVE_RGB, POLE_NOTE, POSITIVE_RGB
from widgets.steering.panel import SteeringPanel

HIDDEN = 32
PROMPT = "What comes next, and why?"


@pytest.fixture(scope="module")
def backend() -> LocalBackend:
    return LocalBackend(tiny_model(), tiny_tokenizer(), use_chat_template=False)


def _vectors(seed: int = 0) -> dict[int, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {layer: torch.randn(HIDDEN, generator=gen) for layer in range(3)}


def _panel(backend: LocalBackend, **kwargs) -> SteeringPanel:
    args = {
        "prompt": PROMPT,
        "norms": 10.0,
        "max_new_tokens": 12,
        "autorun": False,
        "debounce": 0.0,
        "readout_offset": 0,
        "layer": 1,
    }
    args.update(kwargs)
    vectors = args.pop("vectors", {"joy": _vectors(0), "calm": _vectors(1)})
    return SteeringPanel(backend, vectors, **args)


@pytest.fixture
def panel(backend: LocalBackend):
    panel = _panel(backend)
    yield panel
    panel.close()


def _run(panel: SteeringPanel) -> None:
    assert panel.wait(timeout=60) and panel.error is None, panel.status.value


def _state(panel: SteeringPanel) -> str:
    return panel.status.value.split("data-state='")[1].split("'")[0]


class TestStatus:
    def test_queued_generating_done(self, panel: SteeringPanel) -> None:
        seen: list[str] = []
        panel.status.observe(lambda c: seen.append(c["new"]), "value")
        panel.refresh()
        _run(panel)
        states = [s.split("data-state='")[1].split("'")[0] for s in seen]
        assert states[0] == "queued" and "generating" in states and states[-1] == "done"
        assert panel.state == "done" and "done: " in panel.status.value
        assert all(c["status"].startswith("done · ") for c in panel.stream.columns)
        assert all(c["status"].endswith(" · fp32") for c in panel.stream.columns)

    def test_the_precision_each_row_ran_at_is_shown(self) -> None:
        fast = LocalBackend(tiny_model(), tiny_tokenizer(), False, precision="bf16")
        panel = _panel(fast)
        try:
            panel.refresh()
            _run(panel)
            statuses = [c["status"] for c in panel.stream.columns]
            assert len(statuses) == 2 and all(s.endswith(" · bf16") for s in statuses), statuses
        finally:
            panel.close()

    def test_a_compiled_backend_is_shown_and_streams_the_same_text(self) -> None:
        texts = {}
        for compile in (False, True):
            panel = _panel(LocalBackend(tiny_model(), tiny_tokenizer(), False, compile=compile))
            try:
                panel.refresh()
                _run(panel)
                columns = panel.stream.columns
                texts[compile] = [panel.stream.text(c["key"]) for c in columns]
                statuses = [c["status"] for c in columns]
            finally:
                panel.close()
        assert all(s.endswith(" · fp32 · compiled") for s in statuses), statuses
        assert texts[True] == texts[False] and texts[True][0]

    def test_stop_while_generating_says_stopped_and_stays(self, backend: LocalBackend) -> None:
        panel = _panel(backend, max_new_tokens=200)
        try:
            panel.refresh()
            deadline = time.monotonic() + 30
            while not panel._rows["steered"].ids and time.monotonic() < deadline:
                time.sleep(0.01)
            panel.stop()
            assert _state(panel) == "stopped"
            _run(panel)
            assert panel.state == "stopped" and _state(panel) == "stopped"
            assert "queued" not in panel.status.value
            assert len(panel._rows["steered"].ids) < 200
            assert panel.stream.columns[1]["status"].startswith("stopped · ")
            panel.stop()  # nothing to stop: the status keeps saying what happened
            assert _state(panel) == "stopped"
        finally:
            panel.close()

    def test_stop_before_it_starts(self, backend: LocalBackend) -> None:
        panel = _panel(backend, debounce=30.0)
        try:
            panel.refresh()
            assert _state(panel) == "queued"
            panel.stop()
            assert panel.wait(timeout=5)
            assert _state(panel) == "stopped" and panel._rows["steered"].ids == []
            assert "stopped before it started · the texts below: nothing yet" in panel.status.value
        finally:
            panel.close()

    def test_stop_when_idle_changes_nothing(self, panel: SteeringPanel) -> None:
        panel.refresh()
        _run(panel)
        panel.stop()
        assert _state(panel) == "done"


class TestLabels:
    def test_floor_and_ceiling_are_named_consistently(self, panel: SteeringPanel) -> None:
        labels = {value: label for label, value in panel.mode.options}
        assert labels["cap"] == "floor (cap)" and labels["ceiling"] == "ceiling"
        panel.mode.value = "cap"
        panel.sliders["joy"].value = 0.3
        assert "floor at × norm" in panel.readouts["joy"].value
        assert "floor (cap): joy +0.30" in panel._label()
        panel.mode.value = "ceiling"
        assert "ceiling at × norm" in panel.readouts["joy"].value
        assert "cap × norm" not in panel.readouts["joy"].value
        panel._runner.cancel()

    def test_descriptions_are_not_cut(self, panel: SteeringPanel) -> None:
        controls = [
            panel.temperature,
            panel.max_new_tokens,
            panel.top_p,
            panel.seed,
            panel.positions,
            panel.colour_trait,
            panel.colour_layer,
            panel.mode,
            *panel.sliders.values(),
            *panel.layers.values(),
        ]
        assert all(c.style.description_width == "initial" for c in controls)

    def test_ensemble_picker_shows_every_layer(self, backend: LocalBackend) -> None:
        v = _vectors(2)
        panel = _panel(backend, vectors={"mix": [(v[0], 0, 0.5), (v[2], 2, 1.0)]}, value=0.2)
        try:
            picker = panel.layers["mix"]
            assert picker.disabled and picker.label == "L0 + L2 (ensemble)"
            assert "mix +0.20 @ L0 + L2" in panel._label()
            assert [s.layer for s in panel.specs()] == [0, 2]
        finally:
            panel.close()

    def test_titles_name_position_prompt_and_sampling(self, panel: SteeringPanel) -> None:
        panel.temperature.value = 0.8
        panel.top_p.value = 0.9
        panel.seed.value = 3
        panel.positions.value = "all"
        panel.sliders["joy"].value = 0.5
        _run(panel)
        title = panel.stream.columns[1]["title"]
        for part in ("steer at all", "temperature 0.8", "top p 0.9", "seed 3", PROMPT, "L1"):
            assert part in title
        assert "temperature 0.8" in panel.stream.columns[0]["title"]
        figure_title = panel.figure().layout.title.text
        assert title.removeprefix("steered — ") in figure_title
        assert POLE_NOTE in figure_title


def _cosines(panel: SteeringPanel, key: str) -> list[float]:
    column = next(c for c in panel.stream.columns if c["key"] == key)
    return [score for _, score in column["tokens"]]


class TestColourScale:
    def test_baseline_shade_does_not_move_with_the_slider(self, panel: SteeringPanel) -> None:
        panel.refresh()
        _run(panel)
        scale, baseline = panel.stream.scale, panel.stream.columns[0]
        # the default is the calibration: 99th percentile |cos| on the neutral prompts
        calibration = typical_cosines(
            panel.backend.model,
            load_prompt_set("neutral")[:16],
            {1: _vectors(0)[1]},
            tokenizer=panel.backend.tokenizer,
        )
        assert scale == pytest.approx(max(calibration[1], 0.05), rel=1e-5)
        assert "calibrated on neutral prompts" in panel.stream.legend
        for value in (0.6, -0.8, 1.0):
            panel.sliders["joy"].value = value
            _run(panel)
            assert panel.stream.scale == scale
            assert panel.stream.columns[0]["tokens"] == baseline["tokens"]
        steered = max(abs(s) for s in _cosines(panel, "steered"))
        assert steered > scale  # a per-run scale would have changed: the test can fail
        assert f"±{scale:.2f}" in panel.stream.legend and POLE_NOTE in panel.stream.legend
        assert "locked" in panel.stream.legend

    def test_unlock_rescales_and_relock_keeps_what_is_shown(self, panel: SteeringPanel) -> None:
        panel.refresh()
        _run(panel)
        locked = panel.stream.scale
        panel.sliders["joy"].value = 1.0
        _run(panel)
        panel.lock_scale.value = False
        largest = max(abs(s) for k in ("baseline", "steered") for s in _cosines(panel, k))
        assert panel.stream.scale == pytest.approx(largest) != locked
        assert "unlocked" in panel.stream.legend
        panel.lock_scale.value = True
        panel.sliders["joy"].value = 0.2
        _run(panel)
        assert panel.stream.scale == pytest.approx(largest)
        assert "locked at the scale shown when locked" in panel.stream.legend

    def test_given_scale(self, backend: LocalBackend) -> None:
        panel = _panel(backend, colour_scale={("joy", 1): 0.25})
        try:
            panel.refresh()
            _run(panel)
            assert panel.stream.scale == 0.25 and "fixed" in panel.stream.legend
        finally:
            panel.close()
        with pytest.raises(ValueError, match="colour_scale"):
            _panel(backend, colour_scale=0.0)
        with pytest.raises(ValueError, match="colour_scale"):
            _panel(backend, colour_scale=float("nan"))

    def test_page_colours_are_the_convention(self, panel: SteeringPanel) -> None:
        assert panel.stream.positive_rgb == list(POSITIVE_RGB)
        assert panel.stream.negative_rgb == list(NEGATIVE_RGB)


class TestRecolour:
    def test_colour_change_recolours_without_generating(
        self, backend: LocalBackend, monkeypatch
    ) -> None:
        panel = _panel(backend, value={"joy": 0.7}, positions="all")
        fresh = _panel(backend, value={"joy": 0.7}, positions="all")
        try:
            panel.refresh()
            _run(panel)
            ids = {k: list(r.ids) for k, r in panel._rows.items()}
            before = _cosines(panel, "steered")
            calls = []
            original = backend.stream
            monkeypatch.setattr(
                backend, "stream", lambda *a, **k: calls.append(1) or original(*a, **k)
            )
            panel.colour_layer.value = 2
            _run(panel)
            panel.colour_trait.value = "calm"
            _run(panel)
            assert calls == [] and panel.state == "done"
            assert {k: list(r.ids) for k, r in panel._rows.items()} == ids
            fresh.colour_trait.value = "calm"  # the same final colour, made by generating
            assert (fresh.colour_trait.value, fresh.colour_layer.value) == ("calm", 1)
            assert (panel.colour_trait.value, panel.colour_layer.value) == ("calm", 1)
            fresh.refresh()
            _run(fresh)
            assert calls  # the fresh panel generated (the monkeypatch saw it)
            for key in ("baseline", "steered"):
                expected = torch.tensor(_cosines(fresh, key), dtype=torch.float64)
                got = torch.tensor(_cosines(panel, key), dtype=torch.float64)
                torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
            assert _cosines(panel, "steered") != before
            assert "cosine with calm @ L1" in panel.stream.legend
        finally:
            panel.close()
            fresh.close()

    def test_a_changed_setting_regenerates(self, panel: SteeringPanel) -> None:
        panel.refresh()
        _run(panel)
        panel.sliders["joy"].value = 0.5  # regenerates the steered text
        panel.colour_layer.value = 2  # meanwhile: must not merely recolour stale texts
        _run(panel)
        assert panel.texts["steered"] == panel.reference()
        cfg = GenerationConfig(max_new_tokens=12)
        assert panel.texts["baseline"] == panel.backend.generate([PROMPT], cfg)[0]
