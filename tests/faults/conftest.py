"""Fixtures shared by the fault tests: one tiny random model and tokenizer per test module."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import make_tokenizer
from trait_lab.testing import tiny_model


@pytest.fixture(scope="module")
def model() -> Any:
    """A tiny random Llama (``trait_lab.testing.tiny_model``), shared by a module's tests."""
    return tiny_model()


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    """The tiny word-level tokenizer of ``tests.helpers``."""
    return make_tokenizer()
