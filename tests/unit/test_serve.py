"""``trait-lab serve`` on loopback, through the real ``openai`` client, against the tiny model.

Everything a client can see is checked against an independent computation: greedy text
against ``HookedGenerator`` and ``model.generate``, logprobs against a no-cache forward over
the final sequence, streamed pieces against the whole reply, steering against
``HookedGenerator`` with the same ``SteeringConfig``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pandas as pd
import pytest
import torch

from tests.serve_helpers import chat_tokenizer, running
from trait_lab.core.paths import steering_dir
from trait_lab.core.types import JudgeResult
from trait_lab.evaluation.summary import Recommendation, SteeringSummary, write_summary
from trait_lab.extraction.outputs import INPUTS, extraction_dir, vector_path
from trait_lab.generation import HookedGenerator, SamplingConfig, SteeringConfig
from trait_lab.io.vectors import save_vector
from trait_lab.prompts.formatting import encode_text, format_prompt
from trait_lab.serve import create_app
from trait_lab.testing import tiny_model, tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

NAME = "tiny"
PROMPT = "Once upon a time"
HIDDEN = 32


def _experiment(root: Path) -> dict[tuple[str, int], torch.Tensor]:
    """An extraction of trait "optimism" (methods probe and mean_diff at layers 0-2)."""
    folder = extraction_dir("exp", "optimism", "instruct", str(root))
    gen = torch.Generator().manual_seed(1)
    vectors, rows = {}, []
    for method in ("probe", "mean_diff"):
        for layer in range(3):
            vector = torch.randn(HIDDEN, generator=gen)
            vector = vector / vector.norm()
            save_vector(vector, vector_path(folder, "residual", method, layer), layer=layer)
            vectors[(method, layer)] = vector
            effect = 3.0 if (method, layer) == ("probe", 1) else layer / 10 + len(method) / 5
            rows.append(
                {
                    "component": "residual",
                    "method": method,
                    "layer": layer,
                    "val_accuracy": 0.9,
                    "val_polarity_correct": True,
                    "val_effect_size": effect,
                }
            )
    pd.DataFrame(rows).to_csv(folder / "metrics.csv", index=False)
    (folder / INPUTS).write_text(json.dumps({"hash": "test", "position": "response[:]"}))
    return vectors


@pytest.fixture(scope="module")
def model() -> Any:
    """The tiny model cut to the tiny tokenizer's 79 ids, so every id has a distinct text."""
    model = tiny_model("llama")
    model.resize_token_embeddings(len(tiny_tokenizer()), mean_resizing=False)
    return model


@pytest.fixture(scope="module")
def tok() -> Any:
    return chat_tokenizer()


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("experiments")
    return root, _experiment(root)


@pytest.fixture(scope="module")
def app(model: Any, tok: Any, experiment: tuple[Path, dict]) -> Any:
    app = create_app(model, tok, model_name=NAME, experiment="exp", root=experiment[0])

    @app.get("/typed/{x}")
    def typed(x: int) -> dict[str, int]:  # a route with FastAPI's own validation (422)
        return {"x": x}

    return app


@pytest.fixture(scope="module")
def base_url(app: Any) -> Iterator[str]:
    with running(app) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base_url, api_key="x", max_retries=0)


def _chat_ids(tok: Any, content: str = PROMPT) -> list[int]:
    text = format_prompt(tok, [{"role": "user", "content": content}])
    return encode_text(tok, text, chat=True)


def _reference(model: Any, ids: list[int], n: int, steering: list | None = None) -> list[int]:
    """Greedy tokens from HookedGenerator, the end-of-sequence token dropped."""
    (out,) = HookedGenerator(model).generate(
        torch.tensor([ids]), max_new_tokens=n, steering=steering or []
    )
    return [t for t in out.token_ids if t != 2]


def _chat(client: openai.OpenAI, **kwargs: Any) -> Any:
    options = {"model": NAME, "messages": [{"role": "user", "content": PROMPT}]}
    return client.chat.completions.create(**{**options, "temperature": 0, **kwargs})


