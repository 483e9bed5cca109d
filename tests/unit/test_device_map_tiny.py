"""Models spread over devices (accelerate ``device_map``) against the same model on one device.

Each tiny model is dispatched with its embedding and one decoder layer on ``"disk"`` (weights in
an offload folder, read back at every forward, parameters left on ``"meta"``) and the rest on
``"cpu"``. Every forward then runs the same CPU kernels on the same weights, so results must be
bit-identical (``torch.equal``) to the plain model: logits and hidden states (HF
``output_hidden_states``), every steering mode, per-row steering (each row against that row
steered alone), captures (on the CPU), projections (against ``h · v̂`` from the plain model's
hidden states), gradients, attention weights and ``HookedGenerator`` (against ``model.generate``
and the plain model's own run).
"""

from __future__ import annotations

from pathlib import Path

import accelerate
import pytest
import torch
from torch import nn

from trait_lab.activations.capture import capture_at_position
from trait_lab.generation.generator import (
    CaptureConfig,
    HookedGenerator,
    ProjectionSpec,
    SamplingConfig,
    SteeringConfig,
)
from trait_lab.hooks import (
    AblationHook,
    ActivationCappingHook,
    AttentionCapture,
    GradientCapture,
    MultiLayerCapture,
    MultiLayerProjection,
    PerSampleSteering,
    SteeringHook,
)
from trait_lab.models.architectures import find_layers, input_device
from trait_lab.models.device_map import check_device_map, dispatch
from trait_lab.models.loading import load_model
from trait_lab.testing import TINY_ARCHITECTURES, tiny_batch, tiny_model, tiny_tokenizer

DISK_LAYER = 1


def offload_map(model: nn.Module, disk_layers: tuple[int, ...] = (DISK_LAYER,)) -> dict[str, str]:
    """Every top-level piece on "cpu", the input embedding and ``disk_layers`` on "disk"."""
    prefix, layers = find_layers(model)
    owner = prefix.rpartition(".")[0]
    embed = model.get_input_embeddings()
    placed: dict[str, str] = {}
    for name, _ in model.named_children():
        if name != owner.split(".")[0]:
            placed[name] = "cpu"
    for name, child in model.get_submodule(owner).named_children():
        path = f"{owner}.{name}"
        if path == prefix:
            for i in range(len(layers)):
                placed[f"{prefix}.{i}"] = "disk" if i in disk_layers else "cpu"
        else:
            placed[path] = "disk" if child is embed else "cpu"
    return placed


@pytest.fixture(scope="module", params=TINY_ARCHITECTURES)
def pair(request, tmp_path_factory) -> tuple[nn.Module, nn.Module]:
    """``(plain, offloaded)``: the same random weights, on one device and under a device_map."""
    plain = tiny_model(request.param)
    spread = tiny_model(request.param)
    dispatch(spread, offload_map(spread), tmp_path_factory.mktemp("offload"))
    return plain, spread


