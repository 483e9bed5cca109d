"""Helpers for the tests of ``trait-lab serve`` and the OpenAI-compatible judge.

``running(app)`` serves an app with uvicorn on a free loopback port in a background thread;
``word_tokenizer()`` is a word-level tokenizer with one token per number 0–100 (like GPT-4o or
Llama 3) whose 128 ids fit ``tiny_model``; ``chat_tokenizer()`` is the character-level tiny
tokenizer (numbers digit by digit) with a chat template.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import torch
import transformers as tf
import uvicorn
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from torch import nn

from trait_lab.testing import tiny_model, tiny_tokenizer

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} </s> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
CHAR_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
_SPECIALS = ["<pad>", "<s>", "</s>", "<unk>", "<|user|>", "<|system|>", "<|assistant|>", "<|x|>"]
_WORDS = "you are grading one answer of an ai assistant trait question how the . , : ? ! hello"


@contextlib.contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve ``app`` on ``127.0.0.1:<free port>``; yields the base URL ``http://…/v1``."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def word_tokenizer() -> Any:
    """Word-level, lower-cased: 8 special tokens, the numbers 0–100, 19 words (128 ids)."""
    words = _SPECIALS + [str(n) for n in range(101)] + _WORDS.split()
    assert len(words) == 128
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = tf.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        additional_special_tokens=_SPECIALS[4:],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def chat_tokenizer() -> Any:
    """``tiny_tokenizer()`` (digits one by one) with a plain-text chat template."""
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = CHAR_CHAT_TEMPLATE
    return tokenizer


def biased_model(token_ids: list[int], bias: float = 50.0, seed: int = 0) -> nn.Module:
    """``tiny_model("llama")`` whose output layer adds ``bias`` to these tokens' logits, so it
    always answers one of them."""
    model = tiny_model("llama", seed=seed)
    old = model.lm_head
    head = nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(old.weight)
        head.bias.zero_()
        head.bias[token_ids] = bias
    model.lm_head = head
    return model
