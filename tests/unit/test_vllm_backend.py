"""VLLMBackend behind the ``Backend`` protocol, and extraction's responses from any backend.

vLLM is never installed here: a fake ``vllm`` module (``LLM`` with ``generate`` and
``get_tokenizer``, ``SamplingParams`` recording its keywords) stands in for it. References:
``LocalBackend.encode`` and a hand-rendered chat template for the prompts vLLM receives, the
fake's own texts for ``responses.json``, ``capture_at_position`` on those texts for the
activations, ``LocalBackend.generate`` for a rerun without the fake.
"""

from __future__ import annotations

import json
import sys
import types
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import make_tokenizer
from tests.unit.test_distributed import spawn
from trait_lab import cli
from trait_lab.activations.capture import capture_at_position
from trait_lab.core.distributed import Ranks
from trait_lab.extraction.pipeline import ExtractionSettings, extract_trait
from trait_lab.extraction.units import SHARDS
from trait_lab.generation import Backend, GenerationConfig, LocalBackend, SteeringConfig
from trait_lab.generation.protocol import backend_identity
from trait_lab.generation.vllm import VLLMBackend
from trait_lab.prompts.formatting import format_prompt
from trait_lab.testing import tiny_model, tiny_tokenizer
from trait_lab.traits.dataset import load_trait

pytestmark = pytest.mark.usefixtures("one_thread")

TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} "
    "{% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
SETTINGS = ExtractionSettings(
    methods=("mean_diff",), layers=(0, 2), batch_size=4, generate_responses=True, max_new_tokens=4
)