class TestGeneration:
    def test_models_lists_the_served_name(self, client: openai.OpenAI) -> None:
        assert [m.id for m in client.models.list().data] == [NAME]
        assert client.models.retrieve(NAME).id == NAME

    def test_greedy_completion_matches_hooked_generator_and_generate(
        self, client: openai.OpenAI, model: Any, tok: Any
    ) -> None:
        out = client.completions.create(model=NAME, prompt=PROMPT, max_tokens=12, temperature=0)
        ids = encode_text(tok, PROMPT)
        expected = _reference(model, ids, 12)
        generated = model.generate(
            torch.tensor([ids]), max_new_tokens=12, do_sample=False, pad_token_id=0
        )[0, len(ids) :].tolist()
        assert [t for t in generated if t != 2] == expected
        assert out.choices[0].text == tok.decode(expected, skip_special_tokens=True)
        assert out.usage.prompt_tokens == len(ids)
        assert out.usage.completion_tokens == len(generated)
        assert out.usage.total_tokens == len(ids) + len(generated)
        reason = "stop" if len(expected) < len(generated) else "length"
        assert out.choices[0].finish_reason == reason

    def test_greedy_chat_matches_hooked_generator(
        self, client: openai.OpenAI, model: Any, tok: Any
    ) -> None:
        out = _chat(client, max_tokens=10)
        expected = _reference(model, _chat_ids(tok), 10)
        assert out.choices[0].message.role == "assistant"
        assert out.choices[0].message.content == tok.decode(expected, skip_special_tokens=True)
        assert out.usage.prompt_tokens == len(_chat_ids(tok))

    def test_chat_logprobs_are_the_model_log_softmax(
        self, client: openai.OpenAI, model: Any, tok: Any
    ) -> None:
        out = _chat(client, max_tokens=8, logprobs=True, top_logprobs=5)
        ids = _chat_ids(tok)
        generated = _reference(model, ids, 8)
        content = out.choices[0].logprobs.content
        assert len(content) == len(generated)
        with torch.no_grad():
            logits = model(torch.tensor([ids + generated]), use_cache=False).logits[0]
        for k, (entry, token) in enumerate(zip(content, generated, strict=True)):
            logp = torch.log_softmax(logits[len(ids) - 1 + k].float(), dim=-1)
            assert entry.token == tok.decode([token])
            assert entry.logprob == pytest.approx(float(logp[token]), abs=1e-4)
            assert entry.bytes == list(entry.token.encode())
            values, top_ids = torch.topk(logp, 5)
            assert [t.token for t in entry.top_logprobs] == [tok.decode([i]) for i in top_ids]
            got = [t.logprob for t in entry.top_logprobs]
            assert got == sorted(got, reverse=True)
            assert got == pytest.approx(values.tolist(), abs=1e-4)
            assert entry.top_logprobs[0].logprob == pytest.approx(entry.logprob)  # greedy

    def test_completion_logprobs_have_the_legacy_shape(self, client: openai.OpenAI) -> None:
        out = client.completions.create(
            model=NAME, prompt=PROMPT, max_tokens=6, temperature=0, logprobs=3
        )
        choice = out.choices[0]
        lp = choice.logprobs
        assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs)
        assert len(lp.text_offset) == len(lp.tokens) > 0
        for token, logprob, top, offset in zip(
            lp.tokens, lp.token_logprobs, lp.top_logprobs, lp.text_offset, strict=True
        ):
            assert choice.text[offset : offset + len(token)] == token
            assert 3 <= len(top) <= 4 and top[token] == pytest.approx(logprob)
            assert max(top.values()) == pytest.approx(logprob)  # greedy: the best token
        assert "".join(lp.tokens) == choice.text

    def test_seeded_sampling_repeats(self, client: openai.OpenAI) -> None:
        runs = [
            client.completions.create(
                model=NAME, prompt=PROMPT, max_tokens=10, temperature=1.5, top_p=0.9, seed=7
            ).choices[0]
            for _ in range(2)
        ]
        assert runs[0].text == runs[1].text

    def test_max_tokens_ends_with_length(self, client: openai.OpenAI) -> None:
        out = _chat(client, max_completion_tokens=1)
        assert out.usage.completion_tokens == 1
        assert out.choices[0].finish_reason in ("length", "stop")


