"""traitinterp's core/ quick reference, run block by block with only the imports changed.

Part 1: Types, Hooks, Generation with Hooks (part 2, ``test_seed_traitinterp_math.py``:
Extraction Methods, Math Functions; part 3, ``test_seed_traitinterp_backend.py``: the rest).
``from core import X`` / ``from utils.<module> import X`` become ``from trait_lab import X``,
``core.types`` / ``core.math`` become ``trait_lab.types`` / ``trait_lab.math``. Substitutions:
the 3-block tiny llama of ``trait_lab.testing`` (the page's layers 14, 15, 16 become 0, 1, 2),
a tmp experiments root, small sizes. Ground truth: Hugging Face ``output_hidden_states`` and
``generate``, plain torch forward hooks, a no-cache recompute.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.helpers import edit_block_output, hook_counts
from trait_lab import (
    AblationHook,
    ActivationCappingHook,
    CaptureConfig,
    CaptureHook,
    HookedGenerator,
    MultiLayerCapture,
    MultiLayerProjection,
    MultiLayerSteering,
    PerPositionSteeringHook,
    ProjectionHook,
    SteeringConfig,
    SteeringHook,
    capture_at_position,
    detect_contribution_paths,
    get_hook_path,
    get_model_variant,
    load_activation_metadata,
    select_vector,
    select_vectors,
    summarize_judge_scores,
)
from trait_lab.core.paths import extraction_dir
from trait_lab.extraction.pipeline import extract_trait
from trait_lab.extraction.plan import ExtractionSettings
from trait_lab.testing import tiny_batch, tiny_model, tiny_tokenizer
from trait_lab.types import (
    ActivationMetadata,
    JudgeResult,
    ModelVariant,
    ProjectionConfig,
    ProjectionEntry,
    ProjectionRecord,
    SteeringResults,
    SteeringRunRecord,
    VectorResult,
    VectorSpec,
)

pytestmark = pytest.mark.usefixtures("one_thread")

L14, L15, L16 = 0, 1, 2  # the page's layers on the 3-block tiny llama
HIDDEN = 32


@pytest.fixture(scope="module")
def model() -> nn.Module:
    return tiny_model("llama")


@pytest.fixture(scope="module")
def inputs() -> dict[str, torch.Tensor]:
    return tiny_batch(2, 6, seed=1)


def _hf_hidden(model: nn.Module, **inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        return model(**inputs, output_hidden_states=True).hidden_states


def _assert_block_output(model: nn.Module, layer: int, got: torch.Tensor, hidden: tuple) -> None:
    """``got`` is block ``layer``'s output: HF's ``hidden_states[layer + 1]``, except that HF's
    last entry has the final norm applied, so the last block is compared through that norm."""
    if layer + 1 < len(hidden) - 1:
        torch.testing.assert_close(got, hidden[layer + 1])
    else:
        with torch.no_grad():
            torch.testing.assert_close(model.model.norm(got), hidden[-1])


def _logits(model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs).logits


def _with_plain_hook(model, layer, fn, run):
    """``run()`` with a plain torch forward hook replacing block ``layer``'s output by ``fn(h)``."""
    handle = model.model.layers[layer].register_forward_hook(edit_block_output(fn))
    try:
        return run()
    finally:
        handle.remove()


def _greedy(model, inputs, n=5):
    return model.generate(**inputs, max_new_tokens=n, do_sample=False, pad_token_id=0)


# ----------------------------------------------------------------------------------- Types