class FakeParams:
    """``vllm.SamplingParams``: records its keywords."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


class FakeLLM:
    """``vllm.LLM``: records how it is built and what ``generate`` gets; answers in order."""

    tokenizer: Any = None
    made: ClassVar[list[FakeLLM]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.calls: list[tuple[list[Any], FakeParams]] = []
        self.answered = 0
        FakeLLM.made.append(self)

    def get_tokenizer(self) -> Any:
        return self.tokenizer

    def generate(self, prompts: list[Any], params: FakeParams) -> list[Any]:
        self.calls.append((list(prompts), params))
        texts = [f"fake answer {self.answered + i}" for i in range(len(prompts))]
        self.answered += len(prompts)
        return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=t)]) for t in texts]


@pytest.fixture()
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> type[FakeLLM]:
    """A ``vllm`` module whose engines use a word-level tokenizer with a chat template."""
    tokenizer = make_tokenizer()
    tokenizer.chat_template = TEMPLATE
    module = types.ModuleType("vllm")
    module.LLM = FakeLLM  # type: ignore[attr-defined]
    module.SamplingParams = FakeParams  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setattr(FakeLLM, "tokenizer", tokenizer)
    monkeypatch.setattr(FakeLLM, "made", [])
    return FakeLLM


def _ids(batch: dict[str, torch.Tensor], row: int) -> list[int]:
    """One row of a left-padded batch, without its padding."""
    return batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()


PROMPTS: list[Any] = [
    "hello how are you",
    [{"role": "user", "content": "tell me a joke"}],
    [{"role": "system", "content": "be brief"}, {"role": "user", "content": "why"}],
]


class TestBackend:
    def test_is_a_backend_and_built_as_asked(self, fake_vllm: type[FakeLLM]) -> None:
        backend = VLLMBackend("org/model", seed=3, dtype="bfloat16", gpu_memory_utilization=0.5)
        assert isinstance(backend, Backend)
        assert fake_vllm.made[-1].kwargs == {
            "model": "org/model",
            "seed": 3,
            "dtype": "bfloat16",
            "gpu_memory_utilization": 0.5,
        }
        assert backend_identity(backend) == {
            "backend": "vllm",
            "model": "org/model",
            "seed": 3,
            "use_chat_template": None,
            "dtype": "bfloat16",  # changes outputs; the memory fraction does not
        }

    @pytest.mark.parametrize("use_chat_template", [None, False])
    def test_prompts_reach_vllm_as_local_backend_encodes_them(
        self, fake_vllm: type[FakeLLM], use_chat_template: bool | None
    ) -> None:
        prompts = PROMPTS if use_chat_template is None else PROMPTS[:1]
        backend = VLLMBackend("org/model", use_chat_template=use_chat_template)
        backend.generate(prompts, GenerationConfig(max_new_tokens=2))
        given = fake_vllm.made[-1].calls[-1][0]
        tok = fake_vllm.tokenizer
        local = LocalBackend(tiny_model(), tok, use_chat_template=use_chat_template)
        batch = local.encode(prompts)
        assert given == [{"prompt_token_ids": _ids(batch, i)} for i in range(len(prompts))]
        texts = [format_prompt(tok, p, use_chat_template=use_chat_template) for p in prompts]
        assert [backend.format(p) for p in prompts] == texts
        if use_chat_template is None:  # the template by hand; it writes no <s> (id 1)
            assert texts[2] == "<|system|> be brief <|user|> why <|assistant|> "
            assert all(g["prompt_token_ids"][0] != 1 for g in given)
        else:  # plain text gets the tokenizer's <s>
            words = tok("hello how are you", add_special_tokens=False)["input_ids"]
            assert given[0]["prompt_token_ids"] == [1, *words] and len(words) == 4

    def test_system_keyword_as_local_backend(self, fake_vllm: type[FakeLLM]) -> None:
        backend = VLLMBackend("org/model")
        backend.generate(["why"], system="be brief")
        local = LocalBackend(tiny_model(), fake_vllm.tokenizer).encode(["why"], "be brief")
        assert fake_vllm.made[-1].calls[-1][0] == [{"prompt_token_ids": _ids(local, 0)}]

    def test_sampling_params_mapping(self, fake_vllm: type[FakeLLM]) -> None:
        backend = VLLMBackend("org/model")
        config = GenerationConfig(max_new_tokens=9, temperature=0.8, top_p=0.9, top_k=5, seed=7)
        assert backend.generate(["hello", "world"], config) == ["fake answer 0", "fake answer 1"]
        params = fake_vllm.made[-1].calls[-1][1].kwargs
        assert params == {"max_tokens": 9, "temperature": 0.8, "top_p": 0.9, "top_k": 5, "seed": 7}
        backend.generate(["hello"], GenerationConfig(max_new_tokens=3))  # greedy, no limits
        params = fake_vllm.made[-1].calls[-1][1].kwargs
        assert params == {
            "max_tokens": 3,
            "temperature": 0.0,
            "top_p": 1.0,
            "top_k": -1,
            "seed": None,
        }

    def test_a_local_backend_is_named_by_its_model_and_template(self) -> None:
        model, tok = tiny_model(), make_tokenizer()
        found = backend_identity(LocalBackend(model, tok, use_chat_template=False))
        assert found["backend"] == "trait_lab.generation.backends.LocalBackend"
        assert found["use_chat_template"] is False
        config = model.config
        assert (found["model"]["n_layers"], found["model"]["hidden"]) == (
            config.num_hidden_layers,
            config.hidden_size,
        )

    def test_steering_is_refused_before_vllm_runs(self, fake_vllm: type[FakeLLM]) -> None:
        backend = VLLMBackend("org/model")
        steer = [SteeringConfig(vector=torch.ones(4), layer=1)]
        with pytest.raises(ValueError, match=r"cannot steer \(got 1 steering configs\)"):
            backend.generate(["hello"], None, steer)
        assert fake_vllm.made[-1].calls == []

    def test_a_conversation_without_a_template_is_refused(self, fake_vllm: type[FakeLLM]) -> None:
        backend = VLLMBackend("org/model", use_chat_template=False)
        with pytest.raises(ValueError, match="needs a chat template"):
            backend.generate([PROMPTS[1]])


def _trait(folder: Path, n: int = 10) -> Path:
    """A system-prompt trait of ``n`` pairs (fewer than 20: a warning)."""
    folder.mkdir(parents=True)
    definition = {"positive": "cheerful", "negative": "gloomy"}
    (folder / "trait.json").write_text(
        json.dumps({"definition": definition, "kind": "system_prompt"})
    )
    pairs = [
        {
            "id": f"p{i}",
            "question": f"how are you {i}",
            "positive": "you are a cheerful optimist",
            "negative": "you are a gloomy pessimist",
        }
        for i in range(n)
    ]
    (folder / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    (folder / "steering.txt").write_text("how will tomorrow be\n")
    return folder


@pytest.fixture()
def tiny() -> tuple[Any, Any]:
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = TEMPLATE
    return tiny_model(), tokenizer


@pytest.mark.filterwarnings("ignore:(?s).*fewer than 20:UserWarning")
class TestExtraction:
    def test_responses_come_from_the_backend_and_are_not_reused_by_another(
        self, fake_vllm: type[FakeLLM], tiny: tuple[Any, Any], tmp_path: Path
    ) -> None:
        model, tokenizer = tiny
        fake_vllm.tokenizer = tokenizer  # the same weights' tokenizer, as vLLM would load
        trait, out = _trait(tmp_path / "trait"), tmp_path / "out"
        dataset = load_trait(trait)
        backend = VLLMBackend("org/model")
        summary = extract_trait(model, tokenizer, trait, out, SETTINGS, backend=backend)
        assert summary.computed == 2
        engine = fake_vllm.made[-1]
        # the fake answers in call order: the positive pole's batches, then the negative's
        assert [len(p) for p, _ in engine.calls] == [4, 4, 2, 4, 4, 2]
        expected = {
            "positive": [f"fake answer {i}" for i in range(10)],
            "negative": [f"fake answer {i}" for i in range(10, 20)],
        }
        responses = json.loads((out / "responses.json").read_text())
        assert responses == expected
        # each pole's conversation (its system prompt first) reached vLLM, template applied
        sent = [p["prompt_token_ids"] for call, _ in engine.calls for p in call]
        for i, pole in ((0, "cheerful optimist"), (10, "gloomy pessimist")):
            text = f"<|system|> you are a {pole} <|user|> how are you 0 <|assistant|> "
            assert sent[i] == tokenizer(text, add_special_tokens=False)["input_ids"]
        assert engine.calls[0][1].kwargs["max_tokens"] == SETTINGS.max_new_tokens
        stored = load_file(str(out / "activations" / "residual.safetensors"))
        for pole, key in (("positive", "pos"), ("negative", "neg")):
            reference = capture_at_position(
                model,
                tokenizer,
                dataset.prompts(pole),
                [0, 2],
                "response[:]",
                responses=expected[pole],
            )
            assert isinstance(reference, torch.Tensor)
            torch.testing.assert_close(stored[key].float(), reference.half().float())
        inputs = json.loads((out / "inputs.json").read_text())
        assert inputs["responses_by"]["backend"] == "vllm"

        again = extract_trait(model, tokenizer, trait, out, SETTINGS, backend=backend)
        assert again.computed == 0 and engine.answered == 20  # resumed: vLLM not called again

        with pytest.raises(ValueError, match="different inputs"):  # LocalBackend's would differ
            extract_trait(model, tokenizer, trait, out, SETTINGS)
        local = extract_trait(model, tokenizer, trait, out, SETTINGS, overwrite=True)
        assert local.computed == 2 and engine.answered == 20
        config = GenerationConfig(max_new_tokens=SETTINGS.max_new_tokens, batch_size=4)
        by_model = LocalBackend.from_model(model, tokenizer)
        regenerated = json.loads((out / "responses.json").read_text())
        assert regenerated == {p: by_model.generate(dataset.prompts(p), config) for p in expected}
        assert regenerated != expected
        assert "responses_by" not in json.loads((out / "inputs.json").read_text())
        assert not (out / SHARDS).exists()

    def test_a_backend_needs_generated_responses(
        self, fake_vllm: type[FakeLLM], tiny: tuple[Any, Any], tmp_path: Path
    ) -> None:
        plain = ExtractionSettings(methods=("mean_diff",), layers=(0,))
        with pytest.raises(ValueError, match=r"'vllm'.*only used with generate_responses=True"):
            extract_trait(*tiny, "refusal", tmp_path, plain, backend=VLLMBackend("org/m"))
        assert not any(tmp_path.iterdir())


class Echo:
    """A plain ``Backend`` (no vLLM): answers each conversation from its own words."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.calls = 0
        self.fail_on_call = fail_on_call

    def generate(
        self, prompts: Sequence[Any], config: Any = None, steering: Sequence[Any] = ()
    ) -> list[str]:
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise RuntimeError("killed")
        return [answer(conversation) for conversation in prompts]


