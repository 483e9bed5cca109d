"""capture_at_position and prompt formatting on tiny random models with a tiny word tokenizer.

Ground truth: every sample run ALONE (no padding) with ``output_hidden_states=True``; the
indices it is read at come from plain Python slicing, not from trait_lab.prompts.positions.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch

import trait_lab.activations.capture as capture_module
from tests.helpers import hook_counts
from trait_lab.activations.capture import capture_at_position
from trait_lab.prompts.formatting import chat_spans, encode_text, format_prompt, to_messages
from trait_lab.testing import tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = "the a cat dog sat on mat hello world how are you fine thanks tell me joke why be brief"
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> "
    "{% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
PROMPTS = [
    "hello",
    "the cat sat on the mat and the dog sat on the cat",
    "how are you",
    "tell me a joke why the dog sat",
    "fine",
]
RESPONSES = ["fine thanks", "the", "a cat sat on me you", "no", "why"]
CONVERSATION = [
    {"role": "user", "content": "hello world"},
    {"role": "assistant", "content": "fine thanks"},
    {"role": "user", "content": "tell me a joke"},
]


def make_tokenizer(chat: bool = True):
    """A word-level tokenizer that adds BOS to plain text, with an optional chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + WORDS.split())}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.add_special_tokens(SPECIALS)
    raw.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )
    tok.padding_side = "right"  # capture must not depend on (or change) this
    if chat:
        tok.chat_template = TEMPLATE
    return tok


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


def alone(model, ids: list[int]) -> tuple[torch.Tensor, ...]:
    """hidden_states of one unpadded sample: entry L+1 is block L's output, [seq, hidden]."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    return tuple(h[0] for h in out.hidden_states)


def chat_ids(tok, prompt, response: str | None = None) -> tuple[list[int], int]:
    """Independent tokenization: HF template + tokenizer, then the response's own tokens."""
    text = tok.apply_chat_template(to_messages(prompt), tokenize=False, add_generation_prompt=True)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    extra = tok(response, add_special_tokens=False)["input_ids"] if response is not None else []
    return ids + extra, len(ids)


