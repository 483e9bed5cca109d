"""The suite's deprecation detector (tests.helpers.deprecations_from_our_calls) on its own.

It fails a test for every DeprecationWarning raised under a trait_lab frame, also one the
warning filters would hide; only a warning its own library silences on the spot is exempt.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from tests.helpers import deprecations_from_our_calls
from trait_lab.hooks.base import register_tensor_hook
from trait_lab.testing import tiny_batch, tiny_model


def _warn(text: str) -> None:
    """A library's DeprecationWarning, attributed to this test module (stacklevel 1), so the
    suite's ``error::DeprecationWarning:trait_lab`` filter leaves it a warning."""
    warnings.warn(text, DeprecationWarning, stacklevel=1)


def _under_a_hook(fn) -> list[str]:
    """Run ``fn`` inside one of our hook dispatchers (a trait_lab frame) during a forward."""
    model = tiny_model()
    handle = register_tensor_hook(model, "model.layers.0", lambda h: fn())
    try:
        with deprecations_from_our_calls() as found, torch.no_grad():
            model(**tiny_batch(1, 3))
    finally:
        handle.remove()
    return found


@pytest.mark.deprecations_expected
def test_a_deprecation_under_our_frame_is_reported() -> None:
    with pytest.warns(DeprecationWarning, match="old spelling"):
        found = _under_a_hook(lambda: _warn("old spelling"))
    assert len(found) == 1 and "old spelling" in found[0] and "trait_lab" in found[0]


@pytest.mark.deprecations_expected
def test_a_deprecation_its_library_silences_on_the_spot_is_not() -> None:
    def library_call() -> None:  # what plotly 6 does while building its default template
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            _warn("silenced by its library")

    assert _under_a_hook(library_call) == []


@pytest.mark.deprecations_expected
def test_filters_active_before_the_check_excuse_nothing() -> None:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # like Python's default
        found = _under_a_hook(lambda: _warn("hidden by a filter"))
    assert len(found) == 1 and "hidden by a filter" in found[0]