def answer(conversation: list[dict[str, str]]) -> str:
    """What :class:`Echo` says to a trait's conversation (system prompt, then question)."""
    mood = "up" if "cheerful" in conversation[0]["content"] else "down"
    return f"{mood} {conversation[-1]['content']}"


def _echo_extraction(ranks: Ranks, trait: str, out: str) -> tuple[dict[str, list[str]], int]:
    """One rank of an extraction by :class:`Echo`: the responses, and the batches it made."""
    warnings.simplefilter("ignore", UserWarning)  # fewer than 20 pairs
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = TEMPLATE
    echo = Echo()
    extract_trait(tiny_model(), tokenizer, trait, out, SETTINGS, ranks=ranks, backend=echo)
    return dict(json.loads((Path(out) / "responses.json").read_text())), echo.calls


@pytest.mark.filterwarnings("ignore:(?s).*fewer than 20:UserWarning")
def test_any_backend_killed_mid_run_resumes_on_two_ranks(
    tiny: tuple[Any, Any], tmp_path: Path
) -> None:
    trait, out = _trait(tmp_path / "trait"), tmp_path / "out"
    dataset = load_trait(trait)
    dying = Echo(fail_on_call=3)  # the positive pole's last batch
    with pytest.raises(RuntimeError, match="killed"):
        extract_trait(*tiny, trait, out, SETTINGS, backend=dying)
    (units,) = (out / SHARDS).iterdir()
    assert sorted(p.name for p in (units / "responses").iterdir()) == [
        "positive-00000.json",
        "positive-00001.json",
    ]
    inputs = json.loads((out / "inputs.json").read_text())
    assert inputs["responses_by"] == {"backend": f"{__name__}.Echo"}
    torch.set_num_threads(1)
    results = spawn(_echo_extraction, str(trait), str(out))
    assert results[0][0] == results[1][0] == "ok", results
    expected = {p: [answer(c) for c in dataset.prompts(p)] for p in ("positive", "negative")}
    assert results[0][1][0] == results[1][1][0] == expected
    assert (results[0][1][1], results[1][1][1]) == (2, 2)  # the 4 missing batches, shared
    assert not (out / SHARDS).exists()


