"""Streaming: every event carries its own token's activations, checked against a no-cache forward.

Ground truth is an independent recompute: the whole prompt + generated sequence through the
model once, ``output_hidden_states=True``, with the same steering added by a plain torch hook.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.helpers import edit_block_output
from trait_lab.generation import (
    CaptureConfig,
    CaptureSpec,
    GenerationConfig,
    HookedGenerator,
    LocalBackend,
    ProjectionSpec,
    SteeringConfig,
    SteeringSpec,
    StreamEvent,
)
from trait_lab.models.architectures import find_layers
from trait_lab.testing import tiny_batch, tiny_model, tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

HIDDEN = 32
LAYER = 1  # read out below the last block (whose hidden_states entry is normed) ...
STEER_AT = 0  # ... and above the steered one (see tests.helpers.residual_stream)
PROMPT = "hello how are you"


def _vector(seed: int = 0) -> torch.Tensor:
    return torch.randn(HIDDEN, generator=torch.Generator().manual_seed(seed))


def _recompute(model: nn.Module, ids: list[int], steer: torch.Tensor | None) -> torch.Tensor:
    """Block ``LAYER``'s output at every position of ``ids``, by one no-cache forward."""
    _, blocks = find_layers(model)
    handle = None
    if steer is not None:
        handle = blocks[STEER_AT].register_forward_hook(edit_block_output(lambda h: h + steer))
    try:
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    finally:
        if handle is not None:
            handle.remove()
    return out.hidden_states[LAYER + 1][0]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_event_k_carries_token_k_and_its_own_activations(arch: str) -> None:
    model = tiny_model(arch)
    ids = tiny_batch(1, 6)["input_ids"]
    v = _vector()
    kwargs = {
        "capture": CaptureConfig(layers=[LAYER]),
        "steering": [SteeringConfig(v, STEER_AT, 1.5)],
        "eos_token_id": [],
    }
    gen = HookedGenerator(model)
    events = list(gen.stream(ids, None, 6, **kwargs))
    (result,) = gen.generate(ids, None, 6, **kwargs)
    assert [e.token_id for e in events] == result.token_ids
    assert [e.step for e in events] == list(range(6))
    full = _recompute(model, ids[0].tolist() + result.token_ids, 1.5 * v)
    for k, event in enumerate(events):
        acts = event.activations[LAYER]["residual"]
        assert acts.shape == (1, HIDDEN)
        generated = result.activations[LAYER]["residual"][k]
        torch.testing.assert_close(acts[0], generated, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(acts[0], full[6 + k], rtol=1e-5, atol=1e-5)


def test_batched_rows_and_an_early_eos_line_up_with_generate() -> None:
    model = tiny_model()
    batch = tiny_batch(3, 6, left_pad=(0, 2, 3))
    gen = HookedGenerator(model)
    free = gen.generate(batch["input_ids"], batch["attention_mask"], 5, eos_token_id=[])
    eos = free[1].token_ids[2]  # row 1 stops at its third token
    kwargs = {
        "capture": CaptureConfig(layers=[LAYER], prompt=True),
        "projection": ProjectionSpec({LAYER: _vector(1)}),
        "eos_token_id": eos,
    }
    events = list(gen.stream(batch["input_ids"], batch["attention_mask"], 5, **kwargs))
    results = gen.generate(batch["input_ids"], batch["attention_mask"], 5, **kwargs)
    assert events[0].prompt_activations is not None and events[1].prompt_activations is None
    for i, result in enumerate(results):
        mine = [e for e in events if e.token_ids[i] is not None]
        assert [e.token_ids[i] for e in mine] == result.token_ids
        for k, event in enumerate(mine):
            acts = event.activations[LAYER]["residual"][i]
            torch.testing.assert_close(acts, result.activations[LAYER]["residual"][k])
            torch.testing.assert_close(event.projections[LAYER][i], result.projections[LAYER][k])
    assert results[1].finish_reason == "eos" and len(results[1].token_ids) == 3
    assert events[2].finished[1] and events[2].activations is not None  # EOS has its own row


class _Forwards:
    """Counts forward calls of a model (a plain torch hook, removed on exit)."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.n = model, 0

    def __enter__(self) -> _Forwards:
        self.handle = self.model.register_forward_hook(lambda *_: setattr(self, "n", self.n + 1))
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()


@pytest.mark.parametrize(("capture", "lag"), [(None, 1), (CaptureConfig(layers=[LAYER]), 2)])
def test_a_token_waits_for_a_forward_only_when_something_is_captured(capture, lag) -> None:
    model = tiny_model()
    ids = tiny_batch(1, 5)["input_ids"]
    seen = []
    with _Forwards(model) as forwards:
        for _ in HookedGenerator(model).stream(ids, None, 4, capture=capture, eos_token_id=[]):
            seen.append(forwards.n)  # forwards run when event k arrives
        total = forwards.n
    assert seen == [k + lag for k in range(4)]
    assert total == 4 + (lag - 1)  # with capture: one extra step for the last token


def test_token_id_is_for_single_sample_streams() -> None:
    assert StreamEvent(0, [5], [False]).token_id == 5
    with pytest.raises(ValueError, match=r"single-sample stream.*token_ids\[i\]"):
        _ = StreamEvent(0, [5, 6], [False, False]).token_id


@pytest.fixture(scope="module")
def backend() -> LocalBackend:
    return LocalBackend(tiny_model(), tiny_tokenizer(), use_chat_template=False)


def test_backend_stream_with_capture_matches_generate_with_capture(backend) -> None:
    v = _vector(2)
    config = GenerationConfig(max_new_tokens=6)
    steering = [SteeringSpec(layer=STEER_AT, vector=v, coefficient=2.0)]
    capture = CaptureSpec(layers=[LAYER])
    tokens = list(backend.stream(PROMPT, config, steering, capture=capture))
    (result,) = backend.generate_with_capture([PROMPT], capture, config, steering)
    assert [t.token_id for t in tokens] == result.response_token_ids and tokens
    assert "".join(t.token for t in tokens) == result.response
    full = _recompute(backend.model, result.prompt_token_ids + result.response_token_ids, 2.0 * v)
    start = len(result.prompt_token_ids)
    for k, token in enumerate(tokens):
        acts = token.activations[LAYER]["residual"]
        assert acts.shape == (1, HIDDEN)
        torch.testing.assert_close(acts[0], result.response_activations[LAYER]["residual"][k])
        torch.testing.assert_close(acts[0], full[start + k], rtol=1e-5, atol=1e-5)


class TestBadCapture:
    def test_not_a_capture_spec(self, backend) -> None:
        with pytest.raises(TypeError, match=r"capture must be a CaptureConfig.*CaptureSpec\("):
            list(backend.stream(PROMPT, capture=[LAYER]))  # type: ignore[arg-type]

    def test_layer_out_of_range(self, backend) -> None:
        with pytest.raises(ValueError, match=r"layer 7 is out of range.*3 layers \(0..2\)"):
            list(backend.stream(PROMPT, capture=CaptureSpec(layers=[7])))

    def test_unknown_component(self) -> None:
        with pytest.raises(ValueError, match=r"unknown components.*allowed: residual"):
            CaptureSpec(layers=[LAYER], components=["resid"])

    def test_not_a_projection_spec(self) -> None:
        gen = HookedGenerator(tiny_model())
        bad: dict = {LAYER: _vector()}
        with pytest.raises(
            TypeError, match=r"projection must be a ProjectionSpec.*write projection="
        ):
            list(gen.stream(tiny_batch(1, 5)["input_ids"], projection=bad))
