"""SteeringPanel on the default model: what it shows is what the library computes."""

from __future__ import annotations

import pytest
import torch

from trait_lab.activations.norms import typical_cosines, typical_norms
from trait_lab.generation.backends import GenerationConfig, LocalBackend, SteeringSpec
from trait_lab.hooks import MultiLayerCapture, SteeringHook
from widgets.steering.panel import SteeringPanel

pytestmark = pytest.mark.integration
LAYER = 12
PROMPT = "What do you think the next ten years will bring?"


@pytest.fixture(scope="module")
def backend(default_model) -> LocalBackend:
    return LocalBackend.from_model(*default_model)


@pytest.fixture(scope="module")
def vector(backend: LocalBackend) -> torch.Tensor:
    # A direction with real effect: the mean difference of two contrasting prompts at LAYER.
    texts = ["I love this wonderful, happy, bright day!", "I hate this awful, sad, grim day."]
    acts = []
    for text in texts:
        ids = backend.tokenizer(text, return_tensors="pt")
        acts.append(backend.forward_with_capture(ids["input_ids"])[LAYER]["residual"][0].mean(0))
    return acts[0] - acts[1]


@pytest.fixture
def panel(backend: LocalBackend, vector: torch.Tensor):
    panel = SteeringPanel(
        backend, {"joy": (vector, LAYER)}, prompt=PROMPT, max_new_tokens=16, autorun=False
    )
    yield panel
    panel.close()


def _library(backend, vector, coefficient, mode="add", positions="response") -> str:
    spec = SteeringSpec(
        layer=LAYER,
        vector=vector / vector.norm(),
        coefficient=coefficient,
        positions=positions,
        mode=mode,
    )
    return backend.generate([PROMPT], GenerationConfig(max_new_tokens=16), [spec])[0]


def test_slider_value_gives_the_library_text_for_that_coefficient(panel, backend, vector) -> None:
    norm = typical_norms(backend.model, panel_prompts(), [LAYER], tokenizer=backend.tokenizer)
    assert panel.norms[LAYER] == pytest.approx(norm[LAYER])
    baseline = backend.generate([PROMPT], GenerationConfig(max_new_tokens=16))[0]
    seen = []
    panel.stream.observe(lambda c: seen.append(len(c["new"][1]["tokens"])), "columns")
    for fraction in (0.5, -0.5):
        panel.sliders["joy"].value = fraction
        assert not panel.wait(timeout=0)  # the kernel is not blocked while it generates
        assert panel.wait(timeout=120) and panel.error is None
        expected = _library(backend, vector, fraction * norm[LAYER])
        assert panel.texts["steered"] == expected
        assert panel.stream.text("steered") == expected  # what the page shows, piece by piece
        assert panel.texts["baseline"] == baseline
        assert expected != baseline
    assert seen[:4] == sorted(seen[:4]) and max(seen) == 16  # tokens arrived one by one


def panel_prompts() -> list[str]:
    from trait_lab.prompts.prompt_sets import load_prompt_set

    return load_prompt_set("neutral")[:16]


@pytest.mark.parametrize(("mode", "fraction"), [("ablate", 1.0), ("cap", 0.3), ("ceiling", -0.2)])
def test_modes_match_the_library(panel, backend, vector, mode, fraction) -> None:
    panel.mode.value = mode
    panel.sliders["joy"].value = fraction
    assert panel.wait(timeout=120) and panel.error is None
    coefficient = fraction if mode == "ablate" else fraction * panel.norms[LAYER]
    assert panel.texts["steered"] == _library(backend, vector, coefficient, mode)
    assert panel.texts["steered"] == panel.reference()


