"""Issue 14, numerics: overflowing steering, numeric arguments, token ids and complex vectors.

Ground truths: ``model.generate`` under a plain ``SteeringHook`` (greedy tokens must match),
the same run with the equal Python float, and ``math.checks.tensor_arg``'s own refusal.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tests.faults.checks import clear_error
from trait_lab.generation import (
    GenerationConfig,
    HookedGenerator,
    ProjectionSpec,
    SamplingConfig,
    SteeringConfig,
)
from trait_lab.hooks import AblationHook, SteeringHook, active_edits
from trait_lab.math.checks import tensor_arg
from trait_lab.testing import tiny_batch, tiny_model

HIDDEN = 32


def _vector() -> torch.Tensor:
    return torch.randn(HIDDEN, generator=torch.Generator().manual_seed(1))


def _ids() -> torch.Tensor:
    return tiny_batch(1, 6)["input_ids"]


def _tokens(model: nn.Module, steering: list[SteeringConfig], **kwargs) -> list[int]:
    out = HookedGenerator(model).generate(
        _ids(), max_new_tokens=5, steering=steering, eos_token_id=[], **kwargs
    )
    return out[0].token_ids


# --- case 2: huge finite coefficients -----------------------------------------------------------


@pytest.mark.parametrize("mode", ["add", "ablate"])
def test_overflowing_coefficient_raises_naming_it_and_the_layer(mode: str) -> None:
    model = tiny_model()
    steering = [SteeringConfig(_vector(), 1, 1e30, mode=mode)]
    clear_error(
        RuntimeError,
        _tokens,
        model,
        steering,
        mentions=[
            "coefficient 1e+30",
            "'model.layers.1'",
            "activation norm",
            "smaller coefficient",
        ],
    )
    assert active_edits(model) == 0


def test_large_but_safe_coefficient_still_equals_model_generate() -> None:
    """No false alarm: 1e6 is odd but computable; tokens match a plain hook + model.generate."""
    model = tiny_model()
    ours = _tokens(model, [SteeringConfig(_vector(), 1, 1e6)])
    with SteeringHook(model, _vector(), 1, 1e6), torch.no_grad():
        reference = model.generate(_ids(), max_new_tokens=5, do_sample=False, eos_token_id=None)
    assert ours == reference[0, 6:].tolist()


def test_nan_logits_without_steering_raise() -> None:
    model = tiny_model()
    with torch.no_grad():
        model.lm_head.weight[5] = float("nan")
    clear_error(RuntimeError, _tokens, model, [], mentions=["nan/inf", "no steering", "float32"])


# --- case 5: numeric arguments ------------------------------------------------------------------


@pytest.mark.parametrize(
    "coefficient", [np.float32(3.0), np.int64(3), torch.tensor(3.0), np.array(3.0)]
)
def test_numpy_and_0d_coefficients_work_as_the_equal_float(coefficient: object) -> None:
    model = tiny_model()
    config = SteeringConfig(_vector(), 1, coefficient)
    assert type(config.coefficient) is float and config.coefficient == 3.0
    assert _tokens(model, [config]) == _tokens(model, [SteeringConfig(_vector(), 1, 3.0)])
    hook = SteeringHook(model, _vector(), 1, coefficient)
    assert type(hook.coefficient) is float and hook.coefficient == 3.0


def test_per_row_coefficients_as_a_tensor_or_numpy_scalars() -> None:
    for coefficient in (torch.tensor([0.0, 4.0]), [np.float32(0.0), np.float64(4.0)]):
        assert SteeringConfig(_vector(), 1, coefficient).coefficient == [0.0, 4.0]


@pytest.mark.parametrize(
    ("coefficient", "error", "shown"),
    [
        ("2.0", TypeError, "'2.0'"),
        (True, TypeError, "true"),
        (1 + 2j, TypeError, "(1+2j)"),
        (torch.ones(2, 2), TypeError, "shape (2, 2)"),
        (float("nan"), ValueError, "nan"),
        ([1.0, float("inf")], ValueError, "coefficient[1]"),
    ],
)
def test_bad_coefficients_are_refused(coefficient: object, error: type, shown: str) -> None:
    clear_error(error, SteeringConfig, _vector(), 1, coefficient, mentions=[shown, "coefficient"])
    if not isinstance(coefficient, list):  # SteeringHook takes one number
        clear_error(error, SteeringHook, tiny_model(), _vector(), 1, coefficient, mentions=[shown])


@pytest.mark.parametrize("owner", [SamplingConfig, GenerationConfig])
def test_top_k_and_seed_must_be_ints(owner: type) -> None:
    clear_error(ValueError, owner, top_k=2.5, mentions=["top_k=2.5", "int >= 1", "whole number"])
    clear_error(ValueError, owner, top_k=0, mentions=["top_k=0", "int >= 1"])
    clear_error(ValueError, owner, seed="abc", mentions=["seed='abc'", "whole number"])
    assert owner(top_k=np.int64(3), seed=np.int32(7)).seed == 7


@pytest.mark.parametrize("bad", [128, 500, -1])
def test_token_ids_outside_the_vocabulary_are_refused(bad: int) -> None:
    ids = _ids()
    ids[0, 2] = bad
    clear_error(
        ValueError,
        HookedGenerator(tiny_model()).generate,
        ids,
        mentions=[f"token id {bad}", "0..127", "tokenizer"],
    )


def test_pad_token_outside_the_vocabulary_and_float_ids_are_refused() -> None:
    gen = HookedGenerator(tiny_model())
    clear_error(ValueError, gen.generate, _ids(), pad_token_id=999, mentions=["999", "0..127"])
    clear_error(
        TypeError, gen.generate, _ids().float(), mentions=["torch.float32", "integer token ids"]
    )


# --- case 6: complex steering vectors -----------------------------------------------------------


COMPLEX = [
    torch.randn(HIDDEN, dtype=torch.complex64),
    np.ones(HIDDEN) * (1 + 1j),
    [1j] * HIDDEN,
]


@pytest.mark.parametrize("vector", COMPLEX)
def test_complex_steering_vectors_are_refused_like_the_math_functions(vector: object) -> None:
    model = tiny_model()
    same = clear_error(TypeError, tensor_arg, vector, "vector", (1,), "[d]")
    message = str(same).split("(")[0]  # "vector is complex "
    clear_error(TypeError, SteeringHook, model, vector, 1, mentions=[message, "real values"])
    clear_error(TypeError, AblationHook, model, vector, 1, mentions=["complex", "real values"])
    clear_error(
        TypeError,
        _tokens,
        model,
        [SteeringConfig(vector, 1, 1.0)],
        mentions=["steering[0].vector is complex", "real values"],
    )
    clear_error(
        TypeError,
        _tokens,
        model,
        [],
        projection=ProjectionSpec({1: vector}),
        mentions=["complex", "real values"],
    )
