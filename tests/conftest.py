"""Shared helpers for the test suite."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import torch
from transformers.utils import logging as hf_logging

from tests.helpers import deprecations_from_our_calls

# Tiny test configs put token ids outside their small vocab into defaults; HF logs that. Its
# console handler shows errors only; warnings are still created so that the deprecation check
# below sees transformers' logged deprecation notices.
hf_logging.get_logger("transformers")  # installs transformers' console handler now
logging.getLogger("transformers").setLevel(logging.WARNING)
for _handler in logging.getLogger("transformers").handlers:
    _handler.setLevel(logging.ERROR)


@pytest.fixture(autouse=True)
def no_deprecations_from_our_calls(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test when trait_lab's own calls trigger a DeprecationWarning/FutureWarning.

    A user sees those in their notebook (transformers' renamed cache keyword did exactly that).
    Tests of the detector itself opt out with ``@pytest.mark.deprecations_expected``.
    """
    if request.node.get_closest_marker("deprecations_expected"):
        yield
        return
    with deprecations_from_our_calls() as found:
        yield
    if found:
        pytest.fail("deprecated calls from trait_lab:\n" + "\n".join(found), pytrace=False)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads; on a busy 2-core machine they stall ~1 s a call.

    Opt in per module with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