def test_token_colours_are_cosines_of_a_no_cache_recompute(panel, backend, vector) -> None:
    panel.positions.value = "all"
    panel.sliders["joy"].value = 0.4
    assert panel.wait(timeout=120) and panel.error is None
    readout = panel.colour_layer.value
    assert readout == LAYER + 4
    tok = backend.tokenizer
    prompt_ids = tok(backend.format(PROMPT), return_tensors="pt", add_special_tokens=False)
    ids = panel._rows["steered"].ids
    full = torch.cat([prompt_ids["input_ids"], torch.tensor([ids])], dim=1)
    unit = vector / vector.norm()
    coefficient = 0.4 * panel.norms[LAYER]
    with (
        SteeringHook(backend.model, unit * coefficient, LAYER),
        MultiLayerCapture(backend.model, [readout]) as cap,
        torch.no_grad(),
    ):
        backend.model(input_ids=full)
    h = cap.get(readout, "residual")[0, -len(ids) :].float()
    expected = (h @ unit) / h.norm(dim=-1)
    shown = torch.tensor([s for _, s in panel.stream.columns[1]["tokens"]])
    torch.testing.assert_close(shown, expected, atol=2e-3, rtol=1e-3)


def test_errors_show_in_the_panel(panel, monkeypatch) -> None:
    panel.prompt.value = "   "
    assert "the prompt is empty" in panel.status.value
    panel.prompt.value = PROMPT

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory on the imaginary device")

    monkeypatch.setattr(panel.backend, "stream", broken)
    panel.refresh()
    assert panel.wait(timeout=30)
    assert "RuntimeError: out of memory on the imaginary device" in panel.status.value
    assert isinstance(panel.error, RuntimeError)


def test_several_traits_and_an_ensemble(backend, vector) -> None:
    other = torch.roll(vector, 7)
    panel = SteeringPanel(
        backend,
        {"joy": (vector, LAYER), "mix": [(vector, 10, 0.5), (other, 14, 1.0)]},
        prompt=PROMPT,
        value={"joy": 0.3, "mix": -0.2},
        max_new_tokens=12,
    )
    try:
        assert panel.wait(timeout=120) and panel.error is None
        assert panel.layers["mix"].disabled
        specs = panel.specs()
        assert [(s.layer, round(s.coefficient, 3)) for s in specs] == [
            (LAYER, round(0.3 * panel.norms[LAYER], 3)),
            (10, round(-0.2 * panel.norms[10] * 0.5, 3)),
            (14, round(-0.2 * panel.norms[14], 3)),
        ]
        assert (
            panel.texts["steered"]
            == backend.generate([PROMPT], GenerationConfig(max_new_tokens=12), specs)[0]
        )
    finally:
        panel.close()


def test_default_colour_scale_is_the_calibration_and_stays_fixed(panel, backend, vector) -> None:
    # full colour at the 99th percentile of |cos| on the neutral prompts, not at this run's max
    readout = LAYER + panel.readout_offset
    want = typical_cosines(
        backend.model,
        panel_prompts(),
        {readout: vector / vector.norm()},
        tokenizer=backend.tokenizer,
    )[readout]
    scales = []
    for fraction in (0.6, -0.6):
        panel.sliders["joy"].value = fraction
        panel.refresh()
        assert panel.wait(timeout=120) and panel.error is None
        scales.append((panel.stream.scale, panel.stream.scale_note))
    assert scales[0] == scales[1]
    assert scales[0][0] == pytest.approx(max(want, 0.05), rel=1e-4)
    assert "calibrated on neutral prompts" in scales[0][1]


def test_bad_arguments(backend, vector) -> None:
    with pytest.raises(ValueError, match="unknown mode 'push'"):
        SteeringPanel(backend, {"joy": (vector, LAYER)}, mode="push", autorun=False)
    with pytest.raises(ValueError, match=r"value names \['joi'\], which are not among"):
        SteeringPanel(backend, {"joy": (vector, LAYER)}, value={"joi": 0.3}, norms=1.0)
    with pytest.raises(TypeError, match="needs a LocalBackend"):
        SteeringPanel(object(), {"joy": (vector, LAYER)})  # type: ignore[arg-type]