# ---------------------------------------------------------------------- ground truth


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gpt_neox", "gemma2", "qwen3", "phi3", "olmo2"])
def test_prompt_last_matches_unpadded_runs(arch: str, tok) -> None:
    model = tiny_model(arch)
    got = capture_at_position(model, tok, PROMPTS, [0, 1], "prompt[-1]", batch_size=2)
    assert got.shape == (len(PROMPTS), 2, 32)
    for i, prompt in enumerate(PROMPTS):
        ids, _ = chat_ids(tok, prompt)
        hs = alone(model, ids)
        for j, layer in enumerate([0, 1]):
            torch.testing.assert_close(got[i, j], hs[layer + 1][-1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("position", "pool", "select"),
    [
        ("prompt[-3:]", "mean", lambda ids, p: list(range(p))[-3:]),
        ("all[:]", "mean", lambda ids, p: list(range(len(ids)))),
        ("response[:]", "mean", lambda ids, p: list(range(p, len(ids)))),
        ("response[:]", "first", lambda ids, p: [p]),
        ("all[::2]", "last", lambda ids, p: list(range(len(ids)))[::2][-1:]),
        ("response[-2:]", "mean", lambda ids, p: list(range(p, len(ids)))[-2:]),
    ],
)
def test_positions_and_pools_match_unpadded_runs(tok, position: str, pool: str, select) -> None:
    model = tiny_model("llama")
    got = capture_at_position(
        model, tok, PROMPTS, 1, position, pool, responses=RESPONSES, batch_size=3
    )
    assert got.shape == (len(PROMPTS), 32)
    for i, prompt in enumerate(PROMPTS):
        ids, p = chat_ids(tok, prompt, RESPONSES[i])
        want = alone(model, ids)[2][select(ids, p)].mean(0)
        torch.testing.assert_close(got[i], want, atol=1e-5, rtol=1e-5)


def test_pool_none_returns_every_position(tok) -> None:
    model = tiny_model("gpt2")
    got = capture_at_position(model, tok, PROMPTS, [2, 0], "all[:]", "none", batch_size=2)
    assert isinstance(got, list) and len(got) == len(PROMPTS)
    for i, prompt in enumerate(PROMPTS):
        ids, _ = chat_ids(tok, prompt)
        assert got[i].shape == (len(ids), 2, 32)
        hs = alone(model, ids)
        torch.testing.assert_close(got[i][:, 1], hs[1], atol=1e-5, rtol=1e-5)
    single = capture_at_position(model, tok, PROMPTS[:2], 0, "prompt[-2:]", "none")
    assert [t.shape for t in single] == [(2, 32), (2, 32)]


def test_last_layer_is_the_block_output_before_the_final_norm(tok) -> None:
    model = tiny_model("llama")
    got = capture_at_position(model, tok, PROMPTS, -1, "prompt[-1]", batch_size=2)
    seen: list[torch.Tensor] = []
    handle = model.model.norm.register_forward_pre_hook(lambda m, a: seen.append(a[0][0, -1]))
    try:
        for prompt in PROMPTS:
            alone(model, chat_ids(tok, prompt)[0])
    finally:
        handle.remove()
    torch.testing.assert_close(got, torch.stack(seen), atol=1e-5, rtol=1e-5)


def test_system_and_turn_positions(tok) -> None:
    model = tiny_model("llama")
    convs = [CONVERSATION, [{"role": "user", "content": "how are you"}]] * 2
    kw = dict(system="be brief", batch_size=3)
    # <s> <|system|> be brief <|end|> | <|user|> hello world <|end|> <|assistant|> | fine
    # thanks <|end|> | <|user|> tell me a joke <|end|> <|assistant|>
    sys_acts = capture_at_position(model, tok, convs, 0, "system[:]", "none", **kw)
    turn = capture_at_position(model, tok, convs[:1], 0, "turn[1]:prompt[:]", "none", **kw)
    reply = capture_at_position(model, tok, convs[:1], 0, "turn[0]:response[:]", "none", **kw)
    text = format_prompt(tok, CONVERSATION, system="be brief")
    ids = encode_text(tok, text, chat=True)
    hs = alone(model, ids)[1]
    torch.testing.assert_close(sys_acts[0], hs[1:5])
    torch.testing.assert_close(turn[0], hs[13:20])
    torch.testing.assert_close(reply[0], hs[10:13])
    assert tok.convert_ids_to_tokens(ids[10:13]) == ["fine", "thanks", "<|end|>"]
    with pytest.raises(ValueError, match=r"turn\[1\] is out of range, sample 1 has 1 turn"):
        capture_at_position(model, tok, convs, 0, "turn[1]:prompt[-1]", **kw)


def test_last_turn_response_is_the_given_response(tok) -> None:
    model = tiny_model("llama")
    a = capture_at_position(model, tok, [CONVERSATION], 0, "turn[-1]:response[:]", responses=["a"])
    b = capture_at_position(model, tok, [CONVERSATION], 0, "response[:]", responses=["a"])
    torch.testing.assert_close(a, b)


def test_pre_formatted_and_plain_text() -> None:
    model = tiny_model("llama")
    plain_tok = make_tokenizer(chat=False)
    prompts = ["the cat sat", "<s> the cat sat"]  # BOS is added once, never twice
    got = capture_at_position(model, plain_tok, prompts, 0, "all[:]", "none", pre_formatted=True)
    assert got[0].shape == got[1].shape == (4, 32)
    torch.testing.assert_close(got[0], got[1])
    hs = alone(model, [1, 8, 10, 12])[1]
    torch.testing.assert_close(got[0], hs)
    plain = capture_at_position(model, plain_tok, ["the cat sat"], 0, "all[:]", "none")
    torch.testing.assert_close(plain[0], hs)


# ---------------------------------------------------------------------- contract


def test_shapes_dtype_and_layers() -> None:
    model = tiny_model("qwen3", dtype=torch.bfloat16)
    tok = make_tokenizer()
    one = capture_at_position(model, tok, PROMPTS, 1)
    some = capture_at_position(model, tok, PROMPTS, [2, -3])
    every = capture_at_position(model, tok, PROMPTS, None)
    assert one.shape == (5, 32) and some.shape == (5, 2, 32) and every.shape == (5, 3, 32)
    assert one.dtype == torch.float32 and one.device.type == "cpu"
    torch.testing.assert_close(some[:, 1], every[:, 0])
    torch.testing.assert_close(one, every[:, 1])


def test_leaves_model_and_tokenizer_as_found(tok) -> None:
    model = tiny_model("llama")
    model.train()
    model.model.layers[1].eval()  # a mixed state is restored exactly
    before = {name: m.training for name, m in model.named_modules()}
    hooks = hook_counts(model)
    capture_at_position(model, tok, PROMPTS, [0, 1], batch_size=2)
    assert {name: m.training for name, m in model.named_modules()} == before
    assert hook_counts(model) == hooks
    assert tok.padding_side == "right"
    with pytest.raises(ValueError, match="selects no token in sample 1"):
        capture_at_position(model, tok, PROMPTS, 0, "response[1:]", responses=RESPONSES)
    assert hook_counts(model) == hooks
    assert {name: m.training for name, m in model.named_modules()} == before


def test_batch_size_does_not_change_results(tok) -> None:
    model = tiny_model("gpt2")
    a = capture_at_position(model, tok, PROMPTS, [0, 2], "prompt[-2:]", batch_size=1)
    b = capture_at_position(model, tok, PROMPTS, [0, 2], "prompt[-2:]", batch_size=5)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


class _Bar:
    """Records what capture_at_position does with its progress bar."""

    made: ClassVar[list[_Bar]] = []

    def __init__(self, **kwargs) -> None:
        self.kwargs, self.updates, self.closed = kwargs, [], False
        _Bar.made.append(self)

    def update(self, n: int) -> None:
        self.updates.append(n)

    def close(self) -> None:
        self.closed = True


def test_progress_bar_counts_prompts_per_batch_and_is_closed(tok, monkeypatch, capsys) -> None:
    model = tiny_model("llama")
    capture_at_position(model, tok, PROMPTS, 0, batch_size=2, progress=True)  # the real tqdm
    assert "capture" in capsys.readouterr().err
    monkeypatch.setattr(capture_module, "tqdm", _Bar)
    _Bar.made.clear()
    capture_at_position(model, tok, PROMPTS, 0, batch_size=2, progress=True)
    capture_at_position(model, tok, PROMPTS, 0, batch_size=2)
    shown, hidden = _Bar.made
    assert shown.kwargs["total"] == 5 and not shown.kwargs["disable"] and hidden.kwargs["disable"]
    assert shown.updates == [2, 2, 1] and shown.closed and hidden.closed

    def boom(**kwargs):
        raise RuntimeError("forward failed")

    monkeypatch.setattr(model, "forward", boom)
    with pytest.raises(RuntimeError, match="forward failed"):
        capture_at_position(model, tok, PROMPTS, 0, progress=True)
    assert _Bar.made[-1].closed and _Bar.made[-1].updates == []


class TestErrors:
    model = tiny_model("llama")

    def test_response_without_responses(self, tok) -> None:
        with pytest.raises(ValueError, match=r"pass responses=\[\.\.\.\]"):
            capture_at_position(self.model, tok, PROMPTS, 0, "response[:]")

    def test_responses_length(self, tok) -> None:
        with pytest.raises(ValueError, match="responses has 1 entries but prompts has 5"):
            capture_at_position(self.model, tok, PROMPTS, 0, responses=["a"])

    def test_bad_pool(self, tok) -> None:
        with pytest.raises(ValueError, match="unknown pool 'max'; choose one of mean"):
            capture_at_position(self.model, tok, PROMPTS, 0, pool="max")

    def test_bad_position(self, tok) -> None:
        with pytest.raises(ValueError, match="unknown frame 'promt'"):
            capture_at_position(self.model, tok, PROMPTS, 0, "promt[-1]")

    def test_selection_error_names_the_global_sample(self, tok) -> None:
        responses = ["a b", "a", "a", "a", "a"]
        with pytest.raises(ValueError) as info:
            capture_at_position(self.model, tok, PROMPTS, 0, "response[1:]", responses=responses)
        assert "selects no token in sample 1 (its response has 1 token)" in str(info.value)

    def test_bad_sample_fails_before_any_forward(self, tok) -> None:
        calls: list[int] = []
        handle = self.model.register_forward_pre_hook(lambda mod, args: calls.append(1))
        try:
            with pytest.raises(ValueError, match="in sample 4 "):
                capture_at_position(
                    self.model,
                    tok,
                    PROMPTS,
                    0,
                    "response[1:]",
                    responses=["a b"] * 4 + ["a"],
                    batch_size=2,
                )
        finally:
            handle.remove()
        assert calls == []

    def test_single_string_and_empty(self, tok) -> None:
        with pytest.raises(TypeError, match=r"wrap it: \[prompt\]"):
            capture_at_position(self.model, tok, "hello", 0)
        with pytest.raises(ValueError, match="prompts is empty"):
            capture_at_position(self.model, tok, [], 0)

    def test_bad_layers_and_batch_size(self, tok) -> None:
        with pytest.raises(ValueError, match="layer 3 is out of range"):
            capture_at_position(self.model, tok, PROMPTS, 3)
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            capture_at_position(self.model, tok, PROMPTS, 0, batch_size=0)

    def test_chat_template_required(self) -> None:
        plain = make_tokenizer(chat=False)
        with pytest.raises(
            ValueError, match=r"has no chat template\. Pass use_chat_template=False"
        ):
            capture_at_position(self.model, plain, PROMPTS, 0, use_chat_template=True)
        with pytest.raises(ValueError, match="system= needs a chat template"):
            capture_at_position(self.model, plain, PROMPTS, 0, system="be brief")

    def test_system_needs_a_system_message(self, tok) -> None:
        with pytest.raises(ValueError, match="sample 0 has none: pass system="):
            capture_at_position(self.model, tok, PROMPTS, 0, "system[:]")
        with pytest.raises(ValueError, match="system= cannot be applied to pre_formatted"):
            capture_at_position(self.model, tok, PROMPTS, 0, pre_formatted=True, system="x")


# ---------------------------------------------------------------------- prompts


class TestPrompts:
    def test_format_prompt(self, tok) -> None:
        text = format_prompt(tok, "hello", system="be brief")
        assert text == "<s><|system|> be brief <|end|> <|user|> hello <|end|> <|assistant|> "
        assert format_prompt(tok, "hello", use_chat_template=False) == "hello"
        assert format_prompt(make_tokenizer(chat=False), "hello") == "hello"

    def test_conversation_checks(self, tok) -> None:
        with pytest.raises(ValueError, match="already starts with a system message"):
            to_messages([{"role": "system", "content": "x"}, CONVERSATION[0]], system="y")
        with pytest.raises(ValueError, match="ends with an assistant message"):
            to_messages(CONVERSATION[:2])
        with pytest.raises(ValueError, match="must be a dict with 'role' and 'content'"):
            to_messages([{"text": "hi"}])
        with pytest.raises(ValueError, match=r"conversation .* needs a chat template"):
            format_prompt(tok, CONVERSATION, use_chat_template=False)

    def test_chat_spans(self, tok) -> None:
        spans = chat_spans(tok, CONVERSATION, system="be brief")
        names = tok.convert_ids_to_tokens(list(spans.input_ids))
        assert spans.system == (1, 5)  # BOS belongs to no span
        assert names[1:5] == ["<|system|>", "be", "brief", "<|end|>"]
        first, second = spans.turns
        assert names[first.start : first.prompt_end][0] == "<|user|>"
        assert names[first.prompt_end - 1] == "<|assistant|>"
        assert names[first.prompt_end : first.end] == ["fine", "thanks", "<|end|>"]
        assert (second.start, second.prompt_end, second.end) == (13, 20, 20)
        no_system = chat_spans(tok, "hello")
        assert no_system.system is None and no_system.turns[0].start == 1

    def test_plain_spans(self) -> None:
        spans = chat_spans(make_tokenizer(chat=False), "the cat")
        assert spans.input_ids == (1, 8, 10) and not spans.chat
        assert spans.system is None and len(spans.turns) == 1

    def test_template_that_rewrites_history_is_refused(self) -> None:
        tok = make_tokenizer()
        # drops earlier assistant replies, as reasoning templates do with their thinking
        tok.chat_template = (
            "{% for m in messages %}{% if m['role'] != 'assistant' or loop.last %}"
            "<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endif %}{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|> {% endif %}"
        )
        with pytest.raises(ValueError, match="not a prefix of the whole conversation"):
            chat_spans(tok, CONVERSATION)
