"""Hooks on the embedded default model (SmolLM2-135M-Instruct) against HF's own outputs."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import hook_counts
from trait_lab.hooks import (
    AblationHook,
    ActivationCappingHook,
    CaptureHook,
    MultiLayerCapture,
    SteeringHook,
)

pytestmark = pytest.mark.integration

PROMPTS = ["The weather today is", "Tell me a story about a dragon who learned to"]


@pytest.fixture(scope="module")
def batch(default_model):
    _, tokenizer = default_model
    return tokenizer(PROMPTS, return_tensors="pt", padding=True)


def test_residual_capture_equals_output_hidden_states_exactly(default_model, batch) -> None:
    model, _ = default_model
    comps = ["residual", "block_input"]
    with MultiLayerCapture(model, components=comps) as cap, torch.no_grad():
        hidden = model(**batch, output_hidden_states=True).hidden_states
    assert len(hidden) == 31
    for layer in range(30):
        assert torch.equal(cap.get(layer, "block_input"), hidden[layer])
        if layer < 29:
            assert torch.equal(cap.get(layer, "residual"), hidden[layer + 1])
    torch.testing.assert_close(model.model.norm(cap.get(29, "residual")), hidden[30])


def test_block_algebra_on_the_default_model(default_model, batch) -> None:
    model, _ = default_model
    comps = ["residual", "block_input", "attn_contribution", "mlp_contribution"]
    with MultiLayerCapture(model, [0, 14, 29], components=comps) as cap, torch.no_grad():
        model(**batch)
    for layer in (0, 14, 29):
        p = {c: cap.get(layer, c) for c in comps}
        torch.testing.assert_close(
            p["block_input"] + p["attn_contribution"] + p["mlp_contribution"],
            p["residual"],
            rtol=1e-5,
            atol=1e-4,
        )


def test_coefficient_zero_is_bit_identical(default_model, batch) -> None:
    model, _ = default_model
    with torch.no_grad():
        before = model(**batch).logits
        with SteeringHook(model, torch.randn(576), 10, coefficient=0.0):
            during = model(**batch).logits
    assert torch.equal(before, during)


def test_ablation_and_capping(default_model, batch) -> None:
    model, _ = default_model
    v = torch.randn(576)
    unit = v / v.norm()
    with AblationHook(model, v, 12), CaptureHook(model, 12) as cap, torch.no_grad():
        model(**batch)
    assert (cap.get() @ unit).abs().max() < 1e-3
    capping = ActivationCappingHook(model, v, 12, threshold=5.0)
    with capping, CaptureHook(model, 12) as cap, torch.no_grad():
        model(**batch)
    assert (cap.get() @ unit).min() >= 5.0 - 1e-3


def test_no_hooks_left_after_an_exception(default_model, batch) -> None:
    model, _ = default_model
    before = hook_counts(model)
    with (
        pytest.raises(KeyboardInterrupt),
        MultiLayerCapture(model),
        SteeringHook(model, torch.randn(576), 5),
    ):
        raise KeyboardInterrupt
    assert hook_counts(model) == before
