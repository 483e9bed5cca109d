"""Keeping the prompt's KV cache between streams (``reuse_prompt=True``, the slider's path).

Ground truth is the same stream without reuse (the whole prompt in the first forward), on every
tiny architecture, left-padded, with steering, capture of prompt and tokens, and projection.
Reuse must happen exactly when it is exact, and the kept cache must never change.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from trait_lab.generation import CaptureConfig, HookedGenerator, ProjectionSpec, SteeringConfig
from trait_lab.generation.prompt_cache import reusable
from trait_lab.testing import TINY_ARCHITECTURES, tiny_batch, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")

HIDDEN, STEPS = 32, 6


def _vector(seed: int) -> torch.Tensor:
    return torch.randn(HIDDEN, generator=torch.Generator().manual_seed(seed))


def _run(gen: HookedGenerator, batch: dict, coefficient: float, reuse: bool, **kw: Any) -> list:
    steering = kw.pop("steering", None) or [
        SteeringConfig(layer=1, vector=_vector(1), coefficient=coefficient, positions="response")
    ]
    events = gen.stream(
        batch["input_ids"],
        batch["attention_mask"],
        STEPS,
        steering=steering,
        capture=CaptureConfig(layers=[0, 2], prompt=True),
        projection=kw.pop("projection", ProjectionSpec({2: _vector(2)})),
        eos_token_id=[],
        reuse_prompt=reuse,
    )
    return list(events)


def _first_forward_lengths(model: torch.nn.Module) -> list[int]:
    seen: list[int] = []
    model.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    return seen


def _assert_same(got: list, want: list, mask: torch.Tensor) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.token_ids == b.token_ids
        for name in ("activations", "projections", "norms"):
            x, y = getattr(a, name), getattr(b, name)
            assert (x is None) == (y is None), name
            _close(x, y, None)
        for name in ("prompt_activations", "prompt_projections", "prompt_norms"):
            _close(getattr(a, name), getattr(b, name), mask.bool())


def _close(x: Any, y: Any, real: torch.Tensor | None) -> None:
    """Equal up to float rounding; prompt fields (``real``: the mask) at real tokens only, as
    results keep them (a pad position's values are whatever its empty attention gives)."""
    if isinstance(x, dict):
        assert x.keys() == y.keys()
        for key in x:
            _close(x[key], y[key], real)
    elif isinstance(x, torch.Tensor):
        assert x.shape == y.shape
        if real is not None:
            x, y = x[real], y[real]
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)
    else:
        assert x == y


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_reuse_equals_the_whole_prompt_on_every_architecture(arch: str) -> None:
    model = tiny_model(arch)
    batch = tiny_batch(2, 7, left_pad=(0, 2))
    want = {c: _run(HookedGenerator(model), batch, c, reuse=False) for c in (2.0, -3.0)}
    gen = HookedGenerator(model)
    lengths = _first_forward_lengths(model)
    first = _run(gen, batch, 2.0, reuse=True)  # computes and keeps the prompt
    assert lengths[:2] == [6, 1]  # the prompt before its last token, then its last token
    lengths.clear()
    moved = _run(gen, batch, -3.0, reuse=True)  # the slider moved: the prompt is reused
    again = _run(gen, batch, 2.0, reuse=True)  # the kept cache was not extended by a stream
    assert lengths[0] == 1 and lengths.count(6) == 0 and lengths.count(7) == 0
    _assert_same(first, want[2.0], batch["attention_mask"])
    _assert_same(moved, want[-3.0], batch["attention_mask"])
    _assert_same(again, want[2.0], batch["attention_mask"])
    assert not torch.allclose(first[1].projections[2], moved[1].projections[2])  # it steers


def test_steering_that_reaches_the_prompt_is_never_reused() -> None:
    model = tiny_model()
    batch = tiny_batch(1, 6)
    gen = HookedGenerator(model)
    lengths = _first_forward_lengths(model)
    for where in ("all", "prompt", (2, None)):
        steering = [SteeringConfig(layer=1, vector=_vector(1), coefficient=2.0, positions=where)]
        for _ in range(2):  # not even the second time
            lengths.clear()
            got = _run(gen, batch, 0.0, reuse=True, steering=steering)
            assert lengths[0] == 6, where
        want = _run(HookedGenerator(model), batch, 0.0, reuse=False, steering=steering)
        _assert_same(got, want, batch["attention_mask"])
    assert gen.kept_prompt.get("anything", []) is None


def test_a_new_prompt_or_new_observers_recompute() -> None:
    model = tiny_model()
    gen = HookedGenerator(model)
    one, two = tiny_batch(1, 6, seed=0), tiny_batch(1, 6, seed=1)
    _run(gen, one, 1.0, reuse=True)
    want = _run(HookedGenerator(model), two, 1.0, False)
    _assert_same(_run(gen, two, 1.0, reuse=True), want, two["attention_mask"])
    other = ProjectionSpec({2: _vector(5)})  # another colour: the prompt's scores differ
    got = _run(gen, two, 1.0, reuse=True, projection=other)
    want = _run(HookedGenerator(model), two, 1.0, False, projection=other)
    _assert_same(got, want, two["attention_mask"])


def test_a_row_with_only_its_last_token_is_computed_whole() -> None:
    model = tiny_model()
    batch = tiny_batch(2, 5, left_pad=(0, 4))  # row 1 has one real token
    gen = HookedGenerator(model)
    lengths = _first_forward_lengths(model)
    want = _run(HookedGenerator(model), batch, 2.0, False)
    _assert_same(_run(gen, batch, 2.0, True), want, batch["attention_mask"])
    assert lengths[0] == 5


def test_reusable_rule() -> None:
    def steer(positions: Any) -> list[SteeringConfig]:
        return [SteeringConfig(layer=0, vector=[1.0, 0.0], positions=positions)]

    assert reusable([], 2) and not reusable([], 1)
    assert reusable(steer("response"), 8) and reusable(steer((7, None)), 8)
    assert not reusable(steer((6, None)), 8)  # starts before the last prompt token
    assert not reusable(steer("all"), 8) and not reusable(steer("prompt"), 8)


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2"])
def test_rows_of_the_kept_batch_are_reused_alone_reordered_or_repeated(arch: str) -> None:
    # the panel: a new prompt streams [baseline, steered]; a slider change streams one row
    model = tiny_model(arch)
    both = tiny_batch(2, 7)
    gen = HookedGenerator(model)
    _run(gen, both, 2.0, reuse=True)
    lengths = _first_forward_lengths(model)
    for rows in ([1], [1, 0], [0, 0, 0]):
        batch = {name: t[rows] for name, t in both.items()}
        lengths.clear()
        got = _run(gen, batch, -2.0, reuse=True)
        assert lengths[0] == 1, rows
        want = _run(HookedGenerator(model), batch, -2.0, reuse=False)
        _assert_same(got, want, batch["attention_mask"])
