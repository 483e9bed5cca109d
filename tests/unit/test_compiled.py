"""The compiled decode step (``HookedGenerator(model, compile=True)``).

Ground truth is the eager loop on the same model: greedy tokens must be equal, captured
activations, projection scores and norms equal up to float rounding, on every tiny
architecture, left-padded, with and without steering, capture and projection. A slider's new
values must reuse the graph; anything the compiled path cannot do must fall back to the eager
step with a notice, never give a different answer.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch
from torch._dynamo.utils import counters

from trait_lab.generation import (
    CaptureConfig,
    HookedGenerator,
    ProjectionSpec,
    SteeringConfig,
    compiled as compiled_module,
)
from trait_lab.generation.step_hooks import StepHooks
from trait_lab.hooks.base import active_edits
from trait_lab.testing import TINY_ARCHITECTURES, tiny_batch, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")

HIDDEN, STEPS = 32, 7
#: Architectures whose static cache has sliding-window layers (these decode eagerly).
SLIDING = {"mistral", "gemma2", "gemma3"}


def _vector(seed: int, rows: int | None = None) -> torch.Tensor:
    shape = (HIDDEN,) if rows is None else (rows, HIDDEN)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _hooks(seed: int, layer: int = 1, **steer: Any) -> dict[str, Any]:
    """Steering (per-row coefficients), prompt + token capture and a 3-vector projection."""
    config = dict(layer=layer, vector=_vector(seed), coefficient=[3.0, -2.0], positions="response")
    config.update(steer)
    return dict(
        steering=[SteeringConfig(**config)],
        capture=CaptureConfig(layers=[0, 2], prompt=True),
        projection=ProjectionSpec({0: _vector(seed + 1, 3), 2: _vector(seed + 2)}),
    )


def _graphs() -> int:
    """Graphs torch has compiled in this process (to prove a step did not recompile)."""
    return int(counters["stats"]["unique_graphs"])


def _generate(gen: HookedGenerator, batch: dict, **kw: Any) -> list:
    return gen.generate(batch["input_ids"], batch["attention_mask"], STEPS, eos_token_id=[], **kw)


def _assert_same(got: list, want: list) -> None:
    for a, b in zip(got, want, strict=True):
        assert a.token_ids == b.token_ids
        for name in ("activations", "prompt_activations"):
            x, y = getattr(a, name), getattr(b, name)
            assert x.keys() == y.keys(), name
            for layer in x:
                for comp in x[layer]:
                    torch.testing.assert_close(x[layer][comp], y[layer][comp], atol=1e-5, rtol=0)
        for name in ("projections", "norms"):
            x, y = getattr(a, name), getattr(b, name)
            assert x.keys() == y.keys(), name
            for layer in x:
                torch.testing.assert_close(x[layer], y[layer], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_compiled_greedy_equals_the_eager_loop(arch: str) -> None:
    model = tiny_model(arch)
    batch = tiny_batch(2, 6, left_pad=(0, 2))
    eager, fast = HookedGenerator(model), HookedGenerator(model, compile=True)
    for kw in (_hooks(0), _hooks(5, coefficient=-4.0, positions=(3, None)), {}):
        _assert_same(_generate(fast, batch, **kw), _generate(eager, batch, **kw))
    assert fast.compiled is not None
    if arch in SLIDING:
        assert "sliding-window" in (fast.compiled.unavailable or "")
        assert fast.compiled.compile_seconds == []
    else:
        assert fast.compiled.unavailable is None
        # two structures (hooked, bare): the second set of hook values reused the first graph
        assert len(fast.compiled.compile_seconds) == 2
    assert active_edits(model) == 0  # the hooks live on the twin, never on the model


def test_new_values_reuse_the_graph_and_change_the_tokens() -> None:
    model = tiny_model("llama")
    batch = tiny_batch(2, 6, left_pad=(0, 2))
    eager, fast = HookedGenerator(model), HookedGenerator(model, compile=True)
    first = _generate(fast, batch, **_hooks(0))
    assert fast.compiled is not None and len(fast.compiled.compile_seconds) == 1
    # a new vector, coefficients, rows, window and projection matrix: all tensors, same graph
    kw = _hooks(9, coefficient=[0.0, 8.0], rows=[1], positions=(4, 9))
    graphs = _graphs()
    again = _generate(fast, batch, **kw)
    assert len(fast.compiled.compile_seconds) == 1
    assert _graphs() == graphs
    _assert_same(again, _generate(eager, batch, **kw))
    assert [r.token_ids for r in again] != [r.token_ids for r in first]


def test_a_new_structure_compiles_again_and_stays_right() -> None:
    model = tiny_model("qwen2")
    batch = tiny_batch(2, 6, left_pad=(0, 2))
    eager, fast = HookedGenerator(model), HookedGenerator(model, compile=True)
    _generate(fast, batch, **_hooks(0))
    kw = _hooks(3, layer=2, mode="ablate", coefficient=1.0)  # another layer and mode
    _assert_same(_generate(fast, batch, **kw), _generate(eager, batch, **kw))
    assert fast.compiled is not None and len(fast.compiled.compile_seconds) == 2


def test_past_the_recompile_limit_it_decodes_eagerly_with_a_notice(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(compiled_module, "RECOMPILE_LIMIT", 0)
    model = tiny_model("llama")
    # a batch size no other test compiles: torch reuses a graph whose guards still hold
    batch = tiny_batch(5, 6, left_pad=(0, 2, 1, 0, 3))
    eager, fast = HookedGenerator(model), HookedGenerator(model, compile=True)
    with caplog.at_level(logging.WARNING, logger=compiled_module.__name__):
        got = _generate(fast, batch, **_hooks(0, coefficient=3.0))
    _assert_same(got, _generate(eager, batch, **_hooks(0, coefficient=3.0)))
    assert fast.compiled is not None
    assert "torch.compile failed" in (fast.compiled.unavailable or "")
    assert sum("decoding eagerly" in r.getMessage() for r in caplog.records) == 1
    kw = _hooks(4, coefficient=1.5)  # and from then on, eagerly, still right
    _assert_same(_generate(fast, batch, **kw), _generate(eager, batch, **kw))


def test_a_second_stream_while_one_is_open_runs_eagerly_and_both_are_right() -> None:
    model = tiny_model("llama")
    batch = tiny_batch(2, 6, left_pad=(0, 2))
    eager, fast = HookedGenerator(model), HookedGenerator(model, compile=True)
    kw_a, kw_b = _hooks(0), _hooks(7, coefficient=[6.0, 1.0])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    a = fast.stream(ids, mask, STEPS, eos_token_id=[], **kw_a)
    b = fast.stream(ids, mask, STEPS, eos_token_id=[], **kw_b)
    tokens_a, tokens_b = [next(a).token_ids], [next(b).token_ids]  # a holds the decoder
    tokens_a += [e.token_ids for e in a]
    tokens_b += [e.token_ids for e in b]
    want_a = [e.token_ids for e in eager.stream(ids, mask, STEPS, eos_token_id=[], **kw_a)]
    want_b = [e.token_ids for e in eager.stream(ids, mask, STEPS, eos_token_id=[], **kw_b)]
    assert (tokens_a, tokens_b) == (want_a, want_b)
    # a finished (or abandoned) stream frees the decoder for the next one
    c = fast.stream(ids, mask, STEPS, eos_token_id=[], **kw_b)
    next(c)
    del c
    _assert_same(_generate(fast, batch, **kw_a), _generate(eager, batch, **kw_a))


def test_load_refuses_hooks_of_another_structure() -> None:
    model = tiny_model("llama")
    one = StepHooks(model, 2, 6, None, _hooks(0)["steering"], None)
    other = StepHooks(model, 2, 6, None, _hooks(0, layer=2)["steering"], None)
    with pytest.raises(ValueError, match="same structure"):
        one.load(other)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_a_kept_prompt_feeds_the_compiled_step(arch: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The slider's path: the prompt's kept KV cache goes into the static cache, and every
    forward after it (the last prompt token on) runs through the compiled step."""
    model = tiny_model(arch)
    batch = tiny_batch(2, 6, left_pad=(0, 2))
    eager, fast = HookedGenerator(model), HookedGenerator(model, compile=True)
    assert fast.compiled is not None
    compiled: list[int] = []
    step = fast.compiled.step
    monkeypatch.setattr(fast.compiled, "step", lambda *a: compiled.append(1) or step(*a))
    first_lengths: list[int] = []  # each generation's first forward (eager)
    forward = compiled_module.CompiledSession.forward

    def spy(session: Any, ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        if session.hooks.batch and not getattr(session, "spied", False):
            first_lengths.append(ids.shape[1])
            session.spied = True
        return forward(session, ids, positions)

    monkeypatch.setattr(compiled_module.CompiledSession, "forward", spy)
    graphs = []
    for seed, coefficient in ((0, [3.0, -2.0]), (0, [-5.0, 4.0]), (6, [1.0, 2.0])):
        kw = _hooks(seed, coefficient=coefficient)
        got = _generate(fast, batch, reuse_prompt=True, **kw)
        graphs.append(_graphs())
        _assert_same(got, _generate(eager, batch, **kw))
    assert graphs[0] == graphs[-1]  # the slider's later moves compiled nothing
    # each generation: the last prompt token eagerly (the rest of the prompt came from the
    # kept cache), then STEPS tokens fed back through the compiled step
    assert first_lengths == [1, 1, 1]
    assert len(compiled) == 3 * STEPS
    assert len(fast.compiled.compile_seconds) == 1


def test_going_back_to_an_earlier_structure_records_into_the_new_generation() -> None:
    """Structure A, then B, then A again: A's graph must capture and project for the third
    generation (its hooks), not for the first one's."""
    model = tiny_model("gpt2")
    batch = tiny_batch(2, 6, left_pad=(0, 2))
    eager, fast = HookedGenerator(model), HookedGenerator(model, compile=True)
    for kw in (_hooks(0), _hooks(1, layer=2, mode="ablate", coefficient=1.0), _hooks(2)):
        _assert_same(_generate(fast, batch, **kw), _generate(eager, batch, **kw))
        _assert_same(_generate(fast, batch, reuse_prompt=True, **kw), _generate(eager, batch, **kw))


def test_sampling_draws_the_same_tokens_compiled() -> None:
    from trait_lab.generation import SamplingConfig

    model = tiny_model("llama")
    batch = tiny_batch(2, 6, left_pad=(0, 2))
    sampling = SamplingConfig(do_sample=True, temperature=0.9, top_p=0.95, seed=[3, 4])
    eager, fast = HookedGenerator(model), HookedGenerator(model, compile=True)
    kw = dict(_hooks(0), sampling=sampling)
    _assert_same(_generate(fast, batch, **kw), _generate(eager, batch, **kw))


def test_hooks_on_the_model_itself_run_eagerly_and_a_new_module_tree_gets_new_twins() -> None:
    """A steering context (or any forward hook) on the model would not run on the twins: that
    generation decodes eagerly, so the context steers it; an added module is seen too."""
    from trait_lab.hooks import SteeringHook

    model = tiny_model("llama")
    batch = tiny_batch(2, 6, left_pad=(0, 2))
    eager, fast = HookedGenerator(model), HookedGenerator(model, compile=True)
    plain = _generate(fast, batch)
    with SteeringHook(model, _vector(4), 1, 6.0):
        want = _generate(eager, batch)
        got = _generate(fast, batch)
    assert [r.token_ids for r in got] == [r.token_ids for r in want]
    assert [r.token_ids for r in got] != [r.token_ids for r in plain]  # it did steer
    _assert_same(_generate(fast, batch), plain)  # and compiled again once it is gone
    # a module added to the tree (as an adapter would be): new twins carry it
    capture = CaptureConfig(layers=[2])
    _generate(fast, batch, capture=capture)  # its slot exists before the tree changes
    block = model.model.layers[1]
    block.mlp = torch.nn.Sequential(block.mlp, _Half())
    _assert_same(_generate(fast, batch, capture=capture), _generate(eager, batch, capture=capture))


class _Half(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * x
