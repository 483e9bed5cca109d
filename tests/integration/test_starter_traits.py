"""The starter traits on the default model: each loads cleanly and its vector separates pairs.

A mean-difference vector at the trait's best layer (measured once, hard-coded below) must
classify held-out pairs well; a broken or mislabelled dataset fails this. To stay fast, the
vector comes from 24 training pairs and the capture reads one layer.
"""

from __future__ import annotations

import pytest
import torch

from trait_lab.activations.capture import capture_at_position
from trait_lab.traits.dataset import list_traits, load_trait, validate_trait

pytestmark = pytest.mark.integration

# best layer on SmolLM2-135M-Instruct (docs/traits.md has the full measurement)
BEST_LAYER = {"formality": 15, "humour": 14, "optimism": 16, "refusal": 14, "sycophancy": 14}
N_TRAIN = 16


def test_every_starter_trait_has_a_layer() -> None:
    assert sorted(BEST_LAYER) == list_traits()


@pytest.mark.parametrize("name", sorted(BEST_LAYER))
def test_starter_trait_separates_held_out_pairs(default_model, name: str) -> None:
    model, tokenizer = default_model
    ds = load_trait(name)
    assert validate_trait(ds.path) == []
    assert len(ds.pairs) >= 60 and len(ds.steering_questions) >= 20
    train, val = ds.split(val_fraction=0.2, seed=0)
    train = train[:N_TRAIN]
    pairs = train + val
    pos_responses, neg_responses = ds.responses("positive", pairs), ds.responses("negative", pairs)
    acts = capture_at_position(
        model,
        tokenizer,
        ds.prompts("positive", pairs) + ds.prompts("negative", pairs),
        layers=BEST_LAYER[name],
        position=ds.recommended_position,
        pool="mean",
        responses=None if pos_responses is None else pos_responses + (neg_responses or []),
        batch_size=16,
    )
    assert isinstance(acts, torch.Tensor)
    pos, neg = acts[: len(pairs)], acts[len(pairs) :]
    n = len(train)
    direction = pos[:n].mean(0) - neg[:n].mean(0)
    unit = direction / direction.norm()
    threshold = ((pos[:n] @ unit).mean() + (neg[:n] @ unit).mean()) / 2
    correct = (pos[n:] @ unit > threshold).sum() + (neg[n:] @ unit <= threshold).sum()
    accuracy = correct.item() / (2 * len(val))
    assert accuracy >= 0.8, f"{name}: held-out accuracy {accuracy:.2f} at layer {BEST_LAYER[name]}"