def _logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def _direction(seed: int) -> torch.Tensor:
    v = torch.randn(32, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


def test_map_really_offloads(pair):
    _, spread = pair
    devices = {p.device.type for p in spread.parameters()}
    assert devices == {"cpu", "meta"}  # the embedding and layer 1 live on disk only
    if not spread.config.tie_word_embeddings:  # else it is lm_head's weight, on "cpu"
        assert spread.get_input_embeddings().weight.device.type == "meta"
    assert input_device(spread) == torch.device("cpu")  # not next(parameters()).device


def test_forward_and_hidden_states_equal_plain(pair):
    plain, spread = pair
    batch = tiny_batch(2, 6, left_pad=(0, 2))
    with torch.no_grad():
        ref = plain(**batch, output_hidden_states=True)
        out = spread(**batch, output_hidden_states=True)
    assert torch.equal(ref.logits, out.logits)
    for a, b in zip(ref.hidden_states, out.hidden_states, strict=True):
        assert torch.equal(a, b)


def test_capture_equals_hidden_states_on_cpu(pair):
    plain, spread = pair
    batch = tiny_batch(2, 6, left_pad=(0, 2))
    with torch.no_grad():
        hidden = plain(**batch, output_hidden_states=True).hidden_states
    n = len(find_layers(plain)[1])
    both = ["residual", "block_input"]
    layers = list(range(n - 1))  # hidden_states[-1] is the final norm's output on transformers 5
    with MultiLayerCapture(spread, layers, components=both, to_cpu=True) as cap, torch.no_grad():
        spread(**batch)
    for layer in layers:
        got = cap.get(layer, "residual")
        assert got.device.type == "cpu"
        assert torch.equal(got, hidden[layer + 1])
        assert torch.equal(cap.get(layer, "block_input"), hidden[layer])  # an ":input" hook


@pytest.mark.parametrize("mode", ["add", "ablate", "cap", "ceiling"])
def test_every_steering_mode_equals_plain(pair, mode):
    plain, spread = pair
    batch = tiny_batch(2, 6, left_pad=(0, 2))
    v = _direction(1)

    def hook(model: nn.Module):
        if mode == "add":
            return SteeringHook(model, v, DISK_LAYER, coefficient=4.0)
        if mode == "ablate":
            return AblationHook(model, v, DISK_LAYER, coefficient=1.0)
        if mode == "cap":
            return ActivationCappingHook(model, v, DISK_LAYER, threshold=3.0)
        return ActivationCappingHook(model, v, DISK_LAYER, ceiling=-3.0)

    with hook(plain):
        ref = _logits(plain, batch)
    with hook(spread):
        got = _logits(spread, batch)
    assert torch.equal(got, ref)
    assert not torch.equal(got, _logits(plain, batch))  # the edit did something
    assert torch.equal(_logits(spread, batch), _logits(plain, batch))  # and was removed


@pytest.mark.parametrize("component", ["block_input", "attn_contribution", "mlp_contribution"])
def test_steering_inside_an_offloaded_block_equals_plain(pair, component):
    plain, spread = pair
    batch = tiny_batch(2, 6, left_pad=(0, 2))
    v = _direction(11)
    with SteeringHook(plain, v, DISK_LAYER, coefficient=4.0, component=component):
        ref = _logits(plain, batch)
    with SteeringHook(spread, v, DISK_LAYER, coefficient=4.0, component=component):
        got = _logits(spread, batch)
    assert torch.equal(got, ref)
    assert not torch.equal(got, _logits(plain, batch))


def test_per_row_steering_stays_per_row(pair):
    plain, spread = pair
    batch = tiny_batch(3, 5)
    vectors = [_direction(2), _direction(3), _direction(4)]
    coefficients = [3.0, 0.0, -5.0]
    configs = [(DISK_LAYER, vectors[i], coefficients[i], (i, i + 1)) for i in range(3)]
    with PerSampleSteering(spread, configs):
        got = _logits(spread, batch)
    for i in range(3):
        alone = {k: t[i : i + 1] for k, t in batch.items()}
        with SteeringHook(plain, vectors[i], DISK_LAYER, coefficient=coefficients[i]):
            ref = _logits(plain, alone)
        torch.testing.assert_close(got[i : i + 1], ref, rtol=1e-5, atol=1e-5)


def test_projection_equals_dot_product_of_hidden_states(pair):
    plain, spread = pair
    batch = tiny_batch(2, 6, left_pad=(0, 2))
    v = _direction(5)
    with torch.no_grad():
        hidden = plain(**batch, output_hidden_states=True).hidden_states
    with MultiLayerProjection(plain, {0: v, DISK_LAYER: v}) as ref:
        _logits(plain, batch)
    with MultiLayerProjection(spread, {0: v, DISK_LAYER: v}, to_cpu=True) as proj:
        _logits(spread, batch)
    for layer in (0, DISK_LAYER):
        h = hidden[layer + 1]
        assert torch.equal(proj.get(layer), ref.get(layer))
        assert torch.equal(proj.get_norms(layer), ref.get_norms(layer))
        # the formula, with another matmul kernel (rounding of a 32-term fp32 sum)
        torch.testing.assert_close(proj.get(layer), h @ v, rtol=0, atol=1e-6)
        torch.testing.assert_close(proj.get_norms(layer), h.norm(dim=-1), rtol=0, atol=1e-6)


def test_generator_greedy_equals_generate(pair):
    plain, spread = pair
    batch = tiny_batch(2, 5, left_pad=(0, 2))
    with torch.no_grad():
        ref = plain.generate(**batch, max_new_tokens=4, do_sample=False, eos_token_id=None)
    out = HookedGenerator(spread).generate(**batch, max_new_tokens=4, eos_token_id=[])
    for i, row in enumerate(out):
        assert row.token_ids == ref[i, 5:].tolist()
    seeded = dict(max_new_tokens=4, eos_token_id=[], sampling=SamplingConfig(True, seed=[1, 2]))
    a = HookedGenerator(plain).generate(**batch, **seeded)
    b = HookedGenerator(spread).generate(**batch, **seeded)
    assert [r.token_ids for r in a] == [r.token_ids for r in b]


def test_generator_with_steering_capture_projection_equals_plain(pair):
    plain, spread = pair
    batch = tiny_batch(2, 5, left_pad=(0, 2))
    v = _direction(6)
    options = dict(
        max_new_tokens=4,
        eos_token_id=[],
        capture=CaptureConfig(layers=[0, 2], prompt=True),
        projection=ProjectionSpec({DISK_LAYER: v}),
        steering=[
            SteeringConfig(v, DISK_LAYER, coefficient=[6.0, -6.0]),
            SteeringConfig(_direction(7), 2, coefficient=0.5, mode="cap"),
        ],
    )
    ref = HookedGenerator(plain).generate(batch["input_ids"], batch["attention_mask"], **options)
    got = HookedGenerator(spread).generate(batch["input_ids"], batch["attention_mask"], **options)
    for a, b in zip(ref, got, strict=True):
        assert a.token_ids == b.token_ids
        for layer in (0, 2):
            assert b.activations[layer]["residual"].device.type == "cpu"
            assert torch.equal(a.activations[layer]["residual"], b.activations[layer]["residual"])
            pa, pb = (
                a.prompt_activations[layer]["residual"],
                b.prompt_activations[layer]["residual"],
            )
            assert torch.equal(pa, pb)
        assert torch.equal(a.projections[DISK_LAYER], b.projections[DISK_LAYER])


def test_generator_per_row_coefficients_equal_each_row_alone(pair):
    plain, spread = pair
    batch = tiny_batch(2, 5)
    v = _direction(8)
    coefficients = [40.0, -40.0]
    steer = [SteeringConfig(v, DISK_LAYER, coefficient=coefficients)]
    got = HookedGenerator(spread).generate(
        **batch, max_new_tokens=4, eos_token_id=[], steering=steer
    )
    for i in range(2):
        alone = [SteeringConfig(v, DISK_LAYER, coefficient=coefficients[i])]
        ref = HookedGenerator(plain).generate(
            batch["input_ids"][i : i + 1], max_new_tokens=4, eos_token_id=[], steering=alone
        )
        assert got[i].token_ids == ref[0].token_ids
    unsteered = HookedGenerator(plain).generate(**batch, max_new_tokens=4, eos_token_id=[])
    assert [r.token_ids for r in got] != [r.token_ids for r in unsteered]  # steering acted


def test_capture_at_position_equals_plain(pair):
    plain, spread = pair
    tok = tiny_tokenizer()
    prompts = ["hello there", "a b", "what is 42?"]
    ref = capture_at_position(plain, tok, prompts, [0, DISK_LAYER], "prompt[-2:]", batch_size=2)
    got = capture_at_position(spread, tok, prompts, [0, DISK_LAYER], "prompt[-2:]", batch_size=2)
    assert got.device.type == "cpu"
    assert torch.equal(got, ref)


def test_gradients_and_attention_equal_plain(pair):
    plain, spread = pair
    batch = tiny_batch(2, 5, left_pad=(0, 1))
    results = []
    for model in (plain, spread):
        with GradientCapture(model, [0, DISK_LAYER]) as grads:
            model(**batch).logits[:, -1, 7].sum().backward()
        with AttentionCapture(model, layers=[DISK_LAYER]) as att, torch.no_grad():
            model(**batch)
        results.append((grads.get(0), grads.get(DISK_LAYER), att.get(DISK_LAYER)))
        model.zero_grad(set_to_none=True)
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_layers_running_on_two_devices():
    """Layer 1 runs on the GPU, the rest on the CPU: vectors follow, captures come back."""
    plain = tiny_model("llama")
    spread = tiny_model("llama")
    placed = {name: "cpu" for name in offload_map(spread)}
    placed[f"model.layers.{DISK_LAYER}"] = 0
    accelerate.dispatch_model(spread, placed, main_device="cpu")
    assert spread.model.layers[DISK_LAYER].mlp.down_proj.weight.device.type == "cuda"
    batch = tiny_batch(2, 5, left_pad=(0, 2))
    v = _direction(10)
    close = dict(rtol=1e-4, atol=1e-4)  # cuBLAS and CPU kernels round differently
    with SteeringHook(plain, v, DISK_LAYER, 3.0), MultiLayerCapture(plain, [0, 1]) as ref:
        ref_logits = _logits(plain, batch)
    with SteeringHook(spread, v, DISK_LAYER, 3.0), MultiLayerCapture(spread, [0, 1]) as cap:
        logits = _logits(spread, batch)
    assert cap.get(DISK_LAYER).device.type == "cuda"  # captures stay where they were made
    torch.testing.assert_close(logits.cpu(), ref_logits, **close)
    for layer in (0, 1):
        torch.testing.assert_close(cap.get(layer).cpu(), ref.get(layer), **close)
    steer = [SteeringConfig(v, DISK_LAYER, coefficient=[3.0, -3.0])]
    options = dict(max_new_tokens=4, eos_token_id=[], steering=steer)
    options["capture"] = CaptureConfig(layers=[DISK_LAYER])
    a = HookedGenerator(plain).generate(**batch, **options)
    b = HookedGenerator(spread).generate(**batch, **options)
    for row_a, row_b in zip(a, b, strict=True):
        assert row_a.token_ids == row_b.token_ids
        got = row_b.activations[DISK_LAYER]["residual"]
        assert got.device.type == "cpu"
        torch.testing.assert_close(got, row_a.activations[DISK_LAYER]["residual"], **close)


# ----------------------------------------------------------------------------- arguments


class TestDeviceMapArguments:
    def test_disk_needs_offload_folder(self):
        with pytest.raises(ValueError, match=r"'model.layers.1' on 'disk'.*offload_folder="):
            check_device_map({"model.layers.1": "disk"}, None, "load_model")

    @pytest.mark.parametrize("value", ["gpu", "cuda:x", True, -1, 1.5, "meta"])
    def test_bad_value_is_named(self, value):
        with pytest.raises(ValueError, match=r"device_map\['lm_head'\]=.*'cpu', 'disk'"):
            check_device_map({"lm_head": value}, None, "load_model")

    @pytest.mark.parametrize("value", ["fast", "disk", "", {}, ["auto"]])
    def test_bad_map_lists_strategies(self, value):
        with pytest.raises(ValueError, match=r"device_map=.*'auto'"):
            check_device_map(value, None, "load_model")

    def test_folder_without_map(self, tmp_path):
        with pytest.raises(ValueError, match="without a device_map"):
            check_device_map(None, tmp_path, "load_model")

    def test_good_maps_pass(self, tmp_path):
        assert check_device_map("auto", None, "x") == ("auto", None)
        assert check_device_map("cuda:1", None, "x") == ("cuda:1", None)
        good = {
            "a": 0,
            "b": "cpu",
            "c": "disk",
            "d": "cuda:1",
            "e": "mps",
            "f": torch.device("cpu"),
        }
        assert check_device_map(good, tmp_path, "x") == (good, str(tmp_path))

    def test_load_model_refuses_before_loading(self, tmp_path):
        with pytest.raises(ValueError, match=r"load_model: device_map puts 'model.layers.0'"):
            load_model(tmp_path / "missing", device_map={"model.layers.0": "disk"})

    def test_dispatch_names_unknown_module(self, tmp_path):
        model = tiny_model()
        with pytest.raises(ValueError, match=r"'model.layer.1' not found.*model.layers.1"):
            dispatch(model, {"model.layer.1": "cpu"}, tmp_path)

    def test_dispatch_names_a_gap(self, tmp_path):
        model = tiny_model()
        placed = offload_map(model)
        del placed["lm_head"], placed["model.layers.2"]
        with pytest.raises(ValueError, match=r"no device for 'model.layers.2.*'lm_head'.*'auto'"):
            dispatch(model, placed, tmp_path)

    def test_load_model_refuses_a_typo_that_from_pretrained_ignores(self, tmp_path):
        tiny_model().save_pretrained(tmp_path / "m")
        tiny_tokenizer().save_pretrained(tmp_path / "m")
        with pytest.raises(ValueError, match=r"'model.layer.0' not found.*model.layers.0"):
            load_model(tmp_path / "m", device_map={"model.layer.0": "cpu", "": "cpu"})

    def test_dispatch_refuses_a_used_offload_folder(self, tmp_path):
        first = tiny_model(seed=1)
        dispatch(first, offload_map(first), tmp_path)
        with pytest.raises(ValueError, match=r"already holds offloaded weights.*new or empty"):
            dispatch(tiny_model(), offload_map(tiny_model()), tmp_path)

    def test_dispatch_needs_a_dict(self):
        with pytest.raises(ValueError, match=r"must be a dict.*load_model"):
            dispatch(tiny_model(), "auto")  # type: ignore[arg-type]


def test_load_model_folder_with_disk_map_equals_plain(tmp_path: Path):
    """``load_model(folder, device_map=..., offload_folder=...)`` (from_pretrained's path)."""
    plain = tiny_model("llama")
    plain.save_pretrained(tmp_path / "m")
    tiny_tokenizer().save_pretrained(tmp_path / "m")
    spread, _ = load_model(
        tmp_path / "m", device_map=offload_map(plain), offload_folder=tmp_path / "off"
    )
    assert spread.hf_device_map[f"model.layers.{DISK_LAYER}"] == "disk"
    assert {p.device.type for p in spread.parameters()} == {"cpu", "meta"}
    batch = tiny_batch(2, 6, left_pad=(0, 2))
    v = _direction(9)
    with SteeringHook(plain, v, DISK_LAYER, coefficient=3.0):
        ref = _logits(plain, batch)
    with SteeringHook(spread, v, DISK_LAYER, coefficient=3.0):
        got = _logits(spread, batch)
    assert torch.equal(got, ref)
