"""Issue 14, streams: a stream steers only while it computes, hooks fire or are refused,
and a prompt that overruns the context is refused before the forward.

Ground truths: a plain forward on the untouched model, each stream's own non-interleaved run,
and a forward counter that proves nothing ran before the error.
"""

from __future__ import annotations

import gc

import pytest
import torch
from torch import nn

from tests.faults.checks import clear_error
from tests.helpers import hook_counts, warm
from trait_lab.generation import (
    CaptureConfig,
    GenerationConfig,
    HookedGenerator,
    LocalBackend,
    SteeringConfig,
)
from trait_lab.hooks import CaptureHook, HookManager, SteeringHook, active_edits
from trait_lab.testing import tiny_batch, tiny_model, tiny_tokenizer

HIDDEN = 32


def _vector() -> torch.Tensor:
    return torch.randn(HIDDEN, generator=torch.Generator().manual_seed(1))


def _steer(coefficient: float) -> list[SteeringConfig]:
    return [SteeringConfig(_vector(), 1, coefficient)]


def _logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


# --- case 1: a suspended stream does not steer anyone else ----------------------------------


def test_suspended_stream_leaves_the_model_unsteered() -> None:
    model = tiny_model()
    batch = tiny_batch(1, 6)
    warm(model, batch)
    before, plain = hook_counts(model), _logits(model, batch)
    stream = HookedGenerator(model).stream(
        batch["input_ids"], max_new_tokens=5, steering=_steer(8.0), eos_token_id=[]
    )
    next(stream)  # advanced once, then left alone
    assert hook_counts(model) == before and active_edits(model) == 0
    assert torch.is_grad_enabled()  # no torch.no_grad() left open across the yield either
    assert torch.equal(_logits(model, batch), plain)
    stream.close()


def test_suspended_backend_stream_leaves_the_model_unsteered() -> None:
    backend = LocalBackend(tiny_model(), tiny_tokenizer(), use_chat_template=False)
    batch = tiny_batch(1, 6)
    plain = _logits(backend.model, batch)
    stream = backend.stream("hello", GenerationConfig(max_new_tokens=4), _steer(8.0))
    next(stream)
    assert active_edits(backend.model) == 0
    assert torch.equal(_logits(backend.model, batch), plain)


@pytest.mark.parametrize("capture", [None, CaptureConfig(layers=[2])])
def test_interleaved_streams_each_equal_their_own_run(capture: CaptureConfig | None) -> None:
    model = tiny_model()
    gen = HookedGenerator(model)
    ids = tiny_batch(1, 6)["input_ids"]
    kwargs = dict(max_new_tokens=6, eos_token_id=[], capture=capture)
    alone = {c: gen.generate(ids, steering=_steer(c), **kwargs)[0] for c in (6.0, -6.0)}
    assert alone[6.0].token_ids != alone[-6.0].token_ids  # the two steerings differ
    streams = {c: gen.stream(ids, steering=_steer(c), **kwargs) for c in (6.0, -6.0)}
    tokens: dict[float, list[int | None]] = {6.0: [], -6.0: []}
    for _ in range(6):  # A, B, A, B, ...
        for c, stream in streams.items():
            event = next(stream)
            tokens[c].append(event.token_ids[0])
            if capture is not None:
                expected = alone[c].activations[2]["residual"][len(tokens[c]) - 1]
                assert torch.equal(event.activations[2]["residual"][0], expected)
    assert tokens == {c: alone[c].token_ids for c in alone}


def test_closed_or_collected_stream_leaves_no_hooks() -> None:
    model = tiny_model()
    batch = tiny_batch(1, 5)
    warm(model, batch)
    before = hook_counts(model)
    gen = HookedGenerator(model)
    kwargs = dict(max_new_tokens=8, steering=_steer(3.0), capture=CaptureConfig(layers=[1]))
    closed = gen.stream(batch["input_ids"], **kwargs)
    next(closed)
    closed.close()
    collected = gen.stream(batch["input_ids"], **kwargs)
    next(collected)
    del collected
    gc.collect()
    assert hook_counts(model) == before


# --- case 3: a prompt that overruns the context -----------------------------------------------


