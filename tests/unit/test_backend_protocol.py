"""One ``Backend`` protocol for LocalBackend and VLLMBackend; one config type per concept."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytest
import torch

from tests.helpers import make_tokenizer
from trait_lab.generation import (
    Backend,
    CaptureConfig,
    CaptureSpec,
    GenerationConfig,
    LocalBackend,
    SteeringConfig,
    SteeringSpec,
    VLLMBackend,
)
from trait_lab.testing import tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_seed_names_are_the_same_types() -> None:
    assert SteeringSpec is SteeringConfig
    assert CaptureSpec is CaptureConfig


def test_local_backend_is_a_backend() -> None:
    assert isinstance(LocalBackend(tiny_model(), make_tokenizer()), Backend)


def test_both_backends_take_the_same_generate_arguments() -> None:
    def head(cls: type) -> list[tuple[str, object]]:
        params = list(inspect.signature(cls.generate).parameters.values())[1:4]
        return [(p.name, p.default) for p in params]

    assert (
        head(LocalBackend)
        == head(VLLMBackend)
        == [
            ("prompts", inspect.Parameter.empty),
            ("config", None),
            ("steering", ()),
        ]
    )


class _FakeEngine:
    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict]] = []

    def generate(self, prompts: list[str], params: dict) -> list[SimpleNamespace]:
        self.calls.append((prompts, params))
        return [SimpleNamespace(outputs=[SimpleNamespace(text=f"<{p}>")]) for p in prompts]


def _fake_vllm_backend() -> tuple[VLLMBackend, _FakeEngine]:
    backend = VLLMBackend.__new__(VLLMBackend)  # no vLLM here: an engine that echoes
    engine = _FakeEngine()
    backend.engine = engine
    backend._vllm = SimpleNamespace(SamplingParams=lambda **kw: kw)
    return backend, engine


def test_vllm_backend_maps_the_config_and_the_seed_keywords() -> None:
    backend, engine = _fake_vllm_backend()
    assert isinstance(backend, Backend)
    assert backend.generate(["a", "b"], GenerationConfig(max_new_tokens=5)) == ["<a>", "<b>"]
    assert engine.calls[-1][1]["max_tokens"] == 5 and engine.calls[-1][1]["temperature"] == 0.0
    backend.generate(["a"], max_new_tokens=7, temperature=0.7)
    assert engine.calls[-1][1]["max_tokens"] == 7 and engine.calls[-1][1]["temperature"] == 0.7


def test_vllm_backend_refuses_steering_instead_of_ignoring_it() -> None:
    backend, engine = _fake_vllm_backend()
    steer = [SteeringConfig(vector=torch.ones(4), layer=1)]
    with pytest.raises(ValueError, match=r"VLLMBackend cannot steer .* Use LocalBackend"):
        backend.generate(["a"], None, steer)
    assert engine.calls == []


def test_vllm_backend_refuses_a_negative_temperature() -> None:
    backend, _ = _fake_vllm_backend()
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        backend.generate(["a"], temperature=-1.0)
