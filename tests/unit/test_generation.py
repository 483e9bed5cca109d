"""HookedGenerator against model.generate and a no-cache recompute of the same steering."""

from __future__ import annotations

import threading

import pytest
import torch
from torch import nn

from tests.helpers import edit_block_output, hook_counts, residual_stream, warm
from trait_lab.generation.generator import (
    CaptureConfig,
    HookedGenerator,
    ProjectionSpec,
    SamplingConfig,
    SteeringConfig,
)
from trait_lab.testing import tiny_batch, tiny_model

HIDDEN = 32
PADS = (0, 2, 4)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)


def _reference(
    model: nn.Module,
    batch: dict[str, torch.Tensor],
    steps: int,
    delta_fn=None,
    layer: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy decoding by full forwards over the growing sequence (no KV cache).

    ``delta_fn(seq_len) -> [batch, seq, hidden]`` is added to layer ``layer``'s output by a
    plain torch hook, independent of trait_lab's hook machinery.
    """
    ids, mask = batch["input_ids"], batch["attention_mask"]
    block = model.get_submodule(f"model.layers.{layer}")
    handle = None
    if delta_fn is not None:
        handle = block.register_forward_hook(lambda m, a, out: out + delta_fn(out.shape[1]))
    try:
        with torch.no_grad():
            for _ in range(steps):
                logits = model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask))
                token = logits.logits[:, -1].argmax(-1, keepdim=True)
                ids = torch.cat([ids, token], dim=1)
                mask = torch.cat([mask, torch.ones_like(token)], dim=1)
    finally:
        if handle is not None:
            handle.remove()
    return ids, mask


@pytest.mark.parametrize("arch", ["llama", "qwen3", "gemma2", "gemma3", "gpt2", "gpt_neox"])
def test_greedy_equals_model_generate_on_left_padded_batch(arch: str) -> None:
    model = tiny_model(arch)
    batch = tiny_batch(3, 6, left_pad=PADS)
    with torch.no_grad():
        expected = model.generate(
            **batch, max_new_tokens=10, do_sample=False, pad_token_id=0, eos_token_id=None
        )
    results = HookedGenerator(model).generate(
        batch["input_ids"], batch["attention_mask"], 10, eos_token_id=[]
    )
    for i, result in enumerate(results):
        assert result.token_ids == expected[i, 6:].tolist()
        assert result.prompt_ids == batch["input_ids"][i, PADS[i] :].tolist()
        assert result.finish_reason == "length"


def test_each_row_stops_at_its_own_eos() -> None:
    model = tiny_model()
    batch = tiny_batch(3, 6, left_pad=PADS)
    free = HookedGenerator(model).generate(
        batch["input_ids"], batch["attention_mask"], 10, eos_token_id=[]
    )
    eos = free[1].token_ids[3]  # row 1 emits this at step 3
    results = HookedGenerator(model).generate(
        batch["input_ids"], batch["attention_mask"], 10, eos_token_id=eos
    )
    with torch.no_grad():
        expected = model.generate(
            **batch, max_new_tokens=10, do_sample=False, pad_token_id=0, eos_token_id=eos
        )
    for i, result in enumerate(results):
        row = expected[i, 6:].tolist()
        if eos in row:
            cut = row.index(eos) + 1
            assert result.token_ids == row[:cut]
            assert result.finish_reason == "eos"
        else:
            assert result.token_ids == row
    assert results[1].token_ids[-1] == eos and len(results[1].token_ids) <= 4


def _steer_delta(v: torch.Tensor, coefs: list[float], start: int, end: int | None = None):
    def delta(seq_len: int) -> torch.Tensor:
        pos = torch.arange(seq_len)
        keep = (pos >= start) & (pos < (end if end is not None else seq_len))
        return torch.tensor(coefs)[:, None, None] * keep[None, :, None] * v

    return delta


@pytest.mark.parametrize(
    ("positions", "start", "end"),
    [("all", 0, None), ("response", 5, None), ("prompt", 0, 5), ((3, 9), 3, 9)],
)
def test_steering_under_kv_cache_equals_no_cache_recompute(positions, start, end) -> None:
    model = tiny_model()
    batch = tiny_batch(3, 6, left_pad=PADS)
    v = torch.randn(HIDDEN) * 3
    coefs = [1.0, -2.0, 3.0]
    steering = [SteeringConfig(v, 1, coefs, positions=positions)]
    results = HookedGenerator(model).generate(
        batch["input_ids"], batch["attention_mask"], 8, steering=steering, eos_token_id=[]
    )
    ids, _ = _reference(model, batch, 8, _steer_delta(v, coefs, start, end))
    for i, result in enumerate(results):
        assert result.token_ids == ids[i, 6:].tolist()


def _mode_edit(mode: str, v: torch.Tensor, c: float):
    """The mode's formula on a [batch, seq, hidden] output, written out independently."""
    r = v / v.norm()

    def edit(out: torch.Tensor) -> torch.Tensor:
        proj = out @ r
        if mode == "ablate":
            shift = -c * proj
        elif mode == "cap":
            shift = torch.clamp(c - proj, min=0)
        else:
            shift = -torch.clamp(proj - c, min=0)
        return out + shift.unsqueeze(-1) * r

    return edit


@pytest.mark.parametrize(
    ("mode", "c"), [("ablate", 1.0), ("ablate", 0.5), ("cap", 2.0), ("ceiling", -1.0)]
)
def test_directional_modes_equal_model_generate_under_a_plain_hook(mode: str, c: float) -> None:
    model = tiny_model()
    batch = tiny_batch(3, 6, left_pad=PADS)
    v = torch.randn(HIDDEN) * 3
    steer = [SteeringConfig(v, 1, c, mode=mode, rows=[1, 2])]  # row 0 stays the baseline
    results = HookedGenerator(model).generate(
        batch["input_ids"], batch["attention_mask"], 8, steering=steer, eos_token_id=[]
    )
    edit = _mode_edit(mode, v, c)
    kwargs = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": 0, "eos_token_id": None}
    with torch.no_grad():
        plain = model.generate(**batch, **kwargs)
        handle = model.get_submodule("model.layers.1").register_forward_hook(
            lambda m, a, out: edit(out)
        )
        try:
            edited = model.generate(**batch, **kwargs)
        finally:
            handle.remove()
    assert results[0].token_ids == plain[0, 6:].tolist()
    for i in (1, 2):
        assert results[i].token_ids == edited[i, 6:].tolist()
    assert [r.token_ids for r in results[1:]] != plain[1:, 6:].tolist()


def test_modes_apply_in_order_at_one_layer() -> None:
    """Ablate after add removes what was added along v; add after ablate keeps it."""
    model = tiny_model()
    batch = tiny_batch(1, 6)
    v = torch.randn(HIDDEN)
    ablate = SteeringConfig(v, 1, 1.0, mode="ablate")
    add = SteeringConfig(v, 1, 5.0)
    gen = HookedGenerator(model)

    def run(steer: list[SteeringConfig]) -> list[int]:
        return gen.generate(batch["input_ids"], None, 6, steering=steer, eos_token_id=[])[
            0
        ].token_ids

    assert run([add, ablate]) == run([ablate])
    assert run([ablate, add]) != run([ablate])


def test_first_generated_token_is_steered_in_response_mode() -> None:
    model = tiny_model()
    batch = tiny_batch(3, 6, left_pad=PADS)
    gen = HookedGenerator(model)
    plain = gen.generate(batch["input_ids"], batch["attention_mask"], 1, eos_token_id=[])
    steer = [SteeringConfig(torch.randn(HIDDEN) * 20, 1, 1.0, positions="response")]
    with_capture = CaptureConfig(layers=[1], prompt=True)
    steered = gen.generate(
        batch["input_ids"],
        batch["attention_mask"],
        1,
        steering=steer,
        capture=with_capture,
        eos_token_id=[],
    )
    assert [r.token_ids[0] for r in plain] != [r.token_ids[0] for r in steered]
    # the prompt before its last position is untouched in response mode
    unsteered = gen.generate(
        batch["input_ids"], batch["attention_mask"], 1, capture=with_capture, eos_token_id=[]
    )
    a = steered[0].prompt_activations[1]["residual"]
    b = unsteered[0].prompt_activations[1]["residual"]
    assert torch.equal(a[:-1], b[:-1]) and not torch.equal(a[-1], b[-1])


def test_per_sample_rows_match_separate_runs() -> None:
    model = tiny_model()
    one = tiny_batch(1, 6)
    batch = {k: t.repeat(4, 1) for k, t in one.items()}
    v = torch.randn(HIDDEN) * 3
    coefs = [0.0, 1.0, 2.0, 4.0]
    gen = HookedGenerator(model)
    together = gen.generate(
        batch["input_ids"],
        batch["attention_mask"],
        6,
        steering=[SteeringConfig(v, 1, coefs)],
        eos_token_id=[],
    )
    for i, c in enumerate(coefs):
        alone = gen.generate(
            one["input_ids"],
            one["attention_mask"],
            6,
            steering=[SteeringConfig(v, 1, c)],
            eos_token_id=[],
        )
        assert together[i].token_ids == alone[0].token_ids
    only_row_2 = gen.generate(
        batch["input_ids"],
        batch["attention_mask"],
        6,
        steering=[SteeringConfig(v, 1, 2.0, rows=[2])],
        eos_token_id=[],
    )
    assert only_row_2[2].token_ids == together[2].token_ids
    assert only_row_2[0].token_ids == together[0].token_ids


def test_captures_equal_a_no_cache_forward_over_the_final_sequence() -> None:
    model = tiny_model("gemma2")
    batch = tiny_batch(3, 6, left_pad=PADS)
    v = torch.randn(HIDDEN) * 2
    vectors = torch.randn(2, HIDDEN)
    coefs = [1.0, 0.0, -1.5]
    results = HookedGenerator(model).generate(
        batch["input_ids"],
        batch["attention_mask"],
        5,
        steering=[SteeringConfig(v, 1, coefs)],
        capture=CaptureConfig(
            layers=[0, 2], components=["residual", "mlp_contribution"], prompt=True
        ),
        projection=ProjectionSpec({2: vectors}),
        eos_token_id=[],
    )
    ids = torch.stack(
        [torch.tensor([0] * PADS[i] + r.prompt_ids + r.token_ids) for i, r in enumerate(results)]
    )
    mask = torch.ones_like(ids)
    for i, pad in enumerate(PADS):
        mask[i, :pad] = 0
    delta = _steer_delta(v, coefs, 0)
    handle = model.model.layers[1].register_forward_hook(
        edit_block_output(lambda h: h + delta(h.shape[1]))
    )
    try:
        with residual_stream(model) as hidden, torch.no_grad():
            model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask))
    finally:
        handle.remove()
    units = vectors / vectors.norm(dim=-1, keepdim=True)
    for i, result in enumerate(results):
        n = len(result.token_ids)
        acts = result.activations[0]["residual"]
        assert acts.shape == (n, HIDDEN)
        torch.testing.assert_close(acts, hidden[1][i, 6 : 6 + n], rtol=1e-5, atol=1e-5)
        prompt = result.prompt_activations[0]["residual"]
        torch.testing.assert_close(prompt, hidden[1][i, PADS[i] : 6], rtol=1e-5, atol=1e-5)
        proj = result.projections[2]
        assert proj.shape == (n, 2)
        assert result.norms[2].shape == (n,)
        assert result.prompt_projections[2].shape == (6 - PADS[i], 2)
        assert result.activations[2]["mlp_contribution"].shape == (n, HIDDEN)
        # layer 2 (the last block, downstream of the steering) and its projection
        residual2 = result.activations[2]["residual"]
        torch.testing.assert_close(residual2, hidden[3][i, 6 : 6 + n], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(proj, residual2.float() @ units.T, rtol=1e-5, atol=1e-5)


def test_stream_yields_progressively_and_cancel_stops_it() -> None:
    model = tiny_model()
    batch = tiny_batch(2, 5)
    warm(model, batch)
    before = hook_counts(model)
    gen = HookedGenerator(model)
    cancel = threading.Event()
    seen = []
    stream = gen.stream(
        batch["input_ids"],
        batch["attention_mask"],
        50,
        steering=[SteeringConfig(torch.ones(HIDDEN), 1, 1.0)],
        projection=ProjectionSpec({1: torch.ones(HIDDEN)}),
        eos_token_id=[],
        cancel=cancel,
    )
    for event in stream:
        assert hook_counts(model) == before  # hooks only while a step computes
        seen.append(event)
        if len(seen) == 3:
            cancel.set()
    assert len(seen) == 3  # three tokens, each with its own score; nothing after the cancel
    assert [e.step for e in seen] == [0, 1, 2]
    assert all(None not in e.token_ids and e.projections is not None for e in seen)
    assert hook_counts(model) == before
    # breaking out of the loop also removes the hooks
    for _ in gen.stream(
        batch["input_ids"],
        batch["attention_mask"],
        50,
        steering=[SteeringConfig(torch.ones(HIDDEN), 1, 1.0)],
    ):
        break
    stream_closed = hook_counts(model) == before
    assert stream_closed


def test_cancelled_generate_reports_it() -> None:
    model = tiny_model()
    batch = tiny_batch(1, 5)
    cancel = threading.Event()
    cancel.set()
    (result,) = HookedGenerator(model).generate(
        batch["input_ids"], batch["attention_mask"], 20, cancel=cancel, eos_token_id=[]
    )
    assert result.finish_reason == "cancelled" and result.token_ids == []


def test_sampling_is_reproducible_with_a_seed() -> None:
    model = tiny_model()
    batch = tiny_batch(2, 5)
    gen = HookedGenerator(model)
    cfg = SamplingConfig(do_sample=True, temperature=1.5, top_k=20, top_p=0.9, seed=7)
    a = gen.generate(batch["input_ids"], batch["attention_mask"], 8, sampling=cfg, eos_token_id=[])
    b = gen.generate(batch["input_ids"], batch["attention_mask"], 8, sampling=cfg, eos_token_id=[])
    greedy = gen.generate(batch["input_ids"], batch["attention_mask"], 8, eos_token_id=[])
    assert [r.token_ids for r in a] == [r.token_ids for r in b]
    assert [r.token_ids for r in a] != [r.token_ids for r in greedy]


class TestBadInput:
    def test_right_padding_is_refused(self) -> None:
        batch = tiny_batch(2, 5)
        batch["attention_mask"][1, -2:] = 0
        with pytest.raises(ValueError, match="LEFT padding"):
            HookedGenerator(tiny_model()).generate(batch["input_ids"], batch["attention_mask"], 2)

    def test_coefficient_per_row_must_match_batch(self) -> None:
        batch = tiny_batch(2, 5)
        steer = [SteeringConfig(torch.ones(HIDDEN), 1, [1.0, 2.0, 3.0])]
        with pytest.raises(ValueError, match="3 values but the batch has 2 rows"):
            HookedGenerator(tiny_model()).generate(batch["input_ids"], None, 2, steering=steer)

    def test_rows_outside_the_batch(self) -> None:
        steer = [SteeringConfig(torch.ones(HIDDEN), 1, 1.0, rows=[5])]
        with pytest.raises(ValueError, match=r"rows \[5\] are outside the batch"):
            HookedGenerator(tiny_model()).generate(
                tiny_batch(2, 5)["input_ids"], None, 2, steering=steer
            )

    def test_bad_sampling(self) -> None:
        with pytest.raises(ValueError, match="temperature must be > 0"):
            SamplingConfig(do_sample=True, temperature=0)

    def test_bad_positions(self) -> None:
        with pytest.raises(ValueError, match="positions must be 'all', 'response'"):
            SteeringConfig(torch.ones(HIDDEN), 1, positions="prompts")

    def test_unknown_mode(self) -> None:
        with pytest.raises(ValueError, match="unknown steering mode 'project'; choose one of add"):
            SteeringConfig(torch.ones(HIDDEN), 1, mode="project")  # type: ignore[arg-type]

    def test_zero_direction_in_a_directional_mode(self) -> None:
        steer = [SteeringConfig(torch.zeros(HIDDEN), 1, 1.0, mode="ablate")]
        with pytest.raises(ValueError, match="zero"):
            HookedGenerator(tiny_model()).generate(
                tiny_batch(1, 5)["input_ids"], None, 2, steering=steer
            )

    def test_zero_new_tokens(self) -> None:
        with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
            HookedGenerator(tiny_model()).generate(tiny_batch(1, 3)["input_ids"], None, 0)
