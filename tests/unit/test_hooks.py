"""Hooks against independent references: what each block reads, generate, and the formulas.

The residual stream comes from plain torch hooks (``tests.helpers.residual_stream``), not from
``output_hidden_states``: transformers 4.57 records that before forward hooks run.
"""

from __future__ import annotations

import pytest
import torch
import transformers
from packaging.version import Version
from torch import nn

from tests.helpers import hook_counts, residual_stream, warm
from trait_lab.hooks import (
    AblationHook,
    ActivationCappingHook,
    CaptureHook,
    MultiLayerCapture,
    MultiLayerProjection,
    MultiLayerSteering,
    PerPositionSteeringHook,
    PerSampleSteering,
    ProjectionHook,
    SteeringHook,
)
from trait_lab.testing import TINY_ARCHITECTURES, tiny_batch, tiny_model

HIDDEN = 32


def _stream(model: nn.Module, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """Entry ``L`` is what block ``L`` reads; entry ``L + 1`` is block ``L``'s hooked output."""
    with residual_stream(model) as stream, torch.no_grad():
        model(**batch)
    return stream


def _logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_coefficient_zero_is_bit_identical(arch: str) -> None:
    model = tiny_model(arch)
    batch = tiny_batch(2, 6, left_pad=(0, 2))
    before = _logits(model, batch)
    with SteeringHook(model, torch.randn(HIDDEN), 1, coefficient=0.0):
        during = _logits(model, batch)
    assert torch.equal(before, during)


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_steering_adds_exactly_at_its_layer(arch: str) -> None:
    model = tiny_model(arch)
    batch = tiny_batch(2, 5)
    v = torch.randn(HIDDEN)
    plain = _stream(model, batch)
    with SteeringHook(model, v, 1, coefficient=3.0):
        steered = _stream(model, batch)
    torch.testing.assert_close(steered[1], plain[1], rtol=0, atol=0)  # upstream untouched
    torch.testing.assert_close(steered[2], plain[2] + 3.0 * v)  # what block 2 reads
    assert not torch.allclose(steered[3], plain[3] + 3.0 * v)  # it propagates non-trivially


@pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
def test_output_hidden_states_show_hook_edits_on_transformers_5(arch: str) -> None:
    """The dispatch hook is prepended, so HF's recorders (forward hooks since transformers 5)
    see the edited stream; 4.57 records inside forward, before hooks (trait_lab.hooks.base)."""
    if Version(transformers.__version__).major < 5:
        pytest.skip("transformers 4 records hidden_states before forward hooks run")
    model = tiny_model(arch)
    with (
        SteeringHook(model, torch.randn(HIDDEN), 1, coefficient=3.0),
        residual_stream(model) as stream,
        torch.no_grad(),
    ):
        hidden = model(**tiny_batch(2, 5), output_hidden_states=True).hidden_states
    for layer in range(len(stream) - 1):  # HF's last entry is the final norm's output
        torch.testing.assert_close(hidden[layer], stream[layer], rtol=0, atol=0)


def test_steering_a_block_that_returns_a_tuple_edits_its_first_item() -> None:
    """Blocks of gemma2/3, gpt2 and gpt_neox return ``(hidden, ...)`` on transformers 4.57 and a
    tensor on 5, so the tuple path gets a model of its own."""

    class TupleBlock(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, str]:
            return self.linear(x), "extra"

    class Reader(nn.Module):
        def forward(self, pair: tuple[torch.Tensor, str]) -> torch.Tensor:
            assert pair[1] == "extra"
            return pair[0]

    model = nn.Sequential(TupleBlock(), Reader())
    v, x = torch.randn(4), torch.randn(2, 3, 4)
    with torch.no_grad():
        plain = model(x)
        with SteeringHook(model, v, "0", coefficient=2.0):
            steered = model(x)
    torch.testing.assert_close(steered, plain + 2.0 * v)


def test_coefficient_can_change_while_registered() -> None:
    model = tiny_model()
    batch = tiny_batch(1, 4)
    v = torch.randn(HIDDEN)
    with SteeringHook(model, v, 0, coefficient=0.0) as hook:
        a = _logits(model, batch)
        hook.coefficient = 5.0
        b = _logits(model, batch)
    with SteeringHook(model, v, 0, coefficient=5.0):
        c = _logits(model, batch)
    assert not torch.equal(a, b)
    assert torch.equal(b, c)


def test_capture_sees_edits_whatever_the_nesting_order() -> None:
    model = tiny_model()
    batch = tiny_batch(1, 4)
    v = torch.randn(HIDDEN)
    with CaptureHook(model, 1) as outer, SteeringHook(model, v, 1, 2.0):
        _logits(model, batch)
    with SteeringHook(model, v, 1, 2.0), CaptureHook(model, 1) as inner:
        _logits(model, batch)
    assert torch.equal(outer.get(), inner.get())


@pytest.mark.parametrize("component", ["residual", "attn_contribution", "mlp_contribution"])
def test_ablation_removes_the_direction(component: str) -> None:
    model = tiny_model("gemma2")
    direction = torch.randn(HIDDEN)
    batch = tiny_batch(2, 5)
    with (
        AblationHook(model, direction, 1, component=component),
        CaptureHook(model, 1, component) as cap,
    ):
        _logits(model, batch)
    unit = direction / direction.norm()
    assert (cap.get() @ unit).abs().max() < 1e-5
    assert cap.get().abs().max() > 1e-3


def test_ablation_formula_on_one_forward() -> None:
    model = tiny_model()
    r = torch.randn(HIDDEN)
    batch = tiny_batch(1, 5)
    with CaptureHook(model, 2) as before:
        _logits(model, batch)
    with AblationHook(model, r, 2), CaptureHook(model, 2) as after:
        _logits(model, batch)
    h = before.get()
    unit = r / r.norm()
    torch.testing.assert_close(after.get(), h - (h @ unit).unsqueeze(-1) * unit)


def test_capping_obeys_its_formula_floor_and_ceiling() -> None:
    model = tiny_model()
    v = torch.randn(HIDDEN)
    unit = v / v.norm()
    batch = tiny_batch(2, 6)
    with CaptureHook(model, 1) as plain:
        _logits(model, batch)
    h = plain.get()
    proj = h @ unit
    tau, kappa = float(proj.median()), float(proj.quantile(0.8))
    with ActivationCappingHook(model, v, 1, threshold=tau), CaptureHook(model, 1) as floored:
        _logits(model, batch)
    expected = h + torch.clamp(tau - proj, min=0).unsqueeze(-1) * unit
    torch.testing.assert_close(floored.get(), expected)
    assert (floored.get() @ unit).min() >= tau - 1e-5
    with ActivationCappingHook(model, v, 1, ceiling=kappa), CaptureHook(model, 1) as ceiled:
        _logits(model, batch)
    expected = h - torch.clamp(proj - kappa, min=0).unsqueeze(-1) * unit
    torch.testing.assert_close(ceiled.get(), expected)
    assert (ceiled.get() @ unit).max() <= kappa + 1e-5


def test_projection_equals_capture_then_project() -> None:
    model = tiny_model("qwen3")
    vecs = torch.randn(3, HIDDEN)
    batch = tiny_batch(2, 5, left_pad=(0, 1))
    with (
        MultiLayerCapture(model, [0, 2]) as cap,
        MultiLayerProjection(model, {0: vecs[0], 2: vecs}) as proj,
    ):
        _logits(model, batch)
    units = vecs / vecs.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(proj.get(0), cap.get(0) @ units[0])
    torch.testing.assert_close(proj.get(2), cap.get(2) @ units.T)
    torch.testing.assert_close(proj.get_norms(2), cap.get(2).norm(dim=-1))
    with ProjectionHook(model, vecs[1], 1) as single, CaptureHook(model, 1) as c1:
        _logits(model, batch)
    assert single.get().shape == (2, 5)
    torch.testing.assert_close(single.get(), c1.get() @ units[1])


def test_multi_layer_steering_equals_nested_hooks() -> None:
    model = tiny_model()
    batch = tiny_batch(2, 5)
    a, b = torch.randn(HIDDEN), torch.randn(HIDDEN)
    with MultiLayerSteering(model, [(0, a, 1.5), (2, b, -2.0)]):
        multi = _logits(model, batch)
    with SteeringHook(model, a, 0, 1.5), SteeringHook(model, b, 2, -2.0):
        nested = _logits(model, batch)
    assert torch.equal(multi, nested)


def test_per_sample_steering_matches_separate_runs() -> None:
    model = tiny_model()
    one = tiny_batch(1, 5)
    batch = {k: v.repeat(3, 1) for k, v in one.items()}
    v = torch.randn(HIDDEN)
    coefs = [0.0, 2.0, -4.0]
    configs = [(1, v, c, (i, i + 1)) for i, c in enumerate(coefs)]
    with PerSampleSteering(model, configs):
        together = _logits(model, batch)
    for i, c in enumerate(coefs):
        with SteeringHook(model, v, 1, c):
            alone = _logits(model, one)
        torch.testing.assert_close(together[i : i + 1], alone)


def _greedy(model: nn.Module, batch: dict[str, torch.Tensor], use_cache: bool) -> torch.Tensor:
    with torch.no_grad():
        return model.generate(
            **batch, max_new_tokens=6, do_sample=False, use_cache=use_cache, pad_token_id=0
        )


@pytest.mark.parametrize("arch", ["llama", "gemma3", "gpt2"])
def test_per_position_steering_is_the_same_with_and_without_kv_cache(arch: str) -> None:
    model = tiny_model(arch)
    batch = tiny_batch(2, 5, left_pad=(0, 2))
    v = torch.randn(HIDDEN) * 4
    plain = _greedy(model, batch, use_cache=True)
    with PerPositionSteeringHook(model, v, 1, 3.0, token_range=(4, 8)):
        cached = _greedy(model, batch, use_cache=True)
    with PerPositionSteeringHook(model, v, 1, 3.0, token_range=(4, 8)):
        recomputed = _greedy(model, batch, use_cache=False)
    assert torch.equal(cached, recomputed)
    assert not torch.equal(cached, plain)


def test_per_position_steering_touches_only_its_range() -> None:
    model = tiny_model()
    batch = tiny_batch(2, 7)
    v = torch.randn(HIDDEN)
    with CaptureHook(model, 1) as plain:
        _logits(model, batch)
    with (
        PerPositionSteeringHook(model, v, 1, 2.0, token_range=[(1, 3), (5, None)]),
        CaptureHook(model, 1) as steered,
    ):
        _logits(model, batch)
    delta = steered.get() - plain.get()
    touched = delta.abs().amax(dim=-1) > 1e-6
    assert touched.tolist() == [
        [False, True, True, False, False, False, False],
        [False, False, False, False, False, True, True],
    ]


def test_bf16_model_vector_math_in_fp32() -> None:
    model = tiny_model("llama", dtype=torch.bfloat16)
    batch = tiny_batch(1, 4)
    v = torch.randn(HIDDEN, dtype=torch.float64)
    with CaptureHook(model, 1) as plain:
        _logits(model, batch)
    with SteeringHook(model, v, 1, 0.3), CaptureHook(model, 1) as steered:
        _logits(model, batch)
    expected = (plain.get().float() + 0.3 * v.float()).to(torch.bfloat16)
    assert steered.get().dtype == torch.bfloat16
    assert torch.equal(steered.get(), expected)
    with ProjectionHook(model, v, 1) as proj:
        _logits(model, batch)
    assert proj.get().dtype == torch.float32


HOOK_FACTORIES = {
    "capture": lambda m: CaptureHook(m, 1),
    "multi_capture": lambda m: MultiLayerCapture(m, components=["residual", "block_input"]),
    "steer": lambda m: SteeringHook(m, torch.ones(HIDDEN), 1),
    "per_position": lambda m: PerPositionSteeringHook(m, torch.ones(HIDDEN), 1, token_range=(0, 2)),
    "per_sample": lambda m: PerSampleSteering(m, [(1, torch.ones(HIDDEN), 1.0, (0, 1))]),
    "multi_steer": lambda m: MultiLayerSteering(m, [(0, torch.ones(HIDDEN), 1.0)] * 2),
    "ablate": lambda m: AblationHook(m, torch.ones(HIDDEN), 1, component="mlp_contribution"),
    "cap": lambda m: ActivationCappingHook(m, torch.ones(HIDDEN), 1, threshold=0.0),
    "project": lambda m: ProjectionHook(m, torch.ones(HIDDEN), "model.layers.1:input"),
    "multi_project": lambda m: MultiLayerProjection(m, {0: torch.ones(HIDDEN)}),
}


@pytest.mark.parametrize("kind", sorted(HOOK_FACTORIES))
def test_no_hook_survives_an_exception(kind: str) -> None:
    model = tiny_model()
    batch = tiny_batch(2, 4)
    warm(model, batch)  # let HF install its own permanent hooks first
    before = hook_counts(model)
    with pytest.raises(RuntimeError, match="boom"), HOOK_FACTORIES[kind](model):
        _logits(model, batch)
        assert hook_counts(model) != before
        raise RuntimeError("boom")
    assert hook_counts(model) == before
    with HOOK_FACTORIES[kind](model):
        pass
    assert hook_counts(model) == before


def test_exception_raised_inside_the_forward_removes_hooks() -> None:
    model = tiny_model()
    before = hook_counts(model)
    hook = SteeringHook(model, torch.ones(HIDDEN), 1)
    hook.vector.cpu = torch.ones(HIDDEN + 1)  # simulate a wrong-width vector reaching forward
    with pytest.raises(ValueError, match="33 but the activations"), hook:
        _logits(model, tiny_batch(1, 3))
    assert hook_counts(model) == before


def test_registering_twice_is_refused() -> None:
    model = tiny_model()
    hook = SteeringHook(model, torch.ones(HIDDEN), 1)
    with hook, pytest.raises(RuntimeError, match="already registered"):
        hook.register()
    assert not hook.active


class TestBadInput:
    def test_two_dimensional_vector(self) -> None:
        with pytest.raises(ValueError, match=r"must be 1-D \[hidden\], got shape \(2, 32\)"):
            SteeringHook(tiny_model(), torch.ones(2, HIDDEN), 1)

    def test_wrong_width(self) -> None:
        with pytest.raises(ValueError, match="has length 31 but the hooked activations are 32"):
            SteeringHook(tiny_model(), torch.ones(31), 1)

    def test_wrong_width_for_a_linear_component(self) -> None:
        # k_proj of the tiny llama is 2 kv heads x 8 = 16 wide
        with pytest.raises(ValueError, match="activations are 16 wide"):
            SteeringHook(tiny_model(), torch.ones(HIDDEN), 1, component="k_proj")
        SteeringHook(tiny_model(), torch.ones(16), 1, component="k_proj")

    @pytest.mark.parametrize("factory", [AblationHook, ProjectionHook])
    def test_zero_direction(self, factory: type) -> None:
        with pytest.raises(ValueError, match="zero vector"):
            factory(tiny_model(), torch.zeros(HIDDEN), 1)

    def test_nan_vector(self) -> None:
        v = torch.ones(HIDDEN)
        v[3] = float("nan")
        with pytest.raises(ValueError, match="1 NaN/inf values"):
            SteeringHook(tiny_model(), v, 1)

    def test_non_finite_coefficient(self) -> None:
        with pytest.raises(ValueError, match="coefficient must be finite"):
            SteeringHook(tiny_model(), torch.ones(HIDDEN), 1, coefficient=float("inf"))

    def test_unknown_layer(self) -> None:
        with pytest.raises(ValueError, match="layer 3 is out of range"):
            CaptureHook(tiny_model(), 3)

    def test_unknown_component(self) -> None:
        with pytest.raises(ValueError, match="unknown component 'mlp'"):
            CaptureHook(tiny_model(), 1, "mlp")

    def test_unknown_module(self) -> None:
        with pytest.raises(ValueError, match=r"'model\.layers\.1\.mpl' not found"):
            CaptureHook(tiny_model(), "model.layers.1.mpl")

    def test_module_returning_a_dict(self) -> None:
        class DictOut(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.inner = nn.Linear(4, 4)

            def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
                return {"out": self.inner(x)}

        model = nn.Sequential(DictOut())
        with (
            pytest.raises(TypeError, match=r"returned dict.*child modules"),
            CaptureHook(model, "0"),
        ):
            model(torch.ones(1, 4))
        assert hook_counts(model) == {"": (0, 0), "0": (0, 0), "0.inner": (0, 0)}

    def test_capping_needs_a_bound(self) -> None:
        with pytest.raises(ValueError, match="needs threshold"):
            ActivationCappingHook(tiny_model(), torch.ones(HIDDEN), 1)
        with pytest.raises(ValueError, match="above ceiling"):
            ActivationCappingHook(tiny_model(), torch.ones(HIDDEN), 1, threshold=2, ceiling=1)

    def test_per_sample_batch_too_small(self) -> None:
        model = tiny_model()
        with (
            pytest.raises(ValueError, match="covers samples up to 3"),
            PerSampleSteering(model, [(1, torch.ones(HIDDEN), 1.0, (0, 3))]),
        ):
            _logits(model, tiny_batch(2, 3))

    def test_negative_token_range(self) -> None:
        with pytest.raises(ValueError, match="negative indices are not allowed"):
            PerPositionSteeringHook(tiny_model(), torch.ones(HIDDEN), 1, token_range=(-3, None))

    def test_nothing_captured(self) -> None:
        with pytest.raises(RuntimeError, match="nothing was captured"):
            CaptureHook(tiny_model(), 1).get()
