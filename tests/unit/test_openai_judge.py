"""OpenAIJudge against ``trait-lab serve`` on loopback, through the real ``openai`` client.

The judge model is the tiny random model with a word-level tokenizer that has one token per
number 0–100, so its first token's top logprobs are the whole story: the expected score is
computed by hand from the model's own first-step logits and must match to 1e-6.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.serve_helpers import biased_model, chat_tokenizer, running, word_tokenizer
from trait_lab.evaluation import (
    JudgeItem,
    JudgeRequestError,
    JudgeTokenizerError,
    JudgeUnavailableError,
    OpenAIJudge,
    run_sync,
    trait_prompt,
)
from trait_lab.evaluation.scoring import number_value
from trait_lab.prompts.formatting import encode_text, format_prompt
from trait_lab.serve import create_app
from trait_lab.testing import tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")

NAME = "judge"
ITEMS = [
    JudgeItem("How was your day?", f"It was {word} !", "optimism", "Expects good outcomes.")
    for word in ("hello", "the", "one", "an ai", "how", "hello hello")
]


@pytest.fixture(scope="module")
def tok() -> Any:
    return word_tokenizer()


@pytest.fixture(scope="module")
def model() -> Any:
    return tiny_model("llama", seed=3)


@pytest.fixture(scope="module")
def base_url(model: Any, tok: Any) -> Iterator[str]:
    with running(create_app(model, tok, model_name=NAME)) as url:
        yield url


def _judge(base_url: str, **kwargs: Any) -> OpenAIJudge:
    options = {"api_key": "x", "min_mass": 0.01, "max_retries": 1, "backoff": 0.01}
    return OpenAIJudge(NAME, base_url, **{**options, **kwargs})


def _by_hand(model: Any, tok: Any, item: JudgeItem, min_mass: float) -> float | None:
    """Σ v·p(v) / Σ p(v) over the number tokens among the first step's 20 likeliest tokens."""
    text = format_prompt(tok, [{"role": "user", "content": trait_prompt(item)}])
    ids = torch.tensor([encode_text(tok, text, chat=True)])
    with torch.no_grad():
        logits = model(ids).logits[0, -1]
    values, top = torch.topk(torch.log_softmax(logits.float(), dim=-1), 20)
    probs: dict[int, float] = {}
    for logprob, token in zip(values.tolist(), top.tolist(), strict=True):
        number = number_value(tok.decode([token]))
        if number is not None:
            probs[number] = probs.get(number, 0.0) + math.exp(logprob)
    mass = sum(probs.values())
    return None if mass < min_mass else sum(v * p for v, p in probs.items()) / mass


def test_scores_are_the_expectation_over_number_tokens(base_url: str, model: Any, tok: Any) -> None:
    judge = _judge(base_url)
    scores = run_sync(judge.score_trait(ITEMS[:2]))
    expected = [_by_hand(model, tok, item, 0.01) for item in ITEMS[:2]]
    assert None not in expected
    assert scores == pytest.approx(expected, abs=1e-6)
    coherence = run_sync(judge.score_coherence(ITEMS[:1]))
    assert coherence[0] is not None and 0 <= coherence[0] <= 100


def test_concurrent_scores_keep_the_order(base_url: str) -> None:
    together = run_sync(_judge(base_url, max_concurrency=4).score_trait(ITEMS))
    one_by_one = [run_sync(_judge(base_url).score_trait([item]))[0] for item in ITEMS]
    assert together == one_by_one
    assert len(set(together)) > 1  # the items really score differently


def test_too_little_mass_on_numbers_is_none(base_url: str, tok: Any) -> None:
    assert run_sync(_judge(base_url, min_mass=0.99).score_trait(ITEMS[:1])) == [None]
    hello = tok.convert_tokens_to_ids("hello")
    with running(create_app(biased_model([hello]), tok, model_name=NAME)) as url:
        assert run_sync(_judge(url).score_trait(ITEMS[:1])) == [None]  # it answers "hello"


