"""GradientCapture against ``torch.autograd.grad`` through HF's ``output_hidden_states``.

``hidden_states[0]`` is the embeddings, so block ``L``'s output is ``hidden_states[L + 1]``; the
last entry is after the final norm, so the reference covers blocks 0 and 1 of the 3.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trait_lab.hooks import GradientCapture
from trait_lab.testing import tiny_batch, tiny_model

TOKEN = 7


def _loss(logits: torch.Tensor) -> torch.Tensor:
    return logits[:, -1, TOKEN].sum() + logits[0, 2].square().mean()


def _reference(model: nn.Module, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """d loss / d hidden_states[L + 1] for L = 0, 1, with every parameter requiring grad."""
    model.requires_grad_(True)
    out = model(**batch, output_hidden_states=True)
    return list(
        torch.autograd.grad(_loss(out.logits), [out.hidden_states[1], out.hidden_states[2]])
    )


def _hooks(model: nn.Module) -> dict[str, tuple[int, int, int]]:
    return {
        name: (len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
        for name, m in model.named_modules()
    }


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2"])
@pytest.mark.parametrize("frozen", [False, True], ids=["params-grad", "params-frozen"])
def test_gradients_equal_autograd_grad_of_hidden_states(arch: str, frozen: bool) -> None:
    model = tiny_model(arch)
    batch = tiny_batch(2, 6, left_pad=(0, 2))
    expected = _reference(model, batch)
    model.requires_grad_(not frozen)
    before = _hooks(model)
    with GradientCapture(model, layers=[0, 1]) as grads:
        _loss(model(**batch).logits).backward()
    for layer in (0, 1):
        assert grads.get(layer).shape == grads.activation(layer).shape == (2, 6, 32)
        torch.testing.assert_close(grads.get(layer), expected[layer], atol=1e-6, rtol=1e-6)
    assert _hooks(model) == before  # HF keeps its own output_hidden_states recorders


def test_frozen_model_with_only_a_later_layer() -> None:
    model = tiny_model("llama")
    batch = tiny_batch(1, 5)
    expected = _reference(model, batch)
    model.requires_grad_(False)
    with GradientCapture(model, 1) as grads:
        _loss(model(**batch).logits).backward()
    torch.testing.assert_close(grads.get(1), expected[1], atol=1e-6, rtol=1e-6)


def test_activation_is_the_block_output_and_attribution_is_one_line() -> None:
    model = tiny_model("llama")
    batch = tiny_batch(2, 4)
    with torch.no_grad():
        hidden = model(**batch, output_hidden_states=True).hidden_states
    with GradientCapture(model, [0, 1]) as grads:
        _loss(model(**batch).logits).backward()
    torch.testing.assert_close(grads.activation(1), hidden[2], atol=1e-6, rtol=1e-6)
    attribution = grads.get(1) * grads.activation(1)
    assert attribution.shape == (2, 4, 32) and bool(attribution.abs().sum() > 0)


def test_backward_passes_add_up_and_stop_at_exit() -> None:
    model = tiny_model("llama")
    batch = tiny_batch(1, 4)
    with GradientCapture(model, 0) as grads:
        loss = _loss(model(**batch).logits)
        loss.backward(retain_graph=True)
        once = grads.get(0).clone()
        loss.backward(retain_graph=True)
        torch.testing.assert_close(grads.get(0), 2 * once)
    loss.backward()  # after exit: the gradient hooks are gone
    torch.testing.assert_close(grads.get(0), 2 * once)


def test_get_before_backward_and_before_forward() -> None:
    model = tiny_model("llama")
    with GradientCapture(model, [0, 2]) as grads:
        with pytest.raises(RuntimeError, match="run a forward pass inside the `with` block"):
            grads.get(0)
        loss = _loss(model(**tiny_batch(1, 3)).logits)
        with pytest.raises(RuntimeError, match=r"call loss\.backward\(\) inside the `with` block"):
            grads.get(2)
        assert grads.activation(2).shape == (1, 3, 32)
    assert all(not m._forward_hooks and not m._backward_hooks for m in model.modules())
    loss.backward()  # too late: the context is gone
    with pytest.raises(RuntimeError, match=r"call loss\.backward\(\) inside"):
        grads.get(0)


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_disabled_gradients_raise(mode: type) -> None:
    model = tiny_model("llama")
    with (
        GradientCapture(model, 1),
        mode(),
        pytest.raises(RuntimeError, match=r"gradients disabled \(torch\.no_grad\(\)"),
    ):
        model(**tiny_batch(1, 3))
    assert all(not m._forward_hooks for m in model.modules())


def test_bad_inputs() -> None:
    model = tiny_model("llama")
    with pytest.raises(ValueError, match=r"layer 3 is out of range.*\(0\.\.2\)"):
        GradientCapture(model, [3])
    with pytest.raises(ValueError, match="unknown component 'resid'"):
        GradientCapture(model, 0, component="resid")
    with GradientCapture(model, 0) as grads:
        _loss(model(**tiny_batch(1, 3)).logits).backward()
    with pytest.raises(KeyError, match=r"layer 1 was not captured; captured layers: \[0\]"):
        grads.get(1)
    with pytest.raises(ValueError, match="layer -4 is out of range"):
        grads.activation(-4)
    grads.clear()
    with pytest.raises(RuntimeError, match="run a forward pass"):
        grads.get(0)


def test_other_components() -> None:
    """mlp_contribution: what the MLP adds, checked against a plain tensor hook on down_proj."""
    model = tiny_model("llama")
    batch = tiny_batch(1, 4)
    seen: list[torch.Tensor] = []
    handle = model.model.layers[1].mlp.down_proj.register_forward_hook(
        lambda mod, args, out: seen.append(out)
    )
    out = model(**batch)
    handle.remove()
    (expected,) = torch.autograd.grad(_loss(out.logits), seen)
    with GradientCapture(model, 1, component="mlp_contribution") as grads:
        _loss(model(**batch).logits).backward()
    torch.testing.assert_close(grads.get(1), expected, atol=1e-6, rtol=1e-6)
