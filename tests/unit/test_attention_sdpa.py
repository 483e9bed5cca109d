"""AttentionCapture on models without an eager switch: weights from their SDPA calls.

References: HF's ``output_attentions=True`` on an eager copy (a transformers model forced through
the SDPA tap), and for KempnerForge's plain-torch ``Transformer`` a softmax written out here from
the attention module's own projections.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from trait_lab.hooks import AttentionCapture
from trait_lab.hooks.sdpa import sdpa_weights
from trait_lab.testing import tiny_batch, tiny_kempnerforge_model, tiny_model


def _manual_kf_weights(model: nn.Module, tokens: torch.Tensor, layer: int) -> torch.Tensor:
    """Softmax(q kᵀ / √d) with causal masking, from the attention module's input."""
    attention = model.layers[str(layer)].attention
    seen: list[torch.Tensor] = []
    handle = attention.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    try:
        with torch.no_grad():
            model(tokens)
    finally:
        handle.remove()
    x = seen[0]
    b, s, d = x.shape
    heads = attention.n_heads
    q = attention.q_proj(x).view(b, s, heads, d // heads).transpose(1, 2)
    k = attention.k_proj(x).view(b, s, heads, d // heads).transpose(1, 2)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(d // heads)
    future = torch.triu(torch.ones(s, s, dtype=torch.bool), diagonal=1)
    return torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1).detach()


def test_kempnerforge_model_weights_equal_a_manual_softmax() -> None:
    model, tokens = tiny_kempnerforge_model(), tiny_batch(2, 6)["input_ids"]
    with torch.no_grad():
        outside = model(tokens)
    with AttentionCapture(model) as att, torch.no_grad():
        inside = model(tokens)
    assert att.via == "sdpa"
    torch.testing.assert_close(inside, outside, atol=0, rtol=0)  # the real SDPA still runs
    for layer in range(len(model.layers)):
        got = att.get(layer)
        assert got.shape == (2, model.layers["0"].attention.n_heads, 6, 6)
        torch.testing.assert_close(got, _manual_kf_weights(model, tokens, layer), atol=1e-6, rtol=0)
    assert F.scaled_dot_product_attention is torch._C._nn.scaled_dot_product_attention
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3"])
def test_transformers_sdpa_path_equals_output_attentions(arch: str) -> None:
    model = tiny_model(arch)
    model.set_attn_implementation("sdpa")
    batch = tiny_batch(2, 6, left_pad=(0, 2))
    reference = copy.deepcopy(model)
    reference.set_attn_implementation("eager")
    with torch.no_grad():
        expected = reference(**batch, output_attentions=True).attentions
    with AttentionCapture(model, via="sdpa") as att, torch.no_grad():
        model(**batch)
    assert model.config._attn_implementation == "sdpa"  # the tap never switches implementations
    real = batch["attention_mask"].bool()  # HF un-masks padded query rows for SDPA: skip them
    for layer in range(3):
        got, want = att.get(layer), expected[layer]
        assert got.shape == want.shape
        for row in range(2):
            torch.testing.assert_close(
                got[row][:, real[row]], want[row][:, real[row]], atol=1e-5, rtol=0
            )


def test_a_module_that_never_calls_sdpa_is_refused_not_reported() -> None:
    model = tiny_model("llama")
    model.set_attn_implementation("eager")  # eager attention makes no SDPA call
    no_call = r"made 0 calls to .*scaled_dot_product_attention"
    with (
        AttentionCapture(model, layers=[1], via="sdpa") as att,
        torch.no_grad(),
        pytest.raises(RuntimeError, match=no_call),
    ):
        model(**tiny_batch(1, 4))
    assert att.calls(1) == []
    assert F.scaled_dot_product_attention is torch._C._nn.scaled_dot_product_attention


class _DropoutAttention(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = x.unsqueeze(1)
        return F.scaled_dot_product_attention(q, q, q, dropout_p=0.5 if self.training else 0.0)


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = _DropoutAttention()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attention(x).squeeze(1)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.transformer = nn.Module()
        self.transformer.layers = nn.ModuleList([_Block()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.transformer.layers[0](x)


def test_dropout_in_training_mode_is_refused_and_the_tap_is_restored() -> None:
    net, x = _Net(), torch.randn(1, 3, 4)
    with AttentionCapture(net) as att:
        net.eval()
        net(x)
        assert att.get(0).shape == (1, 1, 3, 3)
        net.train()
        with pytest.raises(RuntimeError, match=r"dropout_p=0.5.*call model.eval\(\)"):
            net(x)
    assert F.scaled_dot_product_attention is torch._C._nn.scaled_dot_product_attention
    with pytest.raises(RuntimeError, match="boom"), AttentionCapture(net.eval()):
        raise RuntimeError("boom")
    assert F.scaled_dot_product_attention is torch._C._nn.scaled_dot_product_attention


def test_sdpa_weights_match_torch_on_masks_scale_and_gqa() -> None:
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 5, 8), torch.randn(2, 2, 7, 8), torch.randn(2, 2, 7, 8)
    bool_mask = torch.rand(2, 1, 5, 7) > 0.3
    bool_mask[..., 0] = True  # every query keeps a key
    float_mask = torch.randn(2, 1, 5, 7)
    k4, v4 = k.repeat_interleave(2, dim=1), v.repeat_interleave(2, dim=1)
    for mask in (bool_mask, float_mask, None):
        w = sdpa_weights(q, k, mask, scale=0.3, enable_gqa=True)
        out = F.scaled_dot_product_attention(q, k4, v4, attn_mask=mask, scale=0.3)
        torch.testing.assert_close(w @ v4, out, atol=1e-5, rtol=1e-5)
    w = sdpa_weights(q[:, :, :5], k4[:, :, :5], is_causal=True)
    out = F.scaled_dot_product_attention(q[:, :, :5], k4[:, :, :5], v4[:, :, :5], is_causal=True)
    torch.testing.assert_close(w @ v4[:, :, :5], out, atol=1e-5, rtol=1e-5)
    nothing = torch.zeros(1, 1, 2, 3, dtype=torch.bool)
    assert sdpa_weights(q[:1, :1, :2], k4[:1, :1, :3], nothing).abs().sum() == 0  # no NaN


def test_via_eager_needs_a_transformers_model() -> None:
    with pytest.raises(TypeError, match=r"via='eager'\) needs a transformers model.*Transformer"):
        AttentionCapture(tiny_kempnerforge_model(), via="eager")