def test_identity_names_the_judge_and_never_the_key(base_url: str) -> None:
    identity = _judge(base_url, api_key="sk-secret").identity
    assert identity["kind"] == "openai" and identity["model"] == NAME
    assert identity["base_url"] == base_url and identity["top_logprobs"] == 20
    assert set(identity["prompts"]) == {"trait", "coherence"}
    assert "sk-secret" not in repr(identity)


def test_digit_by_digit_tokenizer_is_refused() -> None:
    tok = chat_tokenizer()  # "75" is "7", "5"
    digits = [tok.convert_tokens_to_ids(str(d)) for d in range(10)]
    app = create_app(biased_model(digits), tok, model_name=NAME)
    with running(app) as url, pytest.raises(JudgeTokenizerError) as info:
        run_sync(_judge(url).score_requests(["Rate it"]))  # short: 256-token context
    assert "digit by digit" in str(info.value) and "LocalLogprobJudge" in str(info.value)


class CannedJudge(OpenAIJudge):
    """Answers without a server: "57" spelt as the tokens given, every item as "8"."""

    def __init__(self, probe_tokens: list[str]) -> None:
        super().__init__("canned", "http://127.0.0.1:9/v1", api_key="x")
        self.probe_tokens = probe_tokens

    async def _answer(self, client: Any, request: str) -> dict:
        if "57" in request:
            return {"tokens": self.probe_tokens, "top_logprobs": [[self.probe_tokens[0], 0.0]]}
        return {"tokens": ["8"], "top_logprobs": [["8", 0.0]]}


def test_single_digit_answers_of_a_digit_tokenizer_are_caught_by_the_probe() -> None:
    """Answers "8" cannot show how numbers are spelt; the one-off "57" probe does."""
    with pytest.raises(JudgeTokenizerError, match="digit by digit"):
        run_sync(CannedJudge(["5", "7"]).score_requests(["Rate it"]))
    assert run_sync(CannedJudge(["57"]).score_requests(["Rate it"])) == [8.0]
    assert run_sync(CannedJudge(["Sure"]).score_requests(["Rate it"])) == [8.0]  # no verdict


def test_unreachable_server_fails_after_bounded_retries() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    judge = _judge(url, max_retries=2, backoff=0.001)
    with pytest.raises(JudgeUnavailableError) as info:
        run_sync(judge.score_trait(ITEMS[:1]))
    assert url in str(info.value) and "3 attempts" in str(info.value)
    assert judge.requests_sent == 3


def test_refused_request_is_not_retried(base_url: str) -> None:
    judge = OpenAIJudge("gpt-9", base_url, api_key="x", max_retries=3, backoff=0.01)
    with pytest.raises(JudgeRequestError) as info:
        run_sync(judge.score_trait(ITEMS[:1]))
    message = str(info.value)
    assert "HTTP 404" in message and "'gpt-9'" in message and base_url in message
    assert "GET /v1/models" in message and judge.requests_sent == 1


def test_cache_makes_a_rerun_free(model: Any, tok: Any, tmp_path: Path) -> None:
    with running(create_app(model, tok, model_name=NAME)) as url:
        first = _judge(url, cache_dir=tmp_path)
        scores = run_sync(first.score_trait(ITEMS[:3]))
        # one request per item, and the one-off "57" probe of how numbers are tokenized
        assert first.requests_sent == 4 and len(list(tmp_path.glob("*.json"))) == 4
    again = _judge(url, cache_dir=tmp_path)  # the server is gone: only the cache can answer
    assert run_sync(again.score_trait(ITEMS[:3])) == scores
    assert again.requests_sent == 0
    other = _judge(url, cache_dir=tmp_path, top_logprobs=5, max_retries=0)
    with pytest.raises(JudgeUnavailableError):  # other parameters: not in the cache
        run_sync(other.score_trait(ITEMS[:1]))


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="top_logprobs=30"):
        OpenAIJudge(NAME, "http://127.0.0.1:1/v1", top_logprobs=30)
    with pytest.raises(ValueError, match="min_mass=0"):
        OpenAIJudge(NAME, "http://127.0.0.1:1/v1", min_mass=0)
