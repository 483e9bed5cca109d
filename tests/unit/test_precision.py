"""Choosing precision: a bf16 copy computes, fp32 stays the reference, agreement is measured.

Ground truth for :func:`agreement`: ``model.generate`` (greedy, EOS off) for the reference's
continuation and a plain forward of each model for the logits compared at every position.
"""

from __future__ import annotations

import logging

import pytest
import torch

import trait_lab.generation.precision as precision
from trait_lab.generation import GenerationConfig, HookedGenerator, LocalBackend, SteeringSpec
from trait_lab.generation.precision import PRECISIONS, agreement, at_precision, precision_of
from trait_lab.models import tokens
from trait_lab.testing import tiny_batch, tiny_model, tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


def test_bf16_is_a_kept_copy_and_the_model_is_unchanged() -> None:
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    reduced = at_precision(model, "bf16")
    assert reduced is not model and reduced.dtype == torch.bfloat16
    assert at_precision(model, "bf16") is reduced  # converted once
    assert at_precision(model, "fp32") is model and model.dtype == torch.float32
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert at_precision(reduced, "bf16") is reduced  # already bf16: itself
    assert at_precision(reduced, "fp32") is reduced  # fp32 is the model as loaded: no upcast
    assert (precision_of(model), precision_of(reduced)) == ("fp32", "bf16")  # what they are


@pytest.mark.parametrize("bad", ["fp16", "int8", None, "BF16"])
def test_an_unknown_precision_is_named_with_the_choices(bad: object) -> None:
    with pytest.raises(ValueError, match="is not one of 'fp32', 'bf16'"):
        at_precision(tiny_model(), bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is not one of"):
        LocalBackend(tiny_model(), tiny_tokenizer(), False, precision=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("native", [True, False])
def test_emulated_bf16_says_so_once(native: bool, monkeypatch, caplog) -> None:
    monkeypatch.setattr(precision, "native_bf16", lambda: native)
    model = tiny_model()
    with caplog.at_level(logging.WARNING, logger="trait_lab.generation.precision"):
        at_precision(model, "bf16")
        at_precision(model, "bf16")  # the kept copy: no second notice
    notices = [r.message for r in caplog.records if "no native bf16" in r.message]
    assert len(notices) == (0 if native else 1)


def test_a_model_spread_over_devices_is_not_copied() -> None:
    model = tiny_model()
    model.hf_device_map = {"model.embed_tokens": "cpu", "model.layers": "disk"}
    with pytest.raises(ValueError, match=r"load_model\(\.\.\., dtype=torch.bfloat16\)"):
        at_precision(model, "bf16")


def _by_hand(reference, other, ids, mask, n):
    """model.generate's greedy continuation, then each model's argmax at every new position."""
    with torch.no_grad():
        seqs = reference.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=n,
            do_sample=False,
            eos_token_id=None,
            pad_token_id=0,
        )
    full = torch.cat([mask, mask.new_ones(ids.shape[0], n)], dim=1)
    positions = tokens.padded_positions(full)
    with torch.no_grad():
        logits = [
            m(input_ids=seqs, attention_mask=full, position_ids=positions).logits.float()
            for m in (reference, other)
        ]
    start = ids.shape[1] - 1
    a, b = (x[:, start:-1] for x in logits)
    return float((a.argmax(-1) == b.argmax(-1)).float().mean()), float((a - b).abs().max())


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2"])
def test_agreement_equals_a_computation_by_hand(arch: str) -> None:
    model = tiny_model(arch)
    batch = tiny_batch(3, 6, left_pad=(0, 2, 1))
    ids, mask = batch["input_ids"], batch["attention_mask"]
    reduced = at_precision(model, "bf16")
    got = agreement(model, reduced, ids, mask, 8)
    top1, diff = _by_hand(model, reduced, ids, mask, 8)
    assert got.positions == 3 * 8 and got.rows == 3
    assert got.top1 == pytest.approx(top1) and got.max_logit_diff == pytest.approx(diff, rel=1e-5)
    assert got.max_logit_diff > 0  # bf16 is not fp32
    same = agreement(model, model, ids, mask, 8)
    assert (same.top1, same.max_logit_diff, same.same_greedy) == (1.0, 0.0, 3)


def test_a_bf16_backend_steers_and_reports_its_agreement() -> None:
    model = tiny_model()
    exact = LocalBackend(model, tiny_tokenizer(), use_chat_template=False)
    fast = LocalBackend(model, tiny_tokenizer(), use_chat_template=False, precision="bf16")
    assert (exact.precision, fast.precision) == ("fp32", "bf16") and PRECISIONS == ("fp32", "bf16")
    assert fast.model.dtype == torch.bfloat16 and fast.reference is model
    vector = torch.randn(32, generator=torch.Generator().manual_seed(0))
    steer = [SteeringSpec(vector=vector, layer=1, coefficient=8.0)]
    config = GenerationConfig(max_new_tokens=8)
    plain = fast.generate(["hello there"], config)
    steered = fast.generate(["hello there"], config, steer)
    assert plain != steered  # steering acts on the bf16 copy
    report = fast.agreement(["hello there", "how are you"], max_new_tokens=6)
    assert report.positions == 12 and 0 <= report.top1 <= 1 and report.max_logit_diff > 0
    assert "top-1 agreement" in str(report)
    assert exact.agreement(["hello there"], max_new_tokens=4).top1 == 1.0


def test_agreement_counts_the_replies_of_the_generator_given(monkeypatch) -> None:
    """A compiled backend's ``same_greedy`` comes from its own (compiled) generator."""
    model = tiny_model()
    batch = tiny_batch(2, 6, left_pad=(0, 2))
    ids, mask = batch["input_ids"], batch["attention_mask"]
    other = at_precision(model, "bf16")
    with pytest.raises(ValueError, match="generator= must generate with `other`"):
        agreement(model, other, ids, mask, 4, generator=HookedGenerator(model))
    backend = LocalBackend(model, tiny_tokenizer(), False, precision="bf16", compile=True)
    calls: list[int] = []
    generate = HookedGenerator.generate

    def spy(self: HookedGenerator, *args, **kwargs):
        calls.append(self.compiled is not None)
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(HookedGenerator, "generate", spy)
    report = backend.agreement(["hello there"], max_new_tokens=4)
    assert calls == [False, True]  # fp32's replies eagerly, then the backend's compiled ones
    assert report.rows == 1 and report.positions == 4
