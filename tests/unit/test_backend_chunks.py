"""LocalBackend splits prompts into batch_size chunks: per-prompt steering must follow them."""

from __future__ import annotations

import pytest
import torch

from tests.helpers import make_tokenizer
from trait_lab.generation.backends import GenerationConfig, LocalBackend, SteeringSpec
from trait_lab.testing import tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def backend() -> LocalBackend:
    return LocalBackend(tiny_model(), make_tokenizer(), use_chat_template=False)


def _ids(backend, prompts, config, steering) -> list[list[int]]:
    # random weights emit ids outside the small vocab (they decode to ""): compare token ids
    results = backend.generate_with_capture(prompts, None, config, steering)
    return [r.response_token_ids for r in results]


def test_per_prompt_coefficients_and_rows_across_chunks(backend) -> None:
    prompts = ["hello how are you"] * 5
    v = torch.randn(32, generator=torch.Generator().manual_seed(0)) * 4
    coefs = [0.0, 2.0, -2.0, 0.0, 5.0]
    chunked = GenerationConfig(max_new_tokens=6, batch_size=2)
    one = GenerationConfig(max_new_tokens=6)
    got = _ids(backend, prompts, chunked, [SteeringSpec(layer=1, vector=v, coefficient=coefs)])
    for prompt, c, text in zip(prompts, coefs, got, strict=True):
        assert (
            text
            == _ids(backend, [prompt], one, [SteeringSpec(layer=1, vector=v, coefficient=c)])[0]
        )
    only = _ids(
        backend, prompts, chunked, [SteeringSpec(layer=1, vector=v, coefficient=5.0, rows=[4, 1])]
    )
    assert only[4] == got[4] and only[0] == got[0]
    assert (
        only[1]
        == _ids(backend, prompts[:1], one, [SteeringSpec(layer=1, vector=v, coefficient=5.0)])[0]
    )
    assert len({tuple(t) for t in got}) > 1


def test_wrong_number_of_coefficients_names_the_prompts(backend) -> None:
    with pytest.raises(ValueError, match=r"coefficient has 3 values for 5 prompts"):
        backend.generate(
            ["hello"] * 5,
            GenerationConfig(batch_size=2),
            [SteeringSpec(layer=1, vector=torch.ones(32), coefficient=[1.0, 2.0, 3.0])],
        )
    with pytest.raises(ValueError, match=r"rows \[7\] are outside the prompts \(0..4\)"):
        backend.generate(
            ["hello"] * 5,
            GenerationConfig(batch_size=2),
            [SteeringSpec(layer=1, vector=torch.ones(32), coefficient=1.0, rows=[7])],
        )