def test_types_specs_configs_and_serialization() -> None:
    spec = VectorSpec(
        layer=9,
        component="residual",  # residual, attn_contribution, mlp_contribution, etc.
        position="response[:]",  # extraction position
        method="probe",  # probe, mean_diff, gradient
        weight=0.9,  # coefficient for steering, relative weight for projection
    )
    config = ProjectionConfig.single(9, "residual", "response[:]", "probe", weight=0.9)
    assert config.vectors == (spec,) and not config.is_ensemble
    config = ProjectionConfig(
        vectors=[
            VectorSpec(9, "attn_contribution", "response[:]", "probe", 0.5),
            VectorSpec(12, "residual", "response[:]", "probe", 0.3),
            VectorSpec(15, "residual", "response[:]", "probe", 0.2),
        ]
    )
    weights = config.normalized_weights  # [0.5, 0.3, 0.2]
    assert weights == pytest.approx([0.5, 0.3, 0.2]) and sum(weights) == pytest.approx(1.0)
    d = spec.to_dict()
    spec = VectorSpec.from_dict(d)
    assert spec == VectorSpec(9, "residual", "response[:]", "probe", 0.9)
    assert ProjectionConfig.from_dict(config.to_dict()) == config
    # the other names of the page's import lines exist and are the record types
    for cls in (ActivationMetadata, ProjectionEntry, ProjectionRecord, SteeringRunRecord):
        assert callable(cls.from_dict)
    assert callable(SteeringResults) and callable(JudgeResult) and callable(ModelVariant)


def test_types_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="component"):
        VectorSpec(9, component="resid")
    with pytest.raises(ValueError, match="sum to 0"):
        _ = ProjectionConfig([VectorSpec(1, weight=0.0)]).normalized_weights
    with pytest.raises(ValueError, match="steering results need"):
        VectorResult(9, "residual", "response[:]", "probe", "extraction", delta=1.0)


