"""One meaning per steering mode: the hooks and ``SteeringConfig`` edit alike, as the formulas say.

The formulas are written out here in plain torch (independent of ``trait_lab.hooks.edits``);
the hooks are compared against them on a forward, and the generation loop against the hooks
under ``model.generate``.
"""

from __future__ import annotations

import pytest
import torch

from trait_lab.generation.configs import STEERING_MODES, SteeringConfig
from trait_lab.generation.generator import HookedGenerator
from trait_lab.hooks import (
    AblationHook,
    ActivationCappingHook,
    CaptureHook,
    SteeringHook,
)
from trait_lab.testing import tiny_batch, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")

HIDDEN = 32
VALUES = [0.0, 0.5, 1.0, 2.5, -1.5]

HOOKS = {
    "add": lambda m, v, c: SteeringHook(m, v, 1, c),
    "ablate": lambda m, v, c: AblationHook(m, v, 1, coefficient=c),
    "cap": lambda m, v, c: ActivationCappingHook(m, v, 1, threshold=c),
    "ceiling": lambda m, v, c: ActivationCappingHook(m, v, 1, ceiling=c),
}


def _formula(mode: str, h: torch.Tensor, v: torch.Tensor, c: float) -> torch.Tensor:
    if mode == "add":
        return h + c * v
    u = v / v.norm()
    p = (h * u).sum(-1, keepdim=True)
    if mode == "ablate":
        return h - c * p * u
    if mode == "cap":
        return h + (c - p).clamp(min=0) * u
    return h - (p - c).clamp(min=0) * u


def test_every_mode_has_a_hook() -> None:
    assert sorted(HOOKS) == sorted(STEERING_MODES)


@pytest.mark.parametrize("mode", STEERING_MODES)
@pytest.mark.parametrize("c", VALUES)
def test_hook_edits_by_the_formula(mode: str, c: float) -> None:
    model = tiny_model()
    batch = tiny_batch(2, 6, left_pad=(0, 2))
    v = torch.randn(HIDDEN, generator=torch.Generator().manual_seed(3)) * 3
    with torch.no_grad():
        with CaptureHook(model, 1) as plain:
            model(**batch)
        with HOOKS[mode](model, v, c), CaptureHook(model, 1) as edited:
            model(**batch)
    expected = _formula(mode, plain.get(), v, c)
    torch.testing.assert_close(edited.get(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", STEERING_MODES)
@pytest.mark.parametrize("c", VALUES)
def test_steering_config_generates_what_the_hook_generates(mode: str, c: float) -> None:
    model = tiny_model()
    batch = tiny_batch(2, 6, left_pad=(0, 2))
    v = torch.randn(HIDDEN, generator=torch.Generator().manual_seed(3)) * 3
    kwargs = {"max_new_tokens": 6, "do_sample": False, "pad_token_id": 0, "eos_token_id": None}
    with torch.no_grad(), HOOKS[mode](model, v, c):
        expected = model.generate(**batch, **kwargs)[:, 6:]
    results = HookedGenerator(model).generate(
        batch["input_ids"],
        batch["attention_mask"],
        6,
        steering=[SteeringConfig(v, 1, c, mode=mode, positions="all")],
        eos_token_id=[],
    )
    assert [r.token_ids for r in results] == expected.tolist()


def test_ablate_strength_zero_is_a_no_op_and_one_removes_the_direction() -> None:
    model = tiny_model()
    batch = tiny_batch(1, 5)
    v = torch.randn(HIDDEN)
    u = v / v.norm()
    with torch.no_grad():
        with CaptureHook(model, 1) as plain:
            model(**batch)
        with AblationHook(model, v, 1, coefficient=0.0), CaptureHook(model, 1) as zero:
            model(**batch)
        with AblationHook(model, v, 1), CaptureHook(model, 1) as whole:
            model(**batch)
    assert torch.equal(zero.get(), plain.get())
    assert (whole.get() @ u).abs().max() < 1e-5


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_ablation_strength_must_be_finite(bad: float) -> None:
    with pytest.raises(ValueError, match="coefficient must be finite"):
        AblationHook(tiny_model(), torch.ones(HIDDEN), 1, coefficient=bad)
