"""The default model loaded with a CPU/disk ``device_map`` against the plain load.

``load_model(device_map=..., offload_folder=...)`` puts two of SmolLM2's 30 blocks on "disk"
(weights read from the checkpoint or the offload folder at every forward, parameters left on
"meta") and everything else on "cpu". The same CPU kernels then run on the same weights, so
every result must be bit-identical (``torch.equal``) to the ``default_model`` fixture's, except
where a row is compared with that row run alone (a batch of 1 may round a matmul differently:
``assert_close`` at 1e-4 there, far below what steering changes).
"""

from __future__ import annotations

import pytest
import torch

from trait_lab.activations.capture import capture_at_position
from trait_lab.generation.generator import (
    CaptureConfig,
    HookedGenerator,
    ProjectionSpec,
    SteeringConfig,
)
from trait_lab.hooks import (
    AblationHook,
    ActivationCappingHook,
    MultiLayerCapture,
    MultiLayerProjection,
    PerSampleSteering,
    SteeringHook,
)
from trait_lab.models.architectures import input_device
from trait_lab.models.loading import load_model

pytestmark = pytest.mark.integration

DISK = (3, 17)
PROMPTS = ["Tell me about the sea.", "What is two plus two?"]


@pytest.fixture(scope="module")
def spread(default_model, tmp_path_factory):
    """The default model under a device_map with blocks 3 and 17 on disk."""
    plain, _ = default_model
    placed = {"model.embed_tokens": "cpu", "model.norm": "cpu", "model.rotary_emb": "cpu"}
    placed["lm_head"] = "cpu"
    for i in range(plain.config.num_hidden_layers):
        placed[f"model.layers.{i}"] = "disk" if i in DISK else "cpu"
    model, _ = load_model(device_map=placed, offload_folder=tmp_path_factory.mktemp("offload"))
    return model


@pytest.fixture(scope="module")
def batch(default_model):
    _, tok = default_model
    return dict(tok(PROMPTS, return_tensors="pt", padding=True))


def _unit(seed: int) -> torch.Tensor:
    v = torch.randn(576, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


def _logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def test_offloaded_and_equal_forward(default_model, spread, batch):
    plain, _ = default_model
    assert spread.hf_device_map["model.layers.3"] == "disk"
    assert spread.model.layers[3].self_attn.q_proj.weight.device.type == "meta"
    assert input_device(spread) == torch.device("cpu")
    with torch.no_grad():
        ref = plain(**batch, output_hidden_states=True)
        out = spread(**batch, output_hidden_states=True)
    assert torch.equal(ref.logits, out.logits)
    for a, b in zip(ref.hidden_states, out.hidden_states, strict=True):
        assert torch.equal(a, b)
    with MultiLayerCapture(spread, [2, 3, 17], to_cpu=True) as cap, torch.no_grad():
        spread(**batch)
    for layer in (2, 3, 17):
        assert torch.equal(cap.get(layer), ref.hidden_states[layer + 1])


def test_steering_modes_and_projection_equal_plain(default_model, spread, batch):
    plain, _ = default_model
    v = _unit(0)
    hooks = [
        lambda m: SteeringHook(m, v, 3, coefficient=8.0),
        lambda m: AblationHook(m, v, 17),
        lambda m: ActivationCappingHook(m, v, 3, threshold=5.0),
        lambda m: ActivationCappingHook(m, v, 17, ceiling=-5.0),
    ]
    unsteered = _logits(plain, batch)
    for make in hooks:
        with make(plain):
            ref = _logits(plain, batch)
        with make(spread):
            got = _logits(spread, batch)
        assert torch.equal(got, ref)
        assert not torch.equal(got, unsteered)
    with MultiLayerProjection(plain, {3: v, 17: v}) as p_ref:
        _logits(plain, batch)
    with MultiLayerProjection(spread, {3: v, 17: v}, to_cpu=True) as p_got:
        _logits(spread, batch)
    for layer in (3, 17):
        assert torch.equal(p_got.get(layer), p_ref.get(layer))


def test_per_row_steering_stays_per_row(default_model, spread):
    plain, tok = default_model
    one = dict(tok(PROMPTS[:1], return_tensors="pt"))
    two = {k: t.repeat(2, 1) for k, t in one.items()}  # the same prompt, two coefficients
    v, coefficients = _unit(1), [6.0, -6.0]
    with PerSampleSteering(spread, [(3, v, c, (i, i + 1)) for i, c in enumerate(coefficients)]):
        got = _logits(spread, two)
    for i, c in enumerate(coefficients):
        with SteeringHook(plain, v, 3, coefficient=c):
            ref = _logits(plain, one)
        torch.testing.assert_close(got[i : i + 1], ref, rtol=1e-4, atol=1e-4)
    assert not torch.allclose(got[0], got[1], atol=1e-2)


def test_generator_equals_plain_and_generate(default_model, spread, batch):
    plain, _ = default_model
    with torch.no_grad():
        ref = plain.generate(**batch, max_new_tokens=4, do_sample=False)
    prompt_len = batch["input_ids"].shape[1]
    out = HookedGenerator(spread).generate(**batch, max_new_tokens=4)
    for i, row in enumerate(out):
        expected = ref[i, prompt_len:].tolist()
        assert row.token_ids == expected[: len(row.token_ids)]
    v = _unit(2)
    options = dict(
        max_new_tokens=4,
        capture=CaptureConfig(layers=[3, 17]),
        projection=ProjectionSpec({17: v}),
        steering=[SteeringConfig(v, 3, coefficient=[8.0, -8.0])],
    )
    a = HookedGenerator(plain).generate(**batch, **options)
    b = HookedGenerator(spread).generate(**batch, **options)
    for row_a, row_b in zip(a, b, strict=True):
        assert row_a.token_ids == row_b.token_ids
        assert row_b.activations[17]["residual"].device.type == "cpu"
        assert torch.equal(row_a.activations[17]["residual"], row_b.activations[17]["residual"])
        assert torch.equal(row_a.projections[17], row_b.projections[17])


def test_capture_at_position_equals_plain(default_model, spread):
    plain, tok = default_model
    ref = capture_at_position(plain, tok, PROMPTS, [3, 17], "prompt[-2:]")
    got = capture_at_position(spread, tok, PROMPTS, [3, 17], "prompt[-2:]")
    assert got.device.type == "cpu"
    assert torch.equal(got, ref)
