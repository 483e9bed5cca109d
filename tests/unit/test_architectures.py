"""The architecture registry against each model's own residual algebra."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trait_lab.hooks import MultiLayerCapture
from trait_lab.models.architectures import (
    ARCHITECTURES,
    COMPONENTS,
    detect_contribution_paths,
    find_layers,
    get_hook_path,
    get_module,
    n_layers,
)
from trait_lab.testing import TINY_ARCHITECTURES, tiny_batch, tiny_model


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_every_tiny_architecture_is_registered(arch: str) -> None:
    model = tiny_model(arch)
    assert model.config.model_type in ARCHITECTURES
    assert n_layers(model) == 3


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_residual_capture_equals_output_hidden_states(arch: str) -> None:
    model = tiny_model(arch)
    batch = tiny_batch(2, 6, left_pad=(0, 2))
    comps = ["residual", "block_input"]
    with MultiLayerCapture(model, components=comps) as cap, torch.no_grad():
        hidden = model(**batch, output_hidden_states=True).hidden_states
    count = n_layers(model)
    for layer in range(count):
        assert torch.equal(cap.get(layer, "block_input"), hidden[layer])
        if layer < count - 1:  # HF's last entry has the final norm applied
            assert torch.equal(cap.get(layer, "residual"), hidden[layer + 1])
    final_norm = model.get_submodule(find_layers(model)[0].rpartition(".")[0])
    norm = next(
        m for n, m in final_norm.named_children() if n in ("norm", "ln_f", "final_layer_norm")
    )
    torch.testing.assert_close(norm(cap.get(count - 1, "residual")), hidden[-1])


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_block_out_is_block_in_plus_contributions(arch: str) -> None:
    model = tiny_model(arch)
    comps = ["residual", "block_input", "attn_contribution", "mlp_contribution"]
    with MultiLayerCapture(model, components=comps) as cap, torch.no_grad():
        model(**tiny_batch(2, 6, left_pad=(0, 3)))
    for layer in range(n_layers(model)):
        parts = {c: cap.get(layer, c) for c in comps}
        total = parts["block_input"] + parts["attn_contribution"] + parts["mlp_contribution"]
        torch.testing.assert_close(total, parts["residual"], rtol=1e-5, atol=1e-5)
        # the branches really carry signal, so the identity is not vacuous
        assert parts["attn_contribution"].abs().mean() > 1e-4
        assert parts["mlp_contribution"].abs().mean() > 1e-4


def test_contribution_paths_pre_and_post_norm() -> None:
    assert detect_contribution_paths(tiny_model("llama")) == {
        "attn_contribution": "self_attn.o_proj",
        "mlp_contribution": "mlp.down_proj",
    }
    assert detect_contribution_paths(tiny_model("gemma3")) == {
        "attn_contribution": "post_attention_layernorm",
        "mlp_contribution": "post_feedforward_layernorm",
    }


def test_hook_paths() -> None:
    llama = tiny_model("llama")
    assert get_hook_path(16) == "model.layers.16"
    assert get_hook_path(2, "k_proj", llama) == "model.layers.2.self_attn.k_proj"
    assert get_hook_path(-1, "v_proj", llama) == "model.layers.2.self_attn.v_proj"
    assert get_hook_path(0, "block_input", llama) == "model.layers.0:input"
    assert get_hook_path(1, "residual", tiny_model("gpt2")) == "transformer.h.1"
    assert get_hook_path(1, "mlp_contribution", tiny_model("gpt_neox")) == (
        "gpt_neox.layers.1.post_mlp_dropout"
    )
    for comp in COMPONENTS[:4]:
        get_module(llama, get_hook_path(1, comp, llama))


def test_fused_qkv_says_where_the_projection_is() -> None:
    with pytest.raises(ValueError, match=r"fused.*transformer\.h\.0\.attn\.c_attn"):
        get_hook_path(0, "k_proj", tiny_model("gpt2"))


def test_unknown_component_suggests_the_closest() -> None:
    with pytest.raises(ValueError, match=r"unknown component 'residul'.*Did you mean 'residual'"):
        get_hook_path(1, "residul")


def test_layer_out_of_range_names_the_count() -> None:
    with pytest.raises(ValueError, match=r"layer 7 is out of range: this model has 3 layers"):
        get_hook_path(7, "residual", tiny_model("llama"))


@pytest.mark.parametrize("component", ["attn_contribution", "mlp_contribution"])
def test_contribution_needs_model(component: str) -> None:
    with pytest.raises(ValueError, match=r"depends on the architecture.*pass model="):
        get_hook_path(1, component)


@pytest.mark.parametrize("component", ["k_proj", "v_proj"])
def test_projections_need_no_model(component: str) -> None:
    llama = tiny_model("llama")
    path = get_hook_path(2, component)
    assert path == f"model.layers.2.self_attn.{component}"
    assert path == get_hook_path(2, component, llama)
    assert isinstance(get_module(llama, path), nn.Linear)


def test_negative_layer_without_model_is_refused() -> None:
    with pytest.raises(ValueError, match=r"layer -1 counts from the end.*pass model="):
        get_hook_path(-1, "k_proj")


class _Renamed(nn.Module):
    """A tiny model's decoder under a wrapper with no config (so no model_type at all)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.model = inner.model


