"""capture_at_position on the real default model against unpadded, one-prompt-at-a-time runs.

Ground truth: each prompt (and response) is tokenized with the tokenizer's own chat template,
run ALONE with ``output_hidden_states=True``, and read at indices chosen by plain Python slicing.
``hidden_states[L + 1]`` is block L's output for L below the last; HF's last entry has the final
norm applied, so the last block's output is read from the final norm's input instead.
"""

from __future__ import annotations

import pytest
import torch

from tests.helpers import hook_counts
from trait_lab.activations.capture import capture_at_position
from trait_lab.prompts.formatting import chat_spans

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("one_thread")]

PROMPTS = [
    "Hi",
    "Write a short story about a dragon who is afraid of heights and learns to fly anyway, "
    "with a twist at the end that nobody sees coming.",
    "What is 2 + 2?",
    "List three colours.",
    "Explain, in two sentences, why the sky looks blue during the day but red at sunset.",
]
RESPONSES = [
    "Hello! How can I help you today?",
    "Once",
    "2 + 2 = 4.",
    "Red, green and blue.",
    "Sunlight scatters off air molecules; blue light scatters most.",
]
ATOL = RTOL = 1e-4


def assert_matches(got: torch.Tensor, want: torch.Tensor) -> None:
    """Equal up to fp32 rounding. A padded batch runs other matmul shapes than an unpadded
    sample, so an element may differ by a few ulps of the *largest* values it was summed
    with; from layer ~12 the massive dims reach ~25,000, hence the scale-aware atol."""
    atol = max(ATOL, 2e-8 * want.abs().max().item())
    torch.testing.assert_close(got, want, atol=atol, rtol=RTOL)


def run_alone(model, tokenizer, prompt: str, response: str | None) -> tuple[torch.Tensor, int]:
    """``[n_layers, seq, hidden]`` block outputs of one unpadded sample, and its prompt length."""
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    p = len(ids)
    if response is not None:
        ids = ids + tokenizer(response, add_special_tokens=False)["input_ids"]
    seen: list[torch.Tensor] = []
    norm = model.model.norm
    handle = norm.register_forward_pre_hook(lambda mod, args: seen.append(args[0][0]))
    try:
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    finally:
        handle.remove()
    blocks = [h[0] for h in out.hidden_states[1:-1]] + seen  # last block: before the final norm
    return torch.stack(blocks).float(), p


@pytest.fixture(scope="module")
def truth(default_model):
    model, tokenizer = default_model
    with torch.no_grad():
        prompt_only = [run_alone(model, tokenizer, p, None) for p in PROMPTS]
        with_response = [
            run_alone(model, tokenizer, p, r) for p, r in zip(PROMPTS, RESPONSES, strict=True)
        ]
    return {"prompt": prompt_only, "response": with_response}


def test_prompts_really_pad(truth) -> None:
    lengths = [hs.shape[1] for hs, _ in truth["prompt"]]
    assert max(lengths[:3]) - min(lengths[:3]) > 10 and max(lengths[3:]) > min(lengths[3:])


@pytest.mark.parametrize(
    ("position", "pick"),
    [
        ("prompt[-1]", lambda p: [p - 1]),
        ("prompt[-3:]", lambda p: list(range(p))[-3:]),
        ("all[:]", lambda p: list(range(p))),
    ],
)
def test_prompt_positions_match_unpadded_runs(default_model, truth, position, pick) -> None:
    model, tokenizer = default_model
    layers = [0, 9, 17, 28, 29]
    got = capture_at_position(model, tokenizer, PROMPTS, layers, position, "mean", batch_size=3)
    assert got.shape == (len(PROMPTS), len(layers), 576) and got.dtype == torch.float32
    for i, (hs, p) in enumerate(truth["prompt"]):
        want = hs[layers][:, pick(p)].mean(dim=1)
        assert_matches(got[i], want)


def test_every_layer_every_token(default_model, truth) -> None:
    model, tokenizer = default_model
    got = capture_at_position(model, tokenizer, PROMPTS, None, "all[:]", "none", batch_size=3)
    for i, (hs, _) in enumerate(truth["prompt"]):
        assert got[i].shape == (hs.shape[1], 30, 576)
        assert_matches(got[i], hs.transpose(0, 1))


@pytest.mark.parametrize("pool", ["mean", "first", "last"])
def test_response_positions_match_unpadded_runs(default_model, truth, pool) -> None:
    model, tokenizer = default_model
    got = capture_at_position(
        model, tokenizer, PROMPTS, 14, "response[:]", pool, responses=RESPONSES, batch_size=3
    )
    assert got.shape == (len(PROMPTS), 576)
    for i, (hs, p) in enumerate(truth["response"]):
        resp = hs[14, p:]
        want = {"mean": resp.mean(0), "first": resp[0], "last": resp[-1]}[pool]
        assert_matches(got[i], want)


def test_response_slice_with_step(default_model, truth) -> None:
    model, tokenizer = default_model
    got = capture_at_position(
        model, tokenizer, PROMPTS, [3], "all[1::3]", "none", responses=RESPONSES, batch_size=3
    )
    for i, (hs, _) in enumerate(truth["response"]):
        assert_matches(got[i][:, 0], hs[3, 1::3])


def test_response_too_short_names_the_sample(default_model) -> None:
    model, tokenizer = default_model
    with pytest.raises(ValueError, match=r"selects no token in sample 1 \(its response has 1 "):
        capture_at_position(
            model, tokenizer, PROMPTS, 0, "response[2:]", responses=RESPONSES, batch_size=3
        )


def test_tokenizer_and_model_left_as_found(default_model) -> None:
    model, tokenizer = default_model
    side, hooks = tokenizer.padding_side, hook_counts(model)
    capture_at_position(model, tokenizer, PROMPTS[:2], 0)
    assert tokenizer.padding_side == side and not model.training
    assert hook_counts(model) == hooks


def test_chat_spans_on_the_real_template(default_model) -> None:
    _, tokenizer = default_model
    conversation = [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
    ]
    spans = chat_spans(tokenizer, conversation, system="Be brief.")
    ids = list(spans.input_ids)

    def text(lo: int, hi: int) -> str:
        return tokenizer.decode(ids[lo:hi])

    assert text(*spans.system) == "<|im_start|>system\nBe brief.<|im_end|>\n"
    first, second = spans.turns
    assert text(first.start, first.prompt_end) == (
        "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n"
    )
    assert text(first.prompt_end, first.end) == "Hello! How can I help?<|im_end|>\n"
    assert text(second.start, second.prompt_end).startswith("<|im_start|>user\nTell me a joke.")
    assert second.prompt_end == second.end == len(ids)


def test_turn_and_system_positions(default_model) -> None:
    model, tokenizer = default_model
    conversation = [
        {"role": "user", "content": "Hi there"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me a joke."},
    ]
    convs = [conversation, [{"role": "user", "content": "What is 2 + 2?"}]]
    kw = dict(system="Be brief.", batch_size=2)
    last = capture_at_position(model, tokenizer, convs, 5, "turn[-1]:prompt[-1]", **kw)
    plain = capture_at_position(model, tokenizer, convs, 5, "prompt[-1]", **kw)
    torch.testing.assert_close(last, plain)
    sys_acts = capture_at_position(model, tokenizer, convs, 5, "system[:]", "none", **kw)
    # <|im_start|> system \n Be brief . <|im_end|> \n
    assert sys_acts[0].shape == sys_acts[1].shape == (8, 576)
    # the same system message gives the same activations whatever follows it (causal model)
    assert_matches(sys_acts[0], sys_acts[1])
