"""LocalBackend on the default model: chat formatting, batching, steering, capture, streaming."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from trait_lab.generation.backends import CaptureSpec, GenerationConfig, LocalBackend, SteeringSpec

pytestmark = pytest.mark.integration

QUESTIONS = ["What is the capital of France?", "Name a colour.", "What is 2 + 2?"]
EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"


@pytest.fixture(scope="module")
def backend(default_model):
    return LocalBackend.from_model(*default_model)


def test_properties_and_chat_template(backend) -> None:
    assert (backend.n_layers, backend.hidden_dim) == (30, 576)
    assert backend.use_chat_template
    assert "<|im_start|>assistant" in backend.format("Hi")
    plain = LocalBackend.from_model(backend.model, backend.tokenizer, use_chat_template=False)
    assert plain.format("Hi") == "Hi"


def test_batched_generation_equals_one_by_one(backend) -> None:
    config = GenerationConfig(max_new_tokens=10, batch_size=2)
    together = backend.generate(QUESTIONS, config)
    alone = [backend.generate([q], GenerationConfig(max_new_tokens=10))[0] for q in QUESTIONS]
    assert together == alone
    assert "Paris" in together[0]


def test_capture_splits_prompt_and_response(backend) -> None:
    config = GenerationConfig(max_new_tokens=6)
    (result,) = backend.generate_with_capture(QUESTIONS[:1], CaptureSpec(layers=[5, 15]), config)
    n = len(result.response_token_ids)
    assert result.response_activations[15]["residual"].shape == (n, 576)
    assert result.prompt_activations[5]["residual"].shape == (len(result.prompt_token_ids), 576)
    assert result.response == backend.generate(QUESTIONS[:1], config)[0]


def test_steering_changes_the_text(backend) -> None:
    v = torch.randn(576, generator=torch.Generator().manual_seed(1))
    steer = [
        SteeringSpec(layer=8, vector=v / v.norm(), coefficient=150.0)
    ]  # ~ the median residual norm there
    config = GenerationConfig(max_new_tokens=12)
    assert backend.generate(QUESTIONS[:1], config, steer) != backend.generate(QUESTIONS[:1], config)


def test_stream_concatenates_to_the_generation_and_cancels(backend) -> None:
    config = GenerationConfig(max_new_tokens=12)
    pieces = [t.token for t in backend.stream(QUESTIONS[0], config)]
    assert "".join(pieces) == backend.generate(QUESTIONS[:1], config)[0]
    cancel = threading.Event()
    count = 0
    for _ in backend.stream(QUESTIONS[1], GenerationConfig(max_new_tokens=50), cancel=cancel):
        count += 1
        cancel.set()
    assert count <= 2


def test_forward_with_capture_equals_hidden_states(backend) -> None:
    batch = backend.tokenizer(["Hello there"], return_tensors="pt")
    acts = backend.forward_with_capture(
        batch["input_ids"], batch["attention_mask"], CaptureSpec([3])
    )
    with torch.no_grad():
        hidden = backend.model(**batch, output_hidden_states=True).hidden_states
    assert torch.equal(acts[3]["residual"], hidden[4])


def test_from_experiment_uses_its_config(default_model) -> None:
    backend = LocalBackend.from_experiment("default", root=str(EXPERIMENTS))
    assert backend.n_layers == 30 and backend.use_chat_template


def test_bf16_agrees_with_fp32_and_still_steers(default_model) -> None:
    """The fast path on the default model: its choices stay close to fp32's, and a steering
    vector changes its replies as it changes fp32's."""
    model, tokenizer = default_model
    fast = LocalBackend.from_model(model, tokenizer, precision="bf16")
    report = fast.agreement([*QUESTIONS, "Describe a cat.", "Plan a trip."], max_new_tokens=16)
    assert report.positions == 80 and report.top1 >= 0.9, report
    vector = torch.randn(576, generator=torch.Generator().manual_seed(0))
    steer = [SteeringSpec(vector=vector / vector.norm(), layer=8, coefficient=150.0)]
    config = GenerationConfig(max_new_tokens=12)
    for backend in (LocalBackend.from_model(model, tokenizer), fast):
        assert backend.generate(QUESTIONS[:1], config) != backend.generate(
            QUESTIONS[:1], config, steer
        )
    assert model.dtype == torch.float32  # the fp32 model is untouched