TEMPLATE = (  # the starter traits' prompts are conversations: the tokenizer needs a template
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> "
    "{% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


@pytest.fixture(scope="module")
def experiments(model, tmp_path_factory) -> Path:
    """A tmp experiments root holding experiment "demo" and its extraction of "refusal"."""
    root = tmp_path_factory.mktemp("experiments")
    (root / "demo").mkdir()
    config = {"model_variants": {"instruct": {"model": None}}, "default_variant": "instruct"}
    (root / "demo" / "config.json").write_text(json.dumps(config))
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = TEMPLATE
    settings = ExtractionSettings(methods=("mean_diff", "probe"), layers=(0, 1, 2))
    extract_trait(
        model, tokenizer, "refusal", extraction_dir("demo", "refusal", "instruct", root), settings
    )
    return root


def test_types_from_an_experiment(experiments, monkeypatch) -> None:
    monkeypatch.setenv("TRAIT_LAB_EXPERIMENTS", str(experiments))  # instead of the user's
    experiment, trait = "demo", "refusal"
    best = select_vector(experiment, trait)  # VectorResult — walks the validation hierarchy
    top = select_vectors(experiment, trait, n=3)  # List[VectorResult]
    assert isinstance(best, VectorResult) and len(top) == 3
    assert all(isinstance(r, VectorResult) for r in top) and top[0] == best
    assert [r.effect_size for r in top] == sorted((r.effect_size for r in top), reverse=True)
    spec = best.to_vector_spec(weight=1.0)  # Convert to VectorSpec
    assert (spec.layer, spec.method, spec.weight) == (best.layer, best.method, 1.0)
    print(best.delta, best.coherence)  # populated only when best.source == 'steering'
    assert best.source == "extraction" and best.delta is None and best.coherence is None
    variant = get_model_variant(experiment)  # ModelVariant(name, model, lora)
    assert variant == ModelVariant("instruct", None, None)
    scores = [{"trait": 40.0, "coherence": 80.0}, {"trait": 60.0, "coherence": 90.0}]
    result = summarize_judge_scores(scores)  # JudgeResult(trait_mean, coherence_mean, n, ...)
    assert (result.trait_mean, result.coherence_mean, result.n) == (50.0, 85.0, 2)
    meta = load_activation_metadata(experiment, trait, variant)  # ActivationMetadata
    assert isinstance(meta, ActivationMetadata)
    assert (meta.n_layers, meta.hidden_dim, meta.captured_layers) == (3, HIDDEN, (0, 1, 2))
    assert sorted(meta.activation_norms) == [0, 1, 2]
    assert all(v > 0 for v in meta.activation_norms.values())
    with pytest.raises(FileNotFoundError, match="trait-lab extract"):
        load_activation_metadata(experiment, "optimism", variant)
    with pytest.raises(ValueError, match="no model variant 'chat'"):
        load_activation_metadata(experiment, trait, "chat")


# ----------------------------------------------------------------------------------- Hooks


def test_capture_hook_one_layer(model, inputs) -> None:
    with CaptureHook(model, "model.layers.2") as hook:  # the page's "model.layers.16"
        model(**inputs)
    activations = hook.get()  # [batch, seq, hidden]
    assert activations.shape == (2, 6, HIDDEN)
    _assert_block_output(model, L16, activations, _hf_hidden(model, **inputs))
    with CaptureHook(model, "model.layers.1") as hook:
        model(**inputs)
    _assert_block_output(model, L15, hook.get(), _hf_hidden(model, **inputs))


def test_multi_layer_capture(model, inputs) -> None:
    hidden = _hf_hidden(model, **inputs)
    with MultiLayerCapture(model, layers=[L14, L15, L16]) as capture:
        model(**inputs)
    acts = capture.get(L16)
    all_acts = capture.get_all()  # {14: tensor, 15: tensor, 16: tensor}
    assert sorted(all_acts) == [L14, L15, L16] and torch.equal(acts, all_acts[L16])
    for layer, tensor in all_acts.items():
        _assert_block_output(model, layer, tensor, hidden)
    before = hook_counts(model)
    with MultiLayerCapture(model) as capture:  # layers=None = all
        model(**inputs)
    assert sorted(capture.get_all()) == [0, 1, 2] and hook_counts(model) == before


def test_capture_at_position(model) -> None:
    tokenizer = tiny_tokenizer()
    prompts = ["hello there", "a cat", "how are you today?"]
    acts = capture_at_position(
        model,
        tokenizer,
        prompts,
        layers=1,  # the page's 49
        position="prompt[-1]",
        pool="last",
    )  # [n_prompts, hidden_dim]
    assert acts.shape == (3, HIDDEN) and acts.dtype == torch.float32 and acts.device.type == "cpu"
    alone = []  # ground truth: each prompt run alone, no padding
    for p in prompts:
        ids = torch.tensor([tokenizer(p)["input_ids"]])
        alone.append(_hf_hidden(model, input_ids=ids))
    for i, hidden in enumerate(alone):
        torch.testing.assert_close(acts[i], hidden[2][0, -1])
    # layers=[list] -> [n_prompts, n_layers, hidden_dim]
    many = capture_at_position(model, tokenizer, prompts, layers=[0, 1], position="prompt[-3:]")
    assert many.shape == (3, 2, HIDDEN)
    torch.testing.assert_close(many[2, 0], alone[2][1][0, -3:].mean(dim=0))
    first = capture_at_position(model, tokenizer, prompts, 1, "all[:]", pool="first")
    torch.testing.assert_close(first[1], alone[1][2][0, 0])
    rows = capture_at_position(model, tokenizer, prompts, 1, "prompt[-3:]", pool="none")
    assert [tuple(r.shape) for r in rows] == [(3, HIDDEN)] * 3
    fmt = capture_at_position(model, tokenizer, prompts, 1, "prompt[-1]", pre_formatted=True)
    torch.testing.assert_close(fmt, acts)
    with pytest.raises(ValueError, match="pool"):
        capture_at_position(model, tokenizer, prompts, 1, "prompt[-1]", pool="max")


def test_steering_hook_generate(model, inputs, tmp_path) -> None:
    torch.save(torch.randn(HIDDEN), tmp_path / "probe_layer16.pt")
    vector = torch.load(tmp_path / "probe_layer16.pt")  # the page's 'vectors/probe_layer16.pt'
    with SteeringHook(model, vector, "model.layers.1", coefficient=1.5):
        output = _greedy(model, inputs)
    expected = _with_plain_hook(
        model, 1, lambda h: h + 1.5 * vector, lambda: _greedy(model, inputs)
    )
    assert torch.equal(output, expected)
    assert not torch.equal(output, _greedy(model, inputs))  # the test can fail: steering matters


def test_ablation_hook(model, inputs) -> None:
    direction = torch.randn(HIDDEN)
    with AblationHook(model, direction, "model.layers.1"):  # x' = x - (x · r̂) * r̂
        output = _greedy(model, inputs)
        logits = _logits(model, inputs)
    r = direction / direction.norm()

    def ablate(h: torch.Tensor) -> torch.Tensor:
        return h - (h @ r)[..., None] * r

    expected = _with_plain_hook(model, 1, ablate, lambda: _greedy(model, inputs))
    expected_logits = _with_plain_hook(model, 1, ablate, lambda: _logits(model, inputs))
    assert torch.equal(output, expected)
    torch.testing.assert_close(logits, expected_logits)


def test_hook_paths_and_architecture_detection(model) -> None:
    assert get_hook_path(16) == "model.layers.16"  # residual
    assert get_hook_path(2, "attn_contribution", model=model) == "model.layers.2.self_attn.o_proj"
    gemma = tiny_model("gemma2")
    assert get_hook_path(2, "attn_contribution", model=gemma) == (
        "model.layers.2.post_attention_layernorm"
    )
    # k_proj / v_proj need no model; only the contribution components do
    assert get_hook_path(16, "k_proj") == "model.layers.16.self_attn.k_proj"
    assert get_hook_path(16, "v_proj") == "model.layers.16.self_attn.v_proj"
    with pytest.raises(ValueError, match="pass model="):
        get_hook_path(16, "mlp_contribution")
    assert detect_contribution_paths(gemma) == {
        "attn_contribution": "post_attention_layernorm",
        "mlp_contribution": "post_feedforward_layernorm",
    }
    for arch in ("llama", "mistral", "qwen2"):
        assert detect_contribution_paths(tiny_model(arch)) == {
            "attn_contribution": "self_attn.o_proj",
            "mlp_contribution": "mlp.down_proj",
        }


def test_unknown_architecture_raises_with_diagnostics() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mixer = nn.Linear(4, 4)

    odd = nn.Module()
    odd.model = nn.Module()
    odd.model.layers = nn.ModuleList([Block(), Block()])
    with pytest.raises(ValueError, match=r"unknown architecture.*Modules in model\.layers\.0"):
        detect_contribution_paths(odd)


def test_projection_hooks(model, inputs) -> None:
    vector, vec14, vec16 = torch.randn(3, HIDDEN)
    hidden = _hf_hidden(model, **inputs)
    with ProjectionHook(model, vector, "model.layers.1") as hook:  # the page's layer 16
        model(**inputs)
    scores = hook.get()  # [batch, seq] — already projected
    assert scores.shape == (2, 6)
    torch.testing.assert_close(scores, hidden[2] @ (vector / vector.norm()))
    with MultiLayerProjection(model, vectors_by_layer={L14: vec14, L15: vec16}) as proj:
        model(**inputs)
    scores = proj.get(L15)  # [batch, seq]
    torch.testing.assert_close(scores, hidden[2] @ (vec16 / vec16.norm()))
    torch.testing.assert_close(proj.get(L14), hidden[1] @ (vec14 / vec14.norm()))


def test_multi_layer_steering(model, inputs) -> None:
    vectors = {layer: torch.randn(HIDDEN) for layer in (L14, L15)}
    with MultiLayerSteering(model, configs=[(layer, v, 2.0) for layer, v in vectors.items()]):
        output = _greedy(model, inputs)
    handles = [
        model.model.layers[layer].register_forward_hook(edit_block_output(lambda h, v=v: h + 2 * v))
        for layer, v in vectors.items()
    ]
    try:
        expected = _greedy(model, inputs)
    finally:
        for handle in handles:
            handle.remove()
    assert torch.equal(output, expected)


def test_per_position_steering_through_generation(model) -> None:
    # Steer only tokens in range [12, 18): a 14-token prompt, so the range covers prompt
    # positions 12-13 and generated tokens 14-17. Ground truth: a no-cache forward over the
    # final sequence with a plain hook on the same absolute positions picks the same tokens.
    vector = torch.randn(HIDDEN) * 3
    inputs = tiny_batch(1, 14, seed=3)
    with PerPositionSteeringHook(
        model, vector, "model.layers.1", coefficient=1.5, token_range=(12, 18)
    ):
        output = _greedy(model, inputs, n=8)
    mask = torch.zeros(output.shape[1], 1)
    mask[12:18] = 1.0
    logits = _with_plain_hook(
        model, 1, lambda h: h + 1.5 * mask * vector, lambda: _logits(model, {"input_ids": output})
    )
    assert torch.equal(logits[0, 13:-1].argmax(-1), output[0, 14:])
    with pytest.raises(ValueError, match="start must be an int >= 0"):
        PerPositionSteeringHook(model, vector, 1, token_range=(-2, None))


def test_activation_capping(model, inputs) -> None:
    vector = torch.randn(HIDDEN)
    with ActivationCappingHook(model, vector, "model.layers.1", threshold=0.5):
        logits = _logits(model, inputs)  # h ← h + max(0, τ - ⟨h,v̂⟩)·v̂
    v = vector / vector.norm()

    def cap(h: torch.Tensor) -> torch.Tensor:
        return h + torch.clamp(0.5 - h @ v, min=0)[..., None] * v

    torch.testing.assert_close(
        logits, _with_plain_hook(model, 1, cap, lambda: _logits(model, inputs))
    )
    assert not torch.allclose(logits, _logits(model, inputs))


def test_hooks_fail_fast_on_invalid_inputs(model) -> None:
    with pytest.raises(ValueError, match="must be 1-D"):
        SteeringHook(model, torch.ones(2, HIDDEN), "model.layers.1")
    with pytest.raises(ValueError, match="must be 1-D"):
        AblationHook(model, torch.ones(1, HIDDEN), "model.layers.1")
    with pytest.raises(ValueError, match="zero vector"):
        AblationHook(model, torch.zeros(HIDDEN), "model.layers.1")
    with pytest.raises(ValueError, match="zero vector"):
        AblationHook(model, torch.full((HIDDEN,), 1e-12), "model.layers.1")
    with pytest.raises(ValueError, match="not found"):
        CaptureHook(model, "model.layer.1")


# ----------------------------------------------------------------------- Generation with Hooks


def test_hooked_generator_capture_stream_and_steering(model, inputs, capsys) -> None:
    gen = HookedGenerator(model)
    input_ids, attention_mask = inputs["input_ids"], inputs["attention_mask"]
    results = gen.generate(
        input_ids,
        attention_mask,
        max_new_tokens=5,  # the page's 50
        capture=CaptureConfig(layers=[L14, L15], components=["residual"]),
    )
    # results[0].token_ids: generated tokens; activations[14]['residual']: [n_tokens, hidden]
    for row, result in enumerate(results):
        n = len(result.token_ids)
        assert result.activations[L14]["residual"].shape == (n, HIDDEN)
        full = torch.cat([input_ids[row], torch.tensor(result.token_ids)])[None]
        hidden = _hf_hidden(model, input_ids=full)  # no-cache recompute of the final sequence
        for layer in (L14, L15):
            torch.testing.assert_close(
                result.activations[layer]["residual"], hidden[layer + 1][0, 6 : 6 + n]
            )
    # Streaming for UI (single sample)
    ids, mask = input_ids[:1], attention_mask[:1]
    for tok in gen.stream(ids, mask, capture=CaptureConfig(layers=[L14])):
        print(tok.token_id, tok.activations[L14]["residual"].shape)
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(re.fullmatch(r"\d+ torch\.Size\(\[1, 32\]\)", x) for x in lines)
    same = gen.generate(ids, mask, capture=CaptureConfig(layers=[L14]))[0]
    assert [int(x.split()[0]) for x in lines] == same.token_ids
    # Generation with steering
    v = torch.randn(HIDDEN)
    steering = [SteeringConfig(vector=v, layer=L14, coefficient=1.5)]
    results = gen.generate(input_ids, attention_mask, steering=steering)
    expected = _with_plain_hook(
        model, L14, lambda h: h + 1.5 * v, lambda: _greedy(model, inputs, n=32)
    )
    for row, result in enumerate(results):
        assert result.token_ids == expected[row, 6 : 6 + len(result.token_ids)].tolist()


def test_hooked_generator_bad_inputs(model) -> None:
    gen = HookedGenerator(model)
    ids = tiny_batch(2, 4, left_pad=(0, 0))["input_ids"]
    with pytest.raises(ValueError, match="LEFT padding"):
        gen.generate(ids, torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]), max_new_tokens=2)
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        gen.generate(ids, max_new_tokens=0)
    with pytest.raises(ValueError, match="unknown components"):
        CaptureConfig(layers=[0], components=["resid"])
