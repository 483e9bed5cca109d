"""Steering-panel inputs: named vectors → SteeringSpecs, and the latest-wins background runner."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from trait_lab.core import VectorResult
from trait_lab.generation.backends import LocalBackend
from trait_lab.io.vectors import save_vector
from trait_lab.testing import tiny_model
from widgets.common.runner import LatestRunner
from widgets.steering.panel import SteeringPanel
from widgets.steering.targets import build_specs, selected_vectors, steering_targets

N, H = 6, 8


def _v(seed: int = 0) -> torch.Tensor:
    return torch.randn(H, generator=torch.Generator().manual_seed(seed)) * 5


class TestTargets:
    def test_every_input_form(self) -> None:
        a, b = _v(0), _v(1)
        targets = steering_targets(
            {
                "bare": a,
                "pair": (np.asarray(a), 3),
                "per_layer": {1: a, 4: b},
                "ensemble": [(a, 2, 0.5), (b, 5, 1.5)],
            },
            n_layers=N,
            hidden=H,
            layer=2,
        )
        bare, pair, per_layer, ensemble = targets
        assert bare.default_layer == 2 and sorted(bare.vectors) == list(range(N))
        assert (bare.source_layer, pair.source_layer, per_layer.source_layer) == (2, 3, None)
        assert pair.default_layer == 3
        assert sorted(per_layer.vectors) == [1, 4] and per_layer.default_layer == 4
        assert ensemble.is_ensemble and ensemble.weights == {2: 0.5, 5: 1.5}
        for t in targets:
            for v in t.vectors.values():
                assert abs(float(v.norm()) - 1) < 1e-6
        torch.testing.assert_close(per_layer.vectors[4], b / b.norm())

    @pytest.mark.parametrize(
        ("vectors", "layer", "match"),
        [
            ({"x": _v()}, None, "bare vector, so its layer is unknown"),
            ({"x": (_v(), 9)}, None, r"layer 9; the model has layers 0..5"),
            (
                {"x": torch.zeros(H)},
                1,
                r"x'\] is a zero vector .* a direction needs a nonzero norm",
            ),
            ({"x": torch.ones(H + 1)}, 1, r"has length 9 but the hooked activations are 8 wide"),
            ({"x": "optimism"}, 1, "give a vector, \\(vector, layer\\)"),
            ({}, 1, "non-empty dict"),
            ({"x": [(_v(), 1, 1.0), (_v(1), 1, 1.0)]}, None, "two members at layer 1"),
        ],
    )
    def test_bad_input_names_the_problem(self, vectors, layer, match) -> None:
        with pytest.raises((ValueError, TypeError), match=match):
            steering_targets(vectors, n_layers=N, hidden=H, layer=layer)


class TestSpecs:
    def test_units_per_mode(self) -> None:
        v = _v()
        targets = steering_targets({"t": (v, 2), "e": [(v, 1, 0.5), (v, 3, 2.0)]}, N, H)
        norms = {k: 10.0 * (k + 1) for k in range(N)}
        add = build_specs(targets, {"t": 0.4, "e": 1.0}, {"t": 4}, "add", norms)
        assert [(s.layer, s.coefficient, s.mode) for s in add] == [
            (4, pytest.approx(0.4 * 50), "add"),
            (1, pytest.approx(0.5 * 20), "add"),
            (3, pytest.approx(2.0 * 40), "add"),
        ]
        ablate = build_specs(targets, {"t": 0.5}, {}, "ablate", norms)
        assert [(s.layer, s.coefficient, s.mode) for s in ablate] == [(2, 0.5, "ablate")]
        cap = build_specs(targets, {"t": 0.0}, {}, "cap", norms, rows=[1])
        expected = [(2, 0.0, [1]), (1, 0.0, [1]), (3, 0.0, [1])]  # capping at 0 is not a no-op
        assert [(s.layer, s.coefficient, s.rows) for s in cap] == expected

    def test_zero_add_is_no_spec_and_bad_mode(self) -> None:
        targets = steering_targets({"t": (_v(), 2)}, N, H)
        assert build_specs(targets, {"t": 0.0}, {}, "add", {2: 1.0}) == []
        with pytest.raises(ValueError, match="unknown mode 'push'; choose one of add"):
            build_specs(targets, {"t": 1.0}, {}, "push", {2: 1.0})
        with pytest.raises(ValueError, match=r"no vector at layer 3; pick one of \[1\]"):
            build_specs(steering_targets({"t": {1: _v()}}, N, H), {"t": 1.0}, {"t": 3}, "add", {})


class TestRunner:
    def test_only_the_latest_request_runs_and_the_running_one_is_cancelled(self) -> None:
        started, finished = [], []
        release = threading.Event()

        def job(request: int, cancel: threading.Event) -> None:
            started.append(request)
            while not cancel.is_set() and not release.is_set():
                time.sleep(0.005)
            finished.append((request, cancel.is_set()))

        runner = LatestRunner(job, debounce=0.02)
        runner.submit(1)
        while not started:
            time.sleep(0.005)
        for request in (2, 3, 4):  # burst while 1 runs: 1 is cancelled, only 4 follows
            runner.submit(request)
        while len(started) < 2:
            time.sleep(0.005)
        release.set()
        assert runner.wait(timeout=10)
        assert started == [1, 4]
        assert finished == [(1, True), (4, False)]

    def test_errors_reach_the_callback_and_the_worker_survives(self) -> None:
        errors: list[BaseException] = []
        seen: list[int] = []

        def job(request: int, cancel: threading.Event) -> None:
            if request == 0:
                raise RuntimeError("boom")
            seen.append(request)

        runner = LatestRunner(job, debounce=0.0, on_error=errors.append)
        runner.submit(0)
        assert runner.wait(timeout=10)
        runner.submit(1)
        assert runner.wait(timeout=10)
        assert [str(e) for e in errors] == ["boom"] and seen == [1]
        runner.close()
        with pytest.raises(RuntimeError, match="closed"):
            runner.submit(2)

    def test_negative_debounce(self) -> None:
        with pytest.raises(ValueError, match="debounce must be >= 0"):
            LatestRunner(lambda r, c: None, debounce=-1)


class TestSelectedVectors:
    """A VectorResult from select_vector: its vector at its layer; steering-validated ones start
    the panel's slider at the recommended coefficient."""

    def _results(self, tmp_path):
        path = tmp_path / "layer_1.safetensors"
        save_vector(torch.ones(32), path)
        common = dict(layer=1, component="residual", position="response[:]", method="probe")
        steered = VectorResult(
            **common, source="steering", delta=20.0, coherence=80.0, coefficient=3.0, path=path
        )
        extracted = VectorResult(**common, source="extraction", path=path)
        return steered, extracted

    def test_vectors_and_recommended_coefficients(self, tmp_path) -> None:
        steered, extracted = self._results(tmp_path)
        vectors, recommended = selected_vectors({"a": steered, "b": extracted, "c": (_v(), 2)})
        assert vectors["a"][1] == 1 and torch.equal(vectors["a"][0], torch.ones(32))
        assert vectors["c"][1] == 2 and recommended == {"a": (1, 3.0)}

    def test_the_panel_starts_at_the_recommended_coefficient(self, tmp_path) -> None:
        steered, extracted = self._results(tmp_path)
        backend = LocalBackend(tiny_model(), tokenizer=None, use_chat_template=False)
        vectors = {"a": steered, "b": extracted}
        panel = SteeringPanel(backend, vectors, norms=10.0, autorun=False)
        assert panel.sliders["a"].value == pytest.approx(0.3)  # 3.0 / norm 10 at layer 1
        assert panel.sliders["b"].value == 0.0 and panel.layers["a"].value == 1
        panel.close()
        chosen = SteeringPanel(backend, vectors, norms=10.0, value={"a": -0.1}, autorun=False)
        assert chosen.sliders["a"].value == pytest.approx(-0.1)  # a value given wins
        chosen.close()