class _Forwards:
    """Counts the model's forward calls."""

    def __init__(self, model: nn.Module) -> None:
        self.n = 0
        model.register_forward_pre_hook(lambda *_: setattr(self, "n", self.n + 1))


def test_over_long_prompt_is_refused_before_the_forward() -> None:
    model = tiny_model()  # max_position_embeddings = 256
    calls = _Forwards(model)
    ids = torch.randint(3, 100, (1, 250))
    gen = HookedGenerator(model)
    clear_error(
        ValueError,
        gen.generate,
        ids,
        max_new_tokens=10,
        mentions=["250 tokens", "max_new_tokens is 10", "context is 256", "shorten"],
    )
    stream = gen.stream(ids, max_new_tokens=10)
    clear_error(ValueError, next, stream, mentions=["250 tokens", "256"])
    assert calls.n == 0
    assert len(gen.generate(ids, max_new_tokens=6, eos_token_id=[])[0].token_ids) == 6  # fits


def test_over_long_prompt_through_the_backend_and_gpt2() -> None:
    backend = LocalBackend(tiny_model("gpt2"), tiny_tokenizer(), use_chat_template=False)
    calls = _Forwards(backend.model)  # gpt2 declares n_positions = 256
    clear_error(
        ValueError,
        backend.generate,
        ["a" * 300],
        GenerationConfig(max_new_tokens=4),
        mentions=["300 tokens", "256", "lower max_new_tokens"],
    )
    clear_error(ValueError, next, backend.stream("a" * 300), mentions=["300 tokens"])
    assert calls.n == 0


# --- case 4: hooks that would never fire, and edits of token ids ---------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda m: SteeringHook(m, torch.ones(HIDDEN), "model.layers", 1.0),
        lambda m: CaptureHook(m, "model.layers"),
        lambda m: HookManager(m).add_forward_hook("model.layers", lambda *a: None),
        lambda m: HookedGenerator(m).generate(
            tiny_batch(1, 4)["input_ids"],
            steering=[SteeringConfig(torch.ones(HIDDEN), "model.layers")],
        ),
    ],
)
def test_hook_on_a_module_list_is_refused(make) -> None:
    model = tiny_model()
    clear_error(
        ValueError, make, model, mentions=["'model.layers'", "ModuleList", "model.layers.0"]
    )
    assert active_edits(model) == 0


def test_steering_a_module_that_never_runs_raises_after_the_first_forward() -> None:
    model = tiny_model()
    model.model.unused = nn.Linear(HIDDEN, HIDDEN)
    steering = [SteeringConfig(torch.ones(HIDDEN), "model.unused", 5.0)]
    gen = HookedGenerator(model)
    ids = tiny_batch(1, 4)["input_ids"]
    clear_error(
        RuntimeError, gen.generate, ids, steering=steering, mentions=["model.unused", "never ran"]
    )
    assert active_edits(model) == 0


@pytest.mark.parametrize(
    "make",
    [
        lambda m: SteeringHook(m, torch.ones(4), "model.embed_tokens:input", 1.0),
        lambda m: HookedGenerator(m).generate(
            tiny_batch(1, 4)["input_ids"],
            steering=[SteeringConfig(torch.ones(4), "model.embed_tokens:input")],
        ),
    ],
)
def test_steering_token_ids_is_refused(make) -> None:
    clear_error(
        ValueError, make, tiny_model(), mentions=["'model.embed_tokens:input'", "token ids"]
    )


class _Lookup(nn.Module):
    """A wrapper whose input is token ids but which is not an ``nn.Embedding`` itself."""

    def __init__(self, embed: nn.Embedding) -> None:
        super().__init__()
        self.embed = embed

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embed(ids)


def test_steering_integer_input_of_any_module_raises_at_the_forward() -> None:
    model = tiny_model()
    batch = tiny_batch(1, 4)
    plain = _logits(model, batch)
    model.model.embed_tokens = _Lookup(model.model.embed_tokens)

    def run() -> None:
        with SteeringHook(model, torch.ones(4), "model.embed_tokens:input", 1.0):
            _logits(model, batch)

    clear_error(TypeError, run, mentions=["'model.embed_tokens:input'", "int64", "token ids"])
    assert active_edits(model) == 0
    assert torch.equal(_logits(model, batch), plain)