@pytest.mark.parametrize(
    ("arch", "how", "expected"),
    [
        ("llama", "my_custom_arch", ("self_attn.o_proj", "mlp.down_proj")),
        ("llama", "missing", ("self_attn.o_proj", "mlp.down_proj")),
        ("qwen3", "", ("self_attn.o_proj", "mlp.down_proj")),
        ("gemma2", "my_custom_arch", ("post_attention_layernorm", "post_feedforward_layernorm")),
        ("olmo2", "missing", ("post_attention_layernorm", "post_feedforward_layernorm")),
    ],
)
def test_unknown_model_type_falls_back_to_the_block_names(
    arch: str, how: str, expected: tuple[str, str]
) -> None:
    model = tiny_model(arch)
    if how == "missing":
        model = _Renamed(model)
    else:
        model.config.model_type = how
    assert detect_contribution_paths(model) == dict(
        zip(("attn_contribution", "mlp_contribution"), expected, strict=True)
    )
    assert get_hook_path(1, "mlp_contribution", model) == f"model.layers.1.{expected[1]}"
    assert get_hook_path(1, "v_proj", model) == "model.layers.1.self_attn.v_proj"


@pytest.mark.parametrize("arch", ["llama", "gemma2"])
def test_fallback_paths_obey_the_residual_algebra(arch: str) -> None:
    model = tiny_model(arch)
    batch = tiny_batch(2, 5, left_pad=(0, 2))
    with torch.no_grad():
        hidden = model(**batch, output_hidden_states=True).hidden_states
    model.config.model_type = "my_custom_arch"
    comps = ["attn_contribution", "mlp_contribution"]
    with MultiLayerCapture(model, components=comps) as cap, torch.no_grad():
        model(**batch)
    for layer in range(n_layers(model) - 1):  # HF's last entry has the final norm applied
        total = hidden[layer] + cap.get(layer, comps[0]) + cap.get(layer, comps[1])
        torch.testing.assert_close(total, hidden[layer + 1], rtol=1e-5, atol=1e-5)


class _OddBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attn, self.ff = nn.Linear(4, 4), nn.Linear(4, 4)


class _Odd(nn.Module):
    def __init__(self, block: type[nn.Module] = _OddBlock) -> None:
        super().__init__()
        self.model = nn.Module()
        self.model.layers = nn.ModuleList([block(), block()])


def test_unknown_architecture_with_odd_names_lists_the_block_modules() -> None:
    odd = _Odd()
    pattern = r"model_type ''.*model\.layers\.0 has neither.*model\.layers\.0: \['attn', 'ff'\]"
    with pytest.raises(ValueError, match=pattern):
        detect_contribution_paths(odd)
    with pytest.raises(ValueError, match=pattern):
        get_hook_path(0, "attn_contribution", odd)
    assert get_hook_path(1, "residual", odd) == "model.layers.1"  # needs no layout


def test_unknown_architecture_with_half_the_names_still_raises() -> None:
    gpt2 = tiny_model("gpt2")  # transformer.h.0.attn / mlp, with fused c_attn
    gpt2.config.model_type = "mystery"
    with pytest.raises(ValueError, match=r"model_type 'mystery'.*transformer\.h\.0: \[.*'attn'"):
        detect_contribution_paths(gpt2)
    llama = tiny_model("llama")
    llama.config.model_type = "mystery"
    del llama.model.layers[0].mlp.down_proj  # post_attention_layernorm alone is not Gemma-2
    with pytest.raises(ValueError, match=r"has neither.*Modules in model\.layers\.0"):
        detect_contribution_paths(llama)


def test_unknown_architecture_without_blocks() -> None:
    with pytest.raises(ValueError, match=r"unknown architecture.*cannot find the transformer"):
        detect_contribution_paths(nn.Sequential(nn.Linear(2, 2)))


def test_fallback_without_a_key_projection_says_so() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.self_attn, self.mlp = nn.Module(), nn.Module()
            self.self_attn.o_proj, self.mlp.down_proj = nn.Linear(4, 4), nn.Linear(4, 4)

    odd = _Odd(Block)
    assert get_hook_path(0, "attn_contribution", odd) == "model.layers.0.self_attn.o_proj"
    with pytest.raises(ValueError, match=r"'model\.layers\.0' has no self_attn\.k_proj module"):
        get_hook_path(0, "k_proj", odd)


def test_model_without_blocks_is_explained() -> None:
    with pytest.raises(ValueError, match="cannot find the transformer blocks"):
        find_layers(nn.Sequential(nn.Linear(2, 2)))


def test_unknown_module_lists_close_names() -> None:
    with pytest.raises(ValueError, match=r"'model\.layer\.1' not found.*model\.layers\.1"):
        get_module(tiny_model("llama"), "model.layer.1")
