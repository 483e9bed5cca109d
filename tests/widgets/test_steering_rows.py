"""The steering panel's rows: each streamed token arrives with its own cosine."""

from __future__ import annotations

import pytest
import torch

from trait_lab.generation import GenerationConfig, LocalBackend, ProjectionSpec
from trait_lab.testing import tiny_model, tiny_tokenizer
from widgets.steering.rows import Row, absorb

pytestmark = pytest.mark.usefixtures("one_thread")

LAYER = 1
PROMPT = "hello how are you"


def test_each_token_gets_the_cosine_of_a_no_cache_recompute() -> None:
    backend = LocalBackend(tiny_model(), tiny_tokenizer(), use_chat_template=False)
    v = torch.randn(32, generator=torch.Generator().manual_seed(3))
    config = GenerationConfig(max_new_tokens=5)
    rows = [Row(), Row()]
    stream = backend.stream([PROMPT, PROMPT], config, projection=ProjectionSpec({LAYER: v}))
    for event in stream:
        for i, row in enumerate(rows):
            absorb(row, event, i, LAYER)
            assert all(cosine is not None for _, cosine in row.pieces)  # no waiting for a score
    (result,) = backend.generate_with_capture([PROMPT], None, config)
    assert rows[0].ids == rows[1].ids == result.response_token_ids
    with torch.no_grad():
        ids = torch.tensor([result.prompt_token_ids + result.response_token_ids])
        out = backend.model(input_ids=ids, output_hidden_states=True)
    h = out.hidden_states[LAYER + 1][0, len(result.prompt_token_ids) :]
    expected = (h @ (v / v.norm())) / h.norm(dim=-1)
    torch.testing.assert_close(torch.tensor([c for _, c in rows[0].pieces]), expected)
