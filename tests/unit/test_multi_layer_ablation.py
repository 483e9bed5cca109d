"""MultiLayerAblation against the residual-stream algebra and plain torch hooks.

References: HF ``output_hidden_states`` of the hookless model (the unablated layer outputs), the
stream the blocks themselves read (``tests.helpers.residual_stream``, plain torch hooks) and
plain torch hooks that project the direction out by hand.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import trait_lab.hooks.directional as directional
from tests.helpers import edit_block_output, hook_counts, residual_stream, warm
from trait_lab.hooks import AblationHook, MultiLayerAblation
from trait_lab.models.architectures import find_layers
from trait_lab.testing import tiny_batch, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")

HIDDEN = 32


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm()


def _logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def _ablated_stream(
    model: nn.Module, configs: list[Any], batch: dict[str, torch.Tensor]
) -> list[torch.Tensor]:
    with MultiLayerAblation(model, configs), residual_stream(model) as stream, torch.no_grad():
        model(**batch)
    return stream


@pytest.mark.parametrize("arch", ["llama", "gemma2", "gpt2"])
def test_each_ablated_layer_has_no_component_along_its_direction(arch: str) -> None:
    model = tiny_model(arch)
    batch = tiny_batch(2, 6, left_pad=(0, 2))
    r0, r2 = torch.randn(HIDDEN), torch.randn(HIDDEN)
    with residual_stream(model) as plain, torch.no_grad():
        model(**batch)
    stream = _ablated_stream(model, [(0, r0), (2, r2)], batch)
    for layer, r in ((0, r0), (2, r2)):
        # entry L + 1 is block L's output; the unablated stream really has a component on r
        assert (plain[layer + 1] @ _unit(r)).abs().max() > 1e-2
        assert (stream[layer + 1] @ _unit(r)).abs().max() < 1e-4
    assert (stream[2] @ _unit(r2)).abs().max() > 1e-2  # layer 1 is left alone


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_one_layer_equals_projecting_the_unablated_output(arch: str) -> None:
    model = tiny_model(arch)
    batch = tiny_batch(2, 5, left_pad=(1, 0))
    r = torch.randn(HIDDEN)
    with torch.no_grad():
        x = model(**batch, output_hidden_states=True).hidden_states[2]  # block 1's output
    stream = _ablated_stream(model, [(1, r)], batch)
    u = _unit(r)
    torch.testing.assert_close(stream[2], x - (x @ u).unsqueeze(-1) * u)


def test_equals_plain_torch_projection_hooks_with_strengths() -> None:
    model = tiny_model("llama")
    batch = tiny_batch(2, 5)
    r0, r2 = torch.randn(HIDDEN), torch.randn(HIDDEN)
    with MultiLayerAblation(model, [(0, r0), (-1, r2, 0.5)]) as hook:
        assert hook.active
        ours = _logits(model, batch)
    assert not hook.active
    _, blocks = find_layers(model)

    def ablate(r: torch.Tensor, c: float) -> Any:
        u = _unit(r)
        return edit_block_output(lambda h: h - c * (h @ u).unsqueeze(-1) * u)

    handles = [
        blocks[layer].register_forward_hook(ablate(r, c))
        for layer, r, c in ((0, r0, 1.0), (2, r2, 0.5))
    ]
    try:
        reference = _logits(model, batch)
    finally:
        for handle in handles:
            handle.remove()
    torch.testing.assert_close(ours, reference)
    assert not torch.allclose(ours, _logits(model, batch))


def test_equals_nested_ablation_hooks_and_edits_through_apply_edit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = tiny_model("llama")
    batch = tiny_batch(1, 4)
    a, b = torch.randn(HIDDEN), torch.randn(HIDDEN)
    with AblationHook(model, a, 0), AblationHook(model, b, 2):
        nested = _logits(model, batch)
    modes: list[str] = []
    real = directional.apply_edit

    def spy(mode: str, *args: Any, **kwargs: Any) -> torch.Tensor:
        modes.append(mode)
        return real(mode, *args, **kwargs)

    monkeypatch.setattr(directional, "apply_edit", spy)
    with MultiLayerAblation(model, [(0, a), (2, b)]):
        multi = _logits(model, batch)
    assert torch.equal(multi, nested)
    assert modes == ["ablate", "ablate"]


def test_no_hook_survives_an_exception() -> None:
    model = tiny_model("llama")
    batch = tiny_batch(2, 4)
    warm(model, batch)
    before, plain = hook_counts(model), _logits(model, batch)
    configs = [(0, torch.randn(HIDDEN)), (1, torch.randn(HIDDEN), 0.3)]
    with pytest.raises(RuntimeError, match="boom"), MultiLayerAblation(model, configs):
        _logits(model, batch)
        raise RuntimeError("boom")
    assert hook_counts(model) == before
    assert torch.equal(_logits(model, batch), plain)


def test_component_applies_to_every_layer() -> None:
    hook = MultiLayerAblation(tiny_model("gemma2"), [(0, torch.ones(HIDDEN))], "mlp_contribution")
    assert [h.path for h in hook.hooks] == ["model.layers.0.post_feedforward_layernorm"]


class TestBadInput:
    def test_zero_direction_names_its_config(self) -> None:
        configs = [(0, torch.ones(HIDDEN)), (2, torch.zeros(HIDDEN))]
        with pytest.raises(ValueError, match=r"configs\[1\] \(layer 2\): direction is a zero"):
            MultiLayerAblation(tiny_model(), configs)

    def test_wrong_width(self) -> None:
        with pytest.raises(ValueError, match=r"configs\[0\].*length 31 but the hooked activ"):
            MultiLayerAblation(tiny_model(), [(1, torch.ones(31))])

    def test_two_dimensional_direction(self) -> None:
        with pytest.raises(ValueError, match=r"configs\[0\].*must be 1-D"):
            MultiLayerAblation(tiny_model(), [(1, torch.ones(2, HIDDEN))])

    @pytest.mark.parametrize("second", [1, -2, "model.layers.1"])
    def test_duplicate_layers_are_refused(self, second: Any) -> None:
        configs = [(1, torch.ones(HIDDEN)), (second, torch.randn(HIDDEN))]
        with pytest.raises(
            ValueError, match=r"configs\[0\] and configs\[1\] both ablate at 'model\.layers\.1'"
        ):
            MultiLayerAblation(tiny_model(), configs)

    def test_empty_configs(self) -> None:
        with pytest.raises(ValueError, match="needs at least one"):
            MultiLayerAblation(tiny_model(), [])

    @pytest.mark.parametrize("config", [(1,), (1, torch.ones(HIDDEN), 1.0, 2), torch.ones(2)])
    def test_malformed_config(self, config: Any) -> None:
        with pytest.raises(ValueError, match=r"configs\[0\] must be \(layer, direction\)"):
            MultiLayerAblation(tiny_model(), [config])

    def test_non_finite_strength(self) -> None:
        with pytest.raises(ValueError, match=r"configs\[0\].*coefficient must be finite"):
            MultiLayerAblation(tiny_model(), [(1, torch.ones(HIDDEN), float("nan"))])

    def test_layer_out_of_range(self) -> None:
        with pytest.raises(ValueError, match=r"configs\[0\] \(layer 5\): layer 5 is out of range"):
            MultiLayerAblation(tiny_model(), [(5, torch.ones(HIDDEN))])
