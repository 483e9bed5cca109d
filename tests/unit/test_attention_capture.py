"""AttentionCapture against HF's own ``output_attentions`` on an eager copy, and a no-cache rerun.

The models are switched to SDPA first (whose probabilities no hook can see), so the capture has to
switch them to eager and back.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

from tests.helpers import hook_counts
from trait_lab.hooks import AttentionCapture
from trait_lab.models import cache_keyword, output_cache
from trait_lab.testing import TINY_ARCHITECTURES, tiny_batch, tiny_model

LAYERS = 3
HEADS = 4


def _impl(model: nn.Module) -> Any:
    return model.config._attn_implementation


def _sdpa(arch: str) -> nn.Module:
    """The tiny model on SDPA (Gemma 2 has none on transformers 5: it stays on its default)."""
    model = tiny_model(arch)
    try:
        model.set_attn_implementation("sdpa")
    except ValueError as err:
        assert arch == "gemma2", err
        return model
    assert _impl(model) == "sdpa"
    return model


def _hf_attentions(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The reference: HF's output_attentions from an eager-loaded copy of the model."""
    reference = copy.deepcopy(model)
    reference.set_attn_implementation("eager")
    with torch.no_grad():
        return reference(**batch, output_attentions=True).attentions


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_weights_equal_hf_output_attentions_with_left_padding(arch: str) -> None:
    model = _sdpa(arch)
    loaded = _impl(model)
    batch = tiny_batch(2, 6, left_pad=(0, 2))
    expected = _hf_attentions(model, batch)
    with torch.no_grad():
        outside = model(**batch).logits
    with AttentionCapture(model) as att, torch.no_grad():
        inside = model(**batch).logits
    assert _impl(model) == loaded
    captured = att.get_all()
    assert sorted(captured) == list(range(LAYERS))
    for layer in range(LAYERS):
        assert captured[layer].shape == (2, HEADS, 6, 6)
        torch.testing.assert_close(captured[layer], expected[layer], atol=1e-5, rtol=0)
    real = batch["attention_mask"].bool()  # padded positions attend to nothing: no reference
    torch.testing.assert_close(inside[real], outside[real], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_weights_are_causal_masked_probabilities(arch: str) -> None:
    """Independent of HF: rows of real queries sum to 1, padding and future keys get 0."""
    model = _sdpa(arch)
    batch = tiny_batch(2, 6, left_pad=(0, 2))
    with AttentionCapture(model, layers=[0, -1]) as att, torch.no_grad():
        model(**batch)
    future = torch.triu(torch.ones(6, 6, dtype=torch.bool), diagonal=1)
    for layer in (0, 2):
        w = att.get(layer)
        # real queries only: sample 1's padded queries see no key, their row is meaningless
        assert bool((w[0][:, future] == 0).all())
        assert bool((w[1, :, 2:][:, future[2:]] == 0).all())
        assert bool((w[1, :, 2:, :2] == 0).all())  # sample 1's padded keys
        torch.testing.assert_close(w[0].sum(-1), torch.ones(HEADS, 6))
        torch.testing.assert_close(w[1, :, 2:].sum(-1), torch.ones(HEADS, 4))
        assert float(w[:, :, ~future].min()) >= 0.0


def test_kv_cached_calls_join_into_the_full_matrix() -> None:
    """Prefill then two decode steps equal one no-cache forward over the whole sequence."""
    model = _sdpa("llama")
    ids = tiny_batch(2, 6)["input_ids"]
    expected = _hf_attentions(model, {"input_ids": ids})
    keyword = cache_keyword(model)
    with AttentionCapture(model, layers=1) as att, torch.no_grad():
        out = model(input_ids=ids[:, :4], use_cache=True)
        out = model(input_ids=ids[:, 4:5], use_cache=True, **{keyword: output_cache(out)})
        model(input_ids=ids[:, 5:6], use_cache=True, **{keyword: output_cache(out)})
    assert [tuple(c.shape) for c in att.calls(1)] == [(2, 4, 4, 4), (2, 4, 1, 5), (2, 4, 1, 6)]
    torch.testing.assert_close(att.get(1), expected[1], atol=1e-5, rtol=0)


def test_unrelated_calls_are_refused_not_joined() -> None:
    model = _sdpa("llama")
    with AttentionCapture(model, layers=0) as att, torch.no_grad():
        model(**tiny_batch(1, 5))
        model(**tiny_batch(1, 3))
    with pytest.raises(RuntimeError, match=r"cannot join the 2 forward calls.*\.calls\(layer\)"):
        att.get(0)
    assert len(att.calls(0)) == 2
    att.clear()
    with pytest.raises(RuntimeError, match="run a forward pass"):
        att.get(0)


def test_implementation_and_hooks_restored_after_an_exception() -> None:
    model = _sdpa("gemma3")
    before = hook_counts(model)
    with pytest.raises(ZeroDivisionError), AttentionCapture(model):
        assert _impl(model) == "eager"
        _ = 1 / 0
    assert _impl(model) == "sdpa"
    assert hook_counts(model) == before
    assert all(not m._forward_hooks for m in model.modules())


def test_eager_model_stays_eager() -> None:
    model = tiny_model("llama")
    model.set_attn_implementation("eager")
    with AttentionCapture(model, layers=0) as att, torch.no_grad():
        model(**tiny_batch(1, 3))
    assert att.get(0).shape == (1, HEADS, 3, 3)
    assert _impl(model) == "eager"


def test_missing_weights_raise_instead_of_wrong_numbers() -> None:
    model = _sdpa("llama")

    def drop_weights(module: nn.Module, args: tuple, output: Any) -> Any:
        return output[0], None

    handle = model.model.layers[1].self_attn.register_forward_hook(drop_weights)
    try:
        with (
            AttentionCapture(model),
            torch.no_grad(),
            pytest.raises(RuntimeError, match=r"model.layers.1.self_attn.*returned NoneType"),
        ):
            model(**tiny_batch(1, 3))
    finally:
        handle.remove()
    assert _impl(model) == "sdpa"


def test_a_model_that_will_not_switch_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _sdpa("llama")
    monkeypatch.setattr(model, "set_attn_implementation", lambda *args, **kwargs: None)
    with pytest.raises(RuntimeError, match=r"could not switch .* from attention implementation"):
        AttentionCapture(model).register()
    assert all(not m._forward_hooks for m in model.modules())


def test_bad_inputs() -> None:
    model = _sdpa("llama")
    with pytest.raises(ValueError, match=r"layer 3 is out of range.*3 layers \(0\.\.2\)"):
        AttentionCapture(model, layers=[0, 3])
    with pytest.raises(TypeError, match=r"via='eager'\) needs a transformers model"):
        AttentionCapture(nn.Linear(2, 2), via="eager")
    with pytest.raises(ValueError, match="cannot find the transformer blocks"):
        AttentionCapture(nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"via='flash': use 'auto', 'eager' or 'sdpa'"):
        AttentionCapture(model, via="flash")
    with AttentionCapture(model, layers=[0]) as att, torch.no_grad():
        model(**tiny_batch(1, 3))
    with pytest.raises(ValueError, match="layer 7 is out of range"):
        att.get(7)
    with pytest.raises(KeyError, match=r"layer 1 was not captured; captured layers: \[0\]"):
        att.get(1)
    capture = AttentionCapture(model, layers=0)
    with capture, pytest.raises(RuntimeError, match="already registered"):
        capture.register()
    assert _impl(model) == "sdpa"
