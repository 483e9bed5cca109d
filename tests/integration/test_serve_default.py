"""``trait-lab serve`` with the default model, through the real ``openai`` client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
import torch

from tests.serve_helpers import running
from trait_lab.generation import HookedGenerator, SteeringConfig
from trait_lab.prompts.formatting import encode_text, format_prompt
from trait_lab.serve import create_app

pytestmark = pytest.mark.integration

NAME = "SmolLM2-135M-Instruct"
QUESTION = "What is the capital of France?"


@pytest.fixture(scope="module")
def client(default_model: Any) -> Iterator[openai.OpenAI]:
    model, tokenizer = default_model
    with running(create_app(model, tokenizer, model_name=NAME)) as url:
        yield openai.OpenAI(base_url=url, api_key="x", max_retries=0)


def _reference(default_model: Any, steering: list[SteeringConfig]) -> tuple[list[int], list[int]]:
    model, tokenizer = default_model
    text = format_prompt(tokenizer, [{"role": "user", "content": QUESTION}])
    ids = encode_text(tokenizer, text, chat=True)
    (out,) = HookedGenerator(model).generate(
        torch.tensor([ids]), max_new_tokens=12, steering=steering
    )
    return ids, [t for t in out.token_ids if t != tokenizer.eos_token_id]


def _ask(client: openai.OpenAI, **kwargs: Any) -> Any:
    return client.chat.completions.create(
        model=NAME,
        messages=[{"role": "user", "content": QUESTION}],
        max_tokens=12,
        temperature=0,
        **kwargs,
    )


def test_greedy_chat_and_logprobs(default_model: Any, client: openai.OpenAI) -> None:
    model, tokenizer = default_model
    ids, generated = _reference(default_model, [])
    out = _ask(client, logprobs=True, top_logprobs=3)
    assert out.choices[0].message.content == tokenizer.decode(generated, skip_special_tokens=True)
    assert "Paris" in out.choices[0].message.content
    with torch.no_grad():
        logits = model(torch.tensor([ids + generated]), use_cache=False).logits[0]
    content = out.choices[0].logprobs.content
    assert len(content) == len(generated)
    for k, (entry, token) in enumerate(zip(content, generated, strict=True)):
        logp = torch.log_softmax(logits[len(ids) - 1 + k].float(), dim=-1)
        assert entry.logprob == pytest.approx(float(logp[token]), abs=1e-4)


def test_steering_by_value(default_model: Any, client: openai.OpenAI) -> None:
    _, tokenizer = default_model
    vector = torch.randn(576, generator=torch.Generator().manual_seed(0))
    vector = vector / vector.norm()
    item = {"vector": vector.tolist(), "layer": 10, "coefficient": 40.0}
    out = _ask(client, extra_body={"steering": [item]})
    _, steered = _reference(default_model, [SteeringConfig(vector, 10, 40.0)])
    _, plain = _reference(default_model, [])
    assert out.choices[0].message.content == tokenizer.decode(steered, skip_special_tokens=True)
    assert steered != plain
