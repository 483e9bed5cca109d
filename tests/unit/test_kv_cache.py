"""Where a forward call sits in its sequence, across transformers' cache keyword names.

Ground truth: the absolute positions a no-cache recompute over the whole sequence steers, and
``model.generate`` with ``use_cache=False``.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from transformers import DynamicCache

from tests.helpers import deprecations_from_our_calls
from trait_lab.generation.generator import HookedGenerator
from trait_lab.hooks import PerPositionSteeringHook
from trait_lab.models.architectures import get_hook_path
from trait_lab.models.kv_cache import (
    CachePositionError,
    cache_keyword,
    cache_length,
    forward_offset,
    output_cache,
)
from trait_lab.testing import tiny_batch, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")

HIDDEN = 32


def _filled_cache(model: torch.nn.Module, n: int) -> DynamicCache:
    out = model(input_ids=torch.arange(3, 3 + n).unsqueeze(0), use_cache=True)
    cache = output_cache(out)
    assert isinstance(cache, DynamicCache)
    return cache


class TestForwardOffset:
    def test_cache_found_under_any_keyword(self) -> None:
        cache = _filled_cache(tiny_model(), 4)
        for name in ("cache", "past_key_values", "a_name_from_the_future"):
            assert forward_offset((), {name: cache, "input_ids": torch.ones(1, 1)}) == 4

    def test_cache_passed_positionally(self) -> None:
        assert forward_offset((torch.ones(1, 1), _filled_cache(tiny_model(), 3)), {}) == 3

    def test_cache_position_wins(self) -> None:
        kwargs = {"cache_position": torch.tensor([9, 10]), "cache": None}
        assert forward_offset((), kwargs) == 9

    def test_no_cache_is_offset_zero(self) -> None:
        kwargs = {"input_ids": torch.ones(2, 5), "position_ids": torch.arange(5).expand(2, 5)}
        assert forward_offset((), kwargs) == 0

    def test_positions_without_a_visible_cache_raise(self) -> None:
        kwargs = {"input_ids": torch.ones(1, 1), "position_ids": torch.tensor([[7]])}
        with pytest.raises(CachePositionError, match=r"position_ids reach 7 .* no KV cache"):
            forward_offset((), kwargs)

    def test_unknown_cache_object_raises(self) -> None:
        with pytest.raises(CachePositionError, match=r"cache= is a dict, not a KV cache"):
            forward_offset((), {"cache": {"layers": []}})

    def test_left_padded_positions_are_consistent(self) -> None:
        # a left-padded row counts fewer real tokens than its absolute index: allowed
        kwargs = {"position_ids": torch.tensor([[0, 1, 2], [0, 0, 0]])}
        assert forward_offset((), kwargs) == 0

    def test_cache_length(self) -> None:
        assert cache_length(None) == 0
        assert cache_length(_filled_cache(tiny_model(), 5)) == 5
        with pytest.raises(TypeError, match="not a KV cache: str"):
            cache_length("cache")


def test_cache_keyword_is_what_forward_declares() -> None:
    model = tiny_model()
    params = inspect.signature(model.forward).parameters
    assert cache_keyword(model) in params


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2"])
@pytest.mark.parametrize("token_range", [(0, 2), (4, 8), (6, 9), (9, None), (12, 18)])
def test_per_position_steering_under_the_cache_equals_the_recompute(arch, token_range) -> None:
    """Greedy generate with the KV cache == without it, for ranges in prompt and reply."""
    model = tiny_model(arch)
    batch = tiny_batch(2, 5, left_pad=(0, 2))
    v = torch.randn(HIDDEN, generator=torch.Generator().manual_seed(1)) * 4
    kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    with torch.no_grad():
        plain = model.generate(**batch, **kwargs)
        with PerPositionSteeringHook(model, v, 1, 3.0, token_range=token_range):
            cached = model.generate(**batch, use_cache=True, **kwargs)
        with PerPositionSteeringHook(model, v, 1, 3.0, token_range=token_range):
            recomputed = model.generate(**batch, use_cache=False, **kwargs)
    assert torch.equal(cached, recomputed)
    if token_range == (12, 18):  # past the 11 positions generated: nothing to steer
        assert torch.equal(cached, plain)


def _first(output):
    return output[0] if isinstance(output, tuple) else output


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("token_range", [(0, 2), (6, 9), (3, None)])
def test_each_decode_step_is_steered_iff_its_position_is_in_range(arch, token_range) -> None:
    """Seen from plain torch hooks around the steered block during a cached ``model.generate``:
    forward k covers the next positions in order, and exactly those in the range change."""
    model = tiny_model(arch)
    block = model.get_submodule(get_hook_path(1, "residual", model=model))
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    with torch.no_grad(), PerPositionSteeringHook(model, torch.randn(HIDDEN), 1, 3.0,
                                                  token_range=token_range):  # fmt: skip
        before = block.register_forward_hook(
            lambda m, a, out: seen.append((_first(out).clone(), _first(out))), prepend=True
        )
        after = block.register_forward_hook(
            lambda m, a, out: seen.__setitem__(-1, (seen[-1][0], _first(out).clone()))
        )
        try:
            model.generate(**tiny_batch(1, 5), max_new_tokens=6, do_sample=False, pad_token_id=0)
        finally:
            before.remove()
            after.remove()
    assert [b.shape[1] for b, _ in seen][:2] == [5, 1]  # prefill, then one token per step
    changed = torch.cat([(a - b).abs().amax(-1)[0] > 1e-6 for b, a in seen])
    start, end = token_range
    total = changed.numel()
    expected = list(range(start, total if end is None else min(end, total)))
    assert [i for i, c in enumerate(changed.tolist()) if c] == expected


@pytest.mark.deprecations_expected
def test_hooked_generator_passes_no_deprecated_cache_keyword(monkeypatch) -> None:
    """The detector the suite runs on every test catches the old keyword where it is deprecated."""
    model = tiny_model()
    if "cache" not in inspect.signature(model.forward).parameters:
        pytest.skip("this transformers still takes past_key_values (no deprecation to catch)")
    batch = tiny_batch(1, 4)
    with deprecations_from_our_calls() as found:
        HookedGenerator(model).generate(batch["input_ids"], max_new_tokens=2)
    assert found == []
    monkeypatch.setattr("trait_lab.generation.generator.cache_keyword", lambda m: "past_key_values")
    with deprecations_from_our_calls() as found:
        HookedGenerator(model).generate(batch["input_ids"], max_new_tokens=2)
    assert any("past_key_values" in line for line in found), found
