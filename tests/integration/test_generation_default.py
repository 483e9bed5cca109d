"""HookedGenerator on the default model against model.generate and a no-cache recompute."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import edit_block_output, residual_stream
from trait_lab.generation.generator import CaptureConfig, HookedGenerator, SteeringConfig

pytestmark = pytest.mark.integration

QUESTIONS = [
    "What is the capital of France?",
    "Write one sentence about the sea.",
    "Hi",
]


@pytest.fixture(scope="module")
def chat_batch(default_model):
    _, tokenizer = default_model
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
        )
        for q in QUESTIONS
    ]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    assert (batch["attention_mask"][:, 0] == 0).any()  # really left-padded
    return batch


def test_greedy_equals_model_generate(default_model, chat_batch) -> None:
    model, tokenizer = default_model
    with torch.no_grad():
        expected = model.generate(
            **chat_batch, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    results = HookedGenerator(model).generate(
        chat_batch["input_ids"], chat_batch["attention_mask"], 12
    )
    prompt_len = chat_batch["input_ids"].shape[1]
    eos = tokenizer.eos_token_id
    for i, result in enumerate(results):
        row = expected[i, prompt_len:].tolist()
        if eos in row:
            row = row[: row.index(eos) + 1]
        assert result.token_ids == row
    assert "Paris" in tokenizer.decode(results[0].token_ids)


def test_steered_cache_equals_no_cache_and_captures_line_up(default_model, chat_batch) -> None:
    model, _ = default_model
    ids, mask = chat_batch["input_ids"], chat_batch["attention_mask"]
    v = torch.randn(576, generator=torch.Generator().manual_seed(0))
    v = v / v.norm()
    coefs = [0.0, 8.0, -8.0]
    results = HookedGenerator(model).generate(
        ids,
        mask,
        6,
        steering=[SteeringConfig(v, 10, coefs, positions="response")],
        capture=CaptureConfig(layers=[10, 20]),
        eos_token_id=[],
    )
    prompt_len = ids.shape[1]
    seq = torch.stack(
        [torch.cat([ids[i], torch.tensor(r.token_ids)]) for i, r in enumerate(results)]
    )
    full_mask = torch.cat([mask, torch.ones(len(results), 6, dtype=mask.dtype)], dim=1)
    pos = (full_mask.cumsum(-1) - 1).masked_fill(full_mask == 0, 0)
    c = torch.tensor(coefs)

    def add(h):
        keep = (torch.arange(h.shape[1]) >= prompt_len - 1).float()
        return h + c[:, None, None] * keep[None, :, None] * v

    # the reference reads what each block reads: transformers 4.57's output_hidden_states records
    # block 10's output before this hook runs
    handle = model.model.layers[10].register_forward_hook(edit_block_output(add))
    try:
        with residual_stream(model) as hidden, torch.no_grad():
            out = model(input_ids=seq, attention_mask=full_mask, position_ids=pos)
    finally:
        handle.remove()
    # the no-cache forward's greedy choices reproduce every generated token
    predicted = out.logits[:, prompt_len - 1 : -1].argmax(-1)
    assert predicted.tolist() == [r.token_ids for r in results]
    for i, result in enumerate(results):
        for layer in (10, 20):
            torch.testing.assert_close(
                result.activations[layer]["residual"],
                hidden[layer + 1][i, prompt_len:],
                rtol=1e-4,
                atol=1e-3,
            )


def test_kept_prompt_equals_the_whole_prompt(default_model, chat_batch) -> None:
    """The slider's path (``reuse_prompt``): the same tokens and scores as computing it all."""
    model, _ = default_model
    ids, mask = chat_batch["input_ids"], chat_batch["attention_mask"]
    v = torch.randn(576, generator=torch.Generator().manual_seed(1))
    v = 8.0 * v / v.norm()

    def run(gen: HookedGenerator, coefficient: float, reuse: bool) -> list:
        steer = SteeringConfig(layer=12, vector=v, coefficient=coefficient, positions="response")
        return gen.generate(
            ids,
            mask,
            10,
            steering=[steer],
            capture=CaptureConfig(layers=[20]),
            eos_token_id=[],
            reuse_prompt=reuse,
        )

    kept, lengths = HookedGenerator(model), []
    for coefficient in (1.0, -1.0, 1.0):  # each slider position after the first reuses
        handle = model.register_forward_pre_hook(
            lambda m, args, kw: lengths.append(kw["input_ids"].shape[1]), with_kwargs=True
        )
        try:
            got = run(kept, coefficient, True)
        finally:
            handle.remove()
        want = run(HookedGenerator(model), coefficient, False)
        for a, b in zip(got, want, strict=True):
            assert a.token_ids == b.token_ids
            torch.testing.assert_close(
                a.activations[20]["residual"], b.activations[20]["residual"], rtol=1e-4, atol=1e-4
            )
    first = ids.shape[1] - 1
    assert lengths.count(first) == 1 and lengths.count(first + 1) == 0  # the prompt, once


def test_compiled_decode_equals_the_eager_loop(default_model, chat_batch) -> None:
    """``compile=True`` on the default model: greedy tokens equal the eager loop's, with
    steering, capture and projection (and, on a kept prompt, the slider's path) and without."""
    from trait_lab.generation import ProjectionSpec

    model, _ = default_model
    ids, mask = chat_batch["input_ids"], chat_batch["attention_mask"]
    rng = torch.Generator().manual_seed(3)
    v = torch.randn(576, generator=rng)
    hooked = dict(
        steering=[
            SteeringConfig(
                layer=12,
                vector=8.0 * v / v.norm(),
                coefficient=[1.0, -1.0, 2.0],
                positions="response",
            )
        ],
        capture=CaptureConfig(layers=[20]),
        projection=ProjectionSpec({10: torch.randn(3, 576, generator=rng)}),
    )
    eager, fast = HookedGenerator(model), HookedGenerator(model, compile=True)
    for kw, reuse in ((hooked, False), (hooked, True), ({}, False)):
        got = fast.generate(ids, mask, 12, eos_token_id=[], reuse_prompt=reuse, **kw)
        want = eager.generate(ids, mask, 12, eos_token_id=[], **kw)
        for a, b in zip(got, want, strict=True):
            assert a.token_ids == b.token_ids
            if kw:
                torch.testing.assert_close(
                    a.activations[20]["residual"],
                    b.activations[20]["residual"],
                    rtol=1e-4,
                    atol=1e-3,
                )
                torch.testing.assert_close(
                    a.projections[10], b.projections[10], rtol=1e-4, atol=1e-3
                )
    assert fast.compiled is not None and fast.compiled.unavailable is None
    assert len(fast.compiled.compile_seconds) == 2  # hooked (reused by the kept prompt), bare
