"""ActivationStore's lifetime: a store dropped while enabled is collected, unhooks and warns.

The KempnerForge page promises hooks are removed from ``__del__``; that needs the hooks to hold
the store weakly, or the model (alive) keeps the store (enabled) alive forever.
"""

from __future__ import annotations

import gc
import warnings
import weakref

import pytest
import torch
from torch import nn

from tests.helpers import hook_counts, warm
from trait_lab.activations import ActivationStore
from trait_lab.testing import tiny_batch, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")

LAYERS = ["model.layers.0", "model.layers.2.mlp"]


def _logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


def test_dropped_enabled_store_removes_its_hooks_and_warns() -> None:
    model = tiny_model("llama")
    batch = tiny_batch(2, 4)
    warm(model, batch)  # let HF install its own permanent hooks first
    before, plain = hook_counts(model), _logits(model, batch)
    store = ActivationStore(model, LAYERS).enable()
    _logits(model, batch)
    assert store.get(LAYERS[1]) is not None
    assert hook_counts(model) != before
    ref = weakref.ref(store)
    with pytest.warns(UserWarning, match=r"capturing \['model\.layers\.0', .*store\.disable\(\)"):
        del store
        gc.collect()
    assert ref() is None
    assert hook_counts(model) == before
    assert not model.get_submodule("model.layers.2.mlp")._forward_hooks
    assert torch.equal(_logits(model, batch), plain)


def test_plain_module_is_left_with_no_hooks() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    store = ActivationStore(model, ["0", "2:input"]).enable()
    model(torch.ones(1, 4))
    with pytest.warns(UserWarning, match=r"\['0', '2:input'\].*garbage-collected while enabled"):
        del store
        gc.collect()
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert model(torch.ones(1, 4)).shape == (1, 2)


def test_the_store_is_freed_without_a_gc_pass() -> None:
    model = tiny_model("llama")
    store = ActivationStore(model, LAYERS).enable()
    ref = weakref.ref(store)
    with pytest.warns(UserWarning, match="disable"):
        del store  # no reference cycle through the model: refcounting frees it at once
    assert ref() is None


def test_disabled_or_never_enabled_stores_collect_silently() -> None:
    model = tiny_model("llama")
    batch = tiny_batch(1, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        disabled = ActivationStore(model, LAYERS).enable()
        _logits(model, batch)
        disabled.disable()
        never = ActivationStore(model, LAYERS)
        with ActivationStore(model, LAYERS) as exited:
            _logits(model, batch)
        del disabled, never, exited
        gc.collect()
    assert [str(w.message) for w in caught if "ActivationStore" in str(w.message)] == []


def test_captures_keep_working_while_the_store_lives() -> None:
    model = tiny_model("llama")
    batch = tiny_batch(2, 5)
    store = ActivationStore(model, ["model.layers.1"]).enable()
    try:
        gc.collect()
        with torch.no_grad():
            hidden = model(**batch, output_hidden_states=True).hidden_states
        assert torch.equal(store.get("model.layers.1"), hidden[2])
    finally:
        store.disable()