class TestStopAndStream:
    def _text(self, client: openai.OpenAI) -> str:
        text = (
            client.completions.create(model=NAME, prompt=PROMPT, max_tokens=30, temperature=0)
            .choices[0]
            .text
        )
        assert len(text) >= 8, "the tiny model's greedy text is too short for these tests"
        return text

    def test_stop_string_cuts_the_text(self, client: openai.OpenAI) -> None:
        text = self._text(client)
        stop = text[4:6]
        out = client.completions.create(
            model=NAME, prompt=PROMPT, max_tokens=30, temperature=0, stop=["zzzz", stop]
        )
        assert out.choices[0].text == text[: text.find(stop)]
        assert out.choices[0].finish_reason == "stop"

    def test_stream_concatenates_to_the_whole_reply(self, client: openai.OpenAI) -> None:
        text = self._text(client)
        for stop in (None, text[5:8]):
            whole = client.completions.create(
                model=NAME, prompt=PROMPT, max_tokens=30, temperature=0, stop=stop, logprobs=2
            ).choices[0]
            chunks = list(
                client.completions.create(
                    model=NAME,
                    prompt=PROMPT,
                    max_tokens=30,
                    temperature=0,
                    stop=stop,
                    logprobs=2,
                    stream=True,
                )
            )
            assert "".join(c.choices[0].text for c in chunks) == whole.text
            tokens = [
                t for c in chunks if c.choices[0].logprobs for t in c.choices[0].logprobs.tokens
            ]
            assert tokens == whole.logprobs.tokens
            assert chunks[-1].choices[0].finish_reason == whole.finish_reason

    def test_chat_stream_with_logprobs_and_usage(self, client: openai.OpenAI) -> None:
        whole = _chat(client, max_tokens=12, logprobs=True, top_logprobs=2)
        chunks = list(
            _chat(
                client,
                max_tokens=12,
                logprobs=True,
                top_logprobs=2,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        assert chunks[0].choices[0].delta.role == "assistant"
        deltas = [c.choices[0].delta.content or "" for c in chunks if c.choices]
        assert "".join(deltas) == whole.choices[0].message.content
        streamed = [
            (e.token, e.logprob)
            for c in chunks
            if c.choices and c.choices[0].logprobs
            for e in c.choices[0].logprobs.content
        ]
        assert streamed == [(e.token, e.logprob) for e in whole.choices[0].logprobs.content]
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == (
            whole.choices[0].finish_reason
        )
        assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage

    def test_a_busy_model_does_not_block_the_server(
        self, client: openai.OpenAI, app: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        gate = threading.Event()
        real = app.state.server.engine.run

        def gated(*args: Any, **kwargs: Any) -> Any:
            assert gate.wait(timeout=60)
            return real(*args, **kwargs)

        monkeypatch.setattr(app.state.server.engine, "run", gated)
        options = {"model": NAME, "prompt": PROMPT, "max_tokens": 20, "temperature": 0}
        results: dict[str, str] = {}

        def streamed() -> None:
            chunks = client.completions.create(**options, stream=True)
            results["stream"] = "".join(c.choices[0].text for c in chunks)

        def whole() -> None:
            results["whole"] = client.completions.create(**options).choices[0].text

        threads = [threading.Thread(target=streamed), threading.Thread(target=whole)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)  # both requests wait for the model
        assert [m.id for m in client.models.list().data] == [NAME]  # answered meanwhile
        assert results == {}
        gate.set()
        for thread in threads:
            thread.join(timeout=60)
        assert results["stream"] == results["whole"] == self._text(client)[: len(results["whole"])]


class TestSteering:
    def test_by_value_matches_hooked_generator_and_changes_the_text(
        self, client: openai.OpenAI, model: Any, tok: Any
    ) -> None:
        vector = torch.randn(HIDDEN, generator=torch.Generator().manual_seed(3))
        item = {"vector": vector.tolist(), "layer": 1, "coefficient": 6.0}
        out = _chat(client, max_tokens=10, extra_body={"steering": [item]})
        config = SteeringConfig(vector=vector, layer=1, coefficient=6.0)
        expected = _reference(model, _chat_ids(tok), 10, [config])
        assert out.choices[0].message.content == tok.decode(expected, skip_special_tokens=True)
        assert expected != _reference(model, _chat_ids(tok), 10)

    def test_response_positions(self, client: openai.OpenAI, model: Any, tok: Any) -> None:
        vector = torch.randn(HIDDEN, generator=torch.Generator().manual_seed(4))
        item = {"vector": vector.tolist(), "layer": 0, "coefficient": 5.0, "positions": "response"}
        out = _chat(client, max_tokens=8, extra_body={"steering": [item]})
        config = SteeringConfig(vector=vector, layer=0, coefficient=5.0, positions="response")
        expected = _reference(model, _chat_ids(tok), 8, [config])
        assert out.choices[0].message.content == tok.decode(expected, skip_special_tokens=True)

    def test_by_trait_uses_the_selected_vector(
        self, client: openai.OpenAI, model: Any, tok: Any, experiment: tuple[Path, dict]
    ) -> None:
        vectors = experiment[1]
        cases = [
            ({}, ("probe", 1)),  # selection: the largest effect size
            ({"layer": 2, "method": "mean_diff"}, ("mean_diff", 2)),  # that file
            ({"layer": 0}, ("mean_diff", 0)),  # selection among layer 0's vectors
        ]
        for extra, (method, layer) in cases:
            item = {"trait": "optimism", "coefficient": 8.0, **extra}
            out = _chat(client, max_tokens=8, extra_body={"steering": [item]})
            config = SteeringConfig(vector=vectors[(method, layer)], layer=layer, coefficient=8.0)
            expected = _reference(model, _chat_ids(tok), 8, [config])
            assert out.choices[0].message.content == tok.decode(
                expected, skip_special_tokens=True
            ), (extra, method, layer)

    def test_by_trait_without_coefficient_uses_the_evaluated_recommendation(
        self, model: Any, tok: Any, tmp_path: Path
    ) -> None:
        vectors = _experiment(tmp_path)
        path = vector_path(
            extraction_dir("exp", "optimism", "instruct", str(tmp_path)), "residual", "mean_diff", 2
        )
        rec = Recommendation(
            1,
            (2,),
            (6.0,),
            0.1,
            "residual",
            "mean_diff",
            "response[:]",
            (str(path),),
            "residual/mean_diff/L2@+6",
            10.0,
            90.0,
            60.0,
            10.0,
            90.0,
            4,
            True,
        )
        base = JudgeResult(50.0, 90.0, 4)
        summary = SteeringSummary(
            "exp", "optimism", "instruct", "default", {"kind": "x"}, base, base, [rec]
        )
        write_summary(steering_dir("exp", "optimism", "instruct", root=str(tmp_path)), summary)
        app = create_app(model, tok, model_name=NAME, experiment="exp", root=tmp_path)
        with running(app) as url:
            client = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
            item = {"trait": "optimism"}  # no coefficient: the recommended one, at its layer
            out = _chat(client, max_tokens=8, extra_body={"steering": [item]})
        config = SteeringConfig(vector=vectors[("mean_diff", 2)], layer=2, coefficient=6.0)
        expected = _reference(model, _chat_ids(tok), 8, [config])
        assert out.choices[0].message.content == tok.decode(expected, skip_special_tokens=True)

    def test_seeded_sampling_with_steering_matches(
        self, client: openai.OpenAI, model: Any, tok: Any
    ) -> None:
        vector = torch.randn(HIDDEN, generator=torch.Generator().manual_seed(5))
        item = {"vector": vector.tolist(), "layer": 2, "coefficient": 3.0}
        out = _chat(client, max_tokens=8, temperature=0.8, seed=5, extra_body={"steering": [item]})
        (ref,) = HookedGenerator(model).generate(
            torch.tensor([_chat_ids(tok)]),
            max_new_tokens=8,
            steering=[SteeringConfig(vector=vector, layer=2, coefficient=3.0)],
            sampling=SamplingConfig(do_sample=True, temperature=0.8, seed=5),
        )
        expected = [t for t in ref.token_ids if t != 2]
        assert out.choices[0].message.content == tok.decode(expected, skip_special_tokens=True)


def _error(exc_info: pytest.ExceptionInfo) -> dict[str, Any]:
    body = exc_info.value.body
    assert isinstance(body, dict) and {"message", "type", "param", "code"} <= set(body)
    return body


class TestErrors:
    def test_wrong_model_is_404(self, client: openai.OpenAI) -> None:
        with pytest.raises(openai.NotFoundError) as info:
            client.chat.completions.create(
                model="gpt-9", messages=[{"role": "user", "content": "Hi"}]
            )
        error = _error(info)
        assert error["code"] == "model_not_found" and "'gpt-9'" in error["message"]
        assert f"model={NAME!r}" in error["message"]

    @pytest.mark.parametrize(
        ("kwargs", "param", "words"),
        [
            ({"n": 2}, "n", "n=2 is invalid"),
            ({"top_p": 0}, "top_p", "temperature=0"),
            ({"temperature": 3}, "temperature", "[0.0, 2.0]"),
            ({"max_tokens": 1000}, "max_tokens", "context is 256 tokens"),
            ({"top_logprobs": 3}, "top_logprobs", "logprobs=true"),
            ({"logprobs": True, "top_logprobs": 21}, "top_logprobs", "[0, 20]"),
            ({"stop": ["a", "b", "c", "d", "e"]}, "stop", "at most 4"),
            ({"presence_penalty": 1.0}, "presence_penalty", "not implemented"),
            ({"extra_body": {"foo": 1}}, "foo", "unknown parameter 'foo'"),
            ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role", "'tool'"),
        ],
    )
    def test_bad_chat_fields(
        self, client: openai.OpenAI, kwargs: dict, param: str, words: str
    ) -> None:
        with pytest.raises(openai.BadRequestError) as info:
            _chat(client, **kwargs)
        error = _error(info)
        assert error["type"] == "invalid_request_error" and error["param"] == param
        assert words in error["message"]

    @pytest.mark.parametrize(
        ("kwargs", "param", "words"),
        [
            ({"prompt": ["a", "b"]}, "prompt", "one prompt per request"),
            ({"logprobs": 6}, "logprobs", "[0, 5]"),
            ({"echo": True}, "echo", "echo is not implemented"),
            ({"prompt": ""}, "prompt", "non-empty string"),
        ],
    )
    def test_bad_completion_fields(
        self, client: openai.OpenAI, kwargs: dict, param: str, words: str
    ) -> None:
        with pytest.raises(openai.BadRequestError) as info:
            client.completions.create(**{"model": NAME, "prompt": PROMPT, **kwargs})
        error = _error(info)
        assert error["param"] == param and words in error["message"]

    @pytest.mark.parametrize(
        ("item", "param", "words"),
        [
            ({"trait": "joy", "coefficient": 1.0}, "steering[0].trait", ": optimism. Run"),
            ({"vector": [1.0] * 5, "layer": 1, "coefficient": 1.0}, "steering[0].vector", "32"),
            ({"vector": [1.0] * 32, "layer": 7, "coefficient": 1.0}, "steering[0].layer", "0..2"),
            ({"vector": [1.0] * 32, "coefficient": 1.0}, "steering[0].layer", "required"),
            ({"trait": "optimism", "coefficient": 1e30}, "steering[0].coefficient", "1e+30"),
            (
                {"vector": [1e3] * 32, "layer": 1, "coefficient": 1e3},
                "steering[0].coefficient",
                "vector norm",
            ),
            ({"trait": "optimism"}, "steering[0].coefficient", "required"),
            ({"trait": "optimism", "coefficient": 1.0, "scale": 2}, "steering[0].scale", "'scale'"),
            ({"trait": "optimism", "vector": [1.0], "coefficient": 1.0}, "steering[0]", "either"),
            (
                {"trait": "optimism", "coefficient": 1.0, "positions": "prompt"},
                "steering[0].positions",
                "all, response",
            ),
            (
                {"trait": "optimism", "coefficient": 1.0, "layer": 1, "method": "rfm"},
                "steering[0].method",
                "mean_diff@0",
            ),
            (
                {"trait": "optimism", "coefficient": 1.0, "component": "mlp"},
                "steering[0].component",
                "residual",
            ),
        ],
    )
    def test_bad_steering(self, client: openai.OpenAI, item: dict, param: str, words: str) -> None:
        with pytest.raises(openai.BadRequestError) as info:
            _chat(client, extra_body={"steering": [item]})
        error = _error(info)
        assert error["param"] == param and words in error["message"], error

    def test_nan_coefficient(self, base_url: str) -> None:
        body = (
            '{"model": "tiny", "prompt": "Hi", "steering": '
            '[{"trait": "optimism", "coefficient": NaN}]}'
        )
        with httpx.Client() as http:
            reply = http.post(f"{base_url}/completions", content=body.encode())
        assert reply.status_code == 400
        error = reply.json()["error"]
        assert error["param"] == "steering[0].coefficient" and "nan is invalid" in error["message"]

    def test_steering_must_be_a_list(self, client: openai.OpenAI) -> None:
        with pytest.raises(openai.BadRequestError) as info:
            _chat(client, extra_body={"steering": {"trait": "optimism"}})
        assert "a list of items" in _error(info)["message"]

    def test_framework_errors_have_the_openai_shape(self, base_url: str) -> None:
        root = base_url.removesuffix("/v1")
        with httpx.Client() as http:
            bad_json = http.post(f"{base_url}/chat/completions", content=b"{not json")
            missing = http.get(f"{root}/v2/nothing")
            validation = http.get(f"{root}/typed/abc")
        assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        assert validation.status_code == 400  # FastAPI's 422, converted
        error = validation.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == "x"

    def test_server_failure_is_a_500_in_the_openai_shape(
        self, client: openai.OpenAI, app: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("out of memory")

        monkeypatch.setattr(app.state.server.engine, "run", broken)
        with pytest.raises(openai.InternalServerError) as info:
            _chat(client, max_tokens=2)
        error = _error(info)
        assert error["type"] == "server_error" and "out of memory" in error["message"]
        with pytest.raises(openai.APIError, match="out of memory"):  # an error event mid-stream
            list(_chat(client, max_tokens=2, stream=True))


@pytest.fixture(scope="module")
def plain_url(model: Any) -> Iterator[str]:
    """A server with no experiment and a tokenizer without a chat template."""
    with running(create_app(model, tiny_tokenizer(), model_name=NAME)) as url:
        yield url


class TestWithoutExperiment:
    def test_trait_needs_an_experiment(self, plain_url: str) -> None:
        client = openai.OpenAI(base_url=plain_url, api_key="x", max_retries=0)
        with pytest.raises(openai.BadRequestError) as info:
            client.completions.create(
                model=NAME,
                prompt=PROMPT,
                extra_body={"steering": [{"trait": "optimism", "coefficient": 1.0}]},
            )
        error = _error(info)
        assert error["code"] == "no_experiment" and "--experiment" in error["message"]

    def test_chat_needs_a_chat_template(self, plain_url: str) -> None:
        client = openai.OpenAI(base_url=plain_url, api_key="x", max_retries=0)
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Hi"}])
        assert "/v1/completions" in _error(info)["message"]
