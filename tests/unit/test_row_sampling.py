"""Per-row reproducible sampling: a row's sampled reply never depends on the rest of the batch.

Ground truths: the same prompt generated alone (a batch of one), and a numpy inverse-CDF draw
with the row's own generator.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trait_lab.generation.generator import HookedGenerator, SamplingConfig, SteeringConfig
from trait_lab.testing import tiny_batch, tiny_model

HIDDEN = 32
SETTINGS = [
    {"temperature": 1.5, "seed": 7},
    {"temperature": 0.8, "seed": 0, "top_k": 20},
    {"temperature": 1.2, "seed": 3, "top_p": 0.9},
    {"temperature": 1.0, "seed": 11, "top_k": 40, "top_p": 0.8},
]


@pytest.fixture(scope="module")
def generator() -> HookedGenerator:
    return HookedGenerator(tiny_model())


def _steer(rows: list[int] | None) -> list[SteeringConfig]:
    vector = torch.randn(HIDDEN, generator=torch.Generator().manual_seed(2))
    return [SteeringConfig(vector, 1, 6.0, rows=rows)]


def _tokens(gen: HookedGenerator, ids: torch.Tensor, sampling: SamplingConfig, **kw) -> list:
    out = gen.generate(ids, None, 10, sampling=sampling, eos_token_id=[], **kw)
    return [r.token_ids for r in out]


@pytest.mark.parametrize("settings", SETTINGS)
def test_row_alone_equals_row_in_a_batch(generator: HookedGenerator, settings: dict) -> None:
    ids = tiny_batch(2, 6)["input_ids"]  # same length: no padding
    sampling = SamplingConfig(do_sample=True, **settings)
    (alone,) = _tokens(generator, ids[1:], sampling)
    batched = _tokens(generator, ids, sampling)
    assert batched[1] == alone
    assert batched[0] == _tokens(generator, ids[:1], sampling)[0]


@pytest.mark.parametrize("settings", SETTINGS)
def test_steered_row_alone_equals_steered_row_next_to_a_baseline(
    generator: HookedGenerator, settings: dict
) -> None:
    prompt = tiny_batch(1, 6, seed=4)["input_ids"]
    both = prompt.repeat(2, 1)  # the panel's batch: row 0 baseline, row 1 steered
    sampling = SamplingConfig(do_sample=True, **settings)
    (alone,) = _tokens(generator, prompt, sampling, steering=_steer(None))
    baseline, steered = _tokens(generator, both, sampling, steering=_steer([1]))
    assert steered == alone
    assert baseline == _tokens(generator, prompt, sampling)[0]
    assert steered != baseline  # the steering did something, so the test can fail


def test_one_seed_per_row(generator: HookedGenerator) -> None:
    ids = tiny_batch(3, 6)["input_ids"]
    seeds = [5, 6, 7]
    batched = _tokens(generator, ids, SamplingConfig(do_sample=True, seed=seeds))
    for i, seed in enumerate(seeds):
        (alone,) = _tokens(generator, ids[i : i + 1], SamplingConfig(do_sample=True, seed=seed))
        assert batched[i] == alone
    other = _tokens(generator, ids, SamplingConfig(do_sample=True, seed=[8, 6, 7]))
    assert other[1:] == batched[1:]


def test_seed_list_must_match_the_batch(generator: HookedGenerator) -> None:
    ids = tiny_batch(2, 6)["input_ids"]
    with pytest.raises(ValueError, match="2 seeds for a batch of 3 rows"):
        SamplingConfig(do_sample=True, seed=[1, 2]).generators(torch.device("cpu"), 3)
    with pytest.raises(ValueError, match="seed"):
        SamplingConfig(do_sample=True, seed=[1, "x"])
    with pytest.raises(ValueError, match="seed"):
        SamplingConfig(do_sample=True, seed=[])
    with pytest.raises(ValueError, match="3 seeds for a batch of 2"):
        _tokens(generator, ids, SamplingConfig(do_sample=True, seed=[1, 2, 3]))


def test_greedy_is_unchanged(generator: HookedGenerator) -> None:
    batch = tiny_batch(2, 6)
    model = generator.model
    out = generator.generate(batch["input_ids"], batch["attention_mask"], 8, eos_token_id=[])
    ref = model.generate(
        **batch, max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0
    )
    assert [r.token_ids for r in out] == ref[:, 6:].tolist()


def test_choose_is_an_inverse_cdf_draw_with_each_rows_generator() -> None:
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    sampling = SamplingConfig(do_sample=True, temperature=0.7, top_k=10, seed=[1, 2, 3])
    token = sampling.choose(logits, sampling.generators(torch.device("cpu"), 3))
    for row, seed in enumerate([1, 2, 3]):
        scores = logits[row].double().numpy() / 0.7
        kth = np.sort(scores)[-10]
        probs = np.where(scores >= kth, np.exp(scores - scores.max()), 0.0)
        cdf = np.cumsum(probs / probs.sum())
        u = float(torch.rand(1, generator=torch.Generator().manual_seed(seed)))
        assert int(token[row]) == int(np.searchsorted(cdf, u, side="right"))
        assert scores[int(token[row])] >= kth  # never a token top-k removed


def test_one_draw_per_row_per_step() -> None:
    """Row 1's generator advances once per step, whatever row 0 does."""
    sampling = SamplingConfig(do_sample=True, seed=[4, 9])
    gens = sampling.generators(torch.device("cpu"), 2)
    reference = torch.Generator().manual_seed(9)
    for step in range(5):
        logits = torch.randn(2, 20, generator=torch.Generator().manual_seed(step))
        logits[0, :] = 0.0 if step % 2 else logits[0, :]  # row 0 changes shape of its dist
        sampling.choose(logits, gens)
        reference.manual_seed(9)
        torch.rand(step + 1, generator=reference)
        assert gens[1].get_state().equal(reference.get_state())