class TestCli:
    def test_flags_parse(self) -> None:
        argv = ["extract", "--trait", "t", "--generate-responses", "--backend", "vllm"]
        args = cli._parser().parse_args([*argv, "--vllm-model", "org/m"])
        assert (args.backend, args.vllm_model, args.generate_responses) == ("vllm", "org/m", True)
        args = cli._parser().parse_args(["extract", "--trait", "t"])
        assert (args.backend, args.vllm_model) == ("local", None)

    @pytest.mark.parametrize(
        ("extra", "vllm", "message"),
        [
            (["--vllm-model", "org/m"], None, "needs vLLM, which is not installed"),
            ([], "fake", "pass --vllm-model HuggingFaceTB/SmolLM2-135M-Instruct"),
        ],
    )
    def test_errors_are_one_line_before_the_model_loads(
        self,
        extra: list[str],
        vllm: str | None,
        message: str,
        fake_vllm: type[FakeLLM],
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        if vllm is None:
            monkeypatch.setitem(sys.modules, "vllm", None)  # vLLM absent
        monkeypatch.setattr(cli, "run_extraction", lambda *a, **k: pytest.fail("ran"))
        argv = ["extract", "--trait", "optimism", "--generate-responses", "--backend", "vllm"]
        assert cli.main([*argv, *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1

    def test_vllm_flags_without_their_partners_are_refused(
        self, fake_vllm: type[FakeLLM], capsys: pytest.CaptureFixture[str]
    ) -> None:
        base = ["extract", "--trait", "optimism"]
        assert cli.main([*base, "--backend", "vllm", "--vllm-model", "org/m"]) == 2
        assert "add --generate-responses" in capsys.readouterr().err
        assert cli.main([*base, "--vllm-model", "org/m"]) == 2
        assert "--vllm-model needs --backend vllm" in capsys.readouterr().err
        assert fake_vllm.made == []

    def test_the_backend_reaches_the_extraction(
        self, fake_vllm: type[FakeLLM], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        seen: dict[str, Any] = {}

        def run(*args: Any, **kwargs: Any) -> Any:
            seen.update(kwargs)
            raise ValueError("stop here")

        monkeypatch.setattr(cli, "run_extraction", run)
        argv = ["extract", "--trait", "optimism", "--generate-responses", "--backend", "vllm"]
        assert cli.main([*argv, "--vllm-model", "org/m"]) == 2
        assert isinstance(seen["backend"], VLLMBackend) and seen["generate_responses"]
        assert fake_vllm.made[-1].kwargs["model"] == "org/m"
