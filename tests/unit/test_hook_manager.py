"""HookManager against the model itself: what its hooks see, and that none outlives it.

References are HF's ``output_hidden_states`` of a hookless forward and a no-hook recompute of
the hooked module from the input the pre-hook saw.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from tests.helpers import hook_counts, warm
from trait_lab.hooks import HookManager, SteeringHook
from trait_lab.testing import tiny_batch, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")

HIDDEN = 32


def _logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def _hidden(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        return model(**batch, output_hidden_states=True).hidden_states


def _first(value: Any) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else value[0]


def test_hooks_see_the_block_input_and_output() -> None:
    model = tiny_model("llama")
    batch = tiny_batch(2, 5, left_pad=(0, 2))
    hidden = _hidden(model, batch)
    seen: dict[str, torch.Tensor] = {}

    def pre(module: nn.Module, args: tuple, kwargs: dict) -> None:
        seen["in"] = args[0] if args else kwargs["hidden_states"]

    with HookManager(model) as hooks:
        hooks.add_forward_pre_hook("model.layers.1", pre, with_kwargs=True)
        hooks.add_forward_hook("model.layers.1", lambda m, a, out: seen.update(out=_first(out)))
        assert len(hooks) == 2
        _logits(model, batch)
    assert len(hooks) == 0
    assert torch.equal(seen["in"], hidden[1])
    assert torch.equal(seen["out"], hidden[2])


def test_a_submodule_hook_sees_what_the_submodule_computes() -> None:
    model = tiny_model("qwen2")
    seen: dict[str, torch.Tensor] = {}
    with HookManager(model) as hooks:
        hooks.add_forward_pre_hook("model.layers.2.mlp:input", lambda m, a: seen.update(x=a[0]))
        hooks.add_forward_hook("model.layers.2.mlp", lambda m, a, out: seen.update(y=out))
        assert hooks.paths == ["model.layers.2.mlp", "model.layers.2.mlp"]
        _logits(model, tiny_batch(2, 4))
    with torch.no_grad():
        recomputed = model.get_submodule("model.layers.2.mlp")(seen["x"])
    torch.testing.assert_close(seen["y"], recomputed)
    assert seen["y"].abs().max() > 1e-3


def test_a_returned_output_replaces_it_until_exit() -> None:
    model = tiny_model("llama")
    batch = tiny_batch(1, 4)
    plain = _logits(model, batch)
    with HookManager(model) as hooks:
        hooks.add_forward_hook("model.layers.1.mlp", lambda m, a, out: out * 0)
        zeroed = _logits(model, batch)
    assert not torch.allclose(zeroed, plain)
    assert torch.equal(_logits(model, batch), plain)


@pytest.mark.parametrize("registered_first", ["steering", "manager"])
def test_managed_hooks_see_trait_lab_edits(registered_first: str) -> None:
    model = tiny_model("llama")
    batch = tiny_batch(2, 5)
    v = torch.randn(HIDDEN)
    expected = _hidden(model, batch)[2] + 2.0 * v
    seen: dict[str, torch.Tensor] = {}
    hooks = HookManager(model)
    steer = SteeringHook(model, v, 1, coefficient=2.0)

    def record(module: nn.Module, args: tuple, out: Any) -> None:
        seen["out"] = _first(out)

    if registered_first == "manager":
        hooks.add_forward_hook("model.layers.1", record)
    with hooks, steer:
        if registered_first == "steering":
            hooks.add_forward_hook("model.layers.1", record)
        _logits(model, batch)
    torch.testing.assert_close(seen["out"], expected)


def test_exception_in_the_body_removes_every_hook() -> None:
    model = tiny_model("llama")
    batch = tiny_batch(2, 4)
    warm(model, batch)  # let HF install its own permanent hooks first
    before, plain = hook_counts(model), _logits(model, batch)
    with pytest.raises(RuntimeError, match="boom"), HookManager(model) as hooks:
        hooks.add_forward_hook("model.layers.0", lambda m, a, out: _first(out) + 1.0)
        hooks.add_forward_pre_hook("model.layers.2.self_attn", lambda m, a: None)
        assert hook_counts(model) != before
        raise RuntimeError("boom")
    assert len(hooks) == 0
    assert hook_counts(model) == before
    assert torch.equal(_logits(model, batch), plain)


def test_exception_raised_by_a_hook_removes_every_hook() -> None:
    model = tiny_model("llama")
    batch = tiny_batch(1, 3)
    warm(model, batch)
    before = hook_counts(model)

    def explode(module: nn.Module, args: tuple, output: Any) -> None:
        raise RuntimeError("hook failed")

    with pytest.raises(RuntimeError, match="hook failed"), HookManager(model) as hooks:
        hooks.add_forward_hook("model.layers.1.mlp", explode)
        _logits(model, batch)
    assert hook_counts(model) == before


def test_handles_remove_one_hook_and_count() -> None:
    model = tiny_model("llama")
    hooks = HookManager(model)
    first = hooks.add_forward_hook("model.layers.0", lambda m, a, out: None)
    second = hooks.add_forward_pre_hook("model.layers.1", lambda m, a: None)
    assert len(hooks) == 2 and first.active
    first.remove()
    first.remove()  # idempotent
    assert len(hooks) == 1 and not first.active and second.active
    assert hooks.paths == ["model.layers.1"]
    assert len(model.get_submodule("model.layers.0")._forward_hooks) == 0
    hooks.remove_all()
    hooks.remove_all()
    assert len(hooks) == 0 and not second.active
    assert len(model.get_submodule("model.layers.1")._forward_pre_hooks) == 0


def test_a_manager_can_be_reused_after_exit() -> None:
    model = tiny_model("llama")
    hooks = HookManager(model)
    for _ in range(2):
        with hooks:
            hooks.add_forward_hook("model.layers.0", lambda m, a, out: None)
            assert len(hooks) == 1
        assert len(hooks) == 0


class TestBadInput:
    def test_unknown_path_lists_close_names(self) -> None:
        hooks = HookManager(tiny_model("llama"))
        with pytest.raises(ValueError, match=r"'model\.layers\.1\.mpl' not found.*model\.layers"):
            hooks.add_forward_hook("model.layers.1.mpl", lambda m, a, out: None)
        with pytest.raises(ValueError, match=r"'model\.layer\.0' not found"):
            hooks.add_forward_pre_hook("model.layer.0", lambda m, a: None)
        assert len(hooks) == 0

    def test_path_must_be_a_string(self) -> None:
        with pytest.raises(TypeError, match=r"path must be a module name.*get_hook_path"):
            bad: Any = 3
            HookManager(tiny_model()).add_forward_hook(bad, lambda m, a, out: None)

    def test_fn_must_be_callable(self) -> None:
        with pytest.raises(TypeError, match="fn must be callable"):
            bad: Any = None
            HookManager(tiny_model()).add_forward_hook("model.layers.0", bad)

    def test_input_suffix_points_to_the_pre_hook(self) -> None:
        with pytest.raises(ValueError, match=r"add_forward_pre_hook\('model\.layers\.0', fn\)"):
            HookManager(tiny_model()).add_forward_hook("model.layers.0:input", lambda *a: None)

    def test_unknown_suffix(self) -> None:
        with pytest.raises(ValueError, match="unknown suffix"):
            HookManager(tiny_model()).add_forward_hook("model.layers.0:output", lambda *a: None)

    def test_model_must_be_a_module(self) -> None:
        with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module, got str"):
            bad: Any = "model"
            HookManager(bad)
