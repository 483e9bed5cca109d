"""Shared helpers for the test suite."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import torch
from torch import nn

# Tiny test configs put token ids outside their small vocab into defaults; HF logs that.
logging.getLogger("transformers").setLevel(logging.ERROR)


def hook_counts(model: nn.Module) -> dict[str, tuple[int, int]]:
    """Number of forward hooks and pre-hooks on every module (to prove nothing leaked)."""
    return {
        name: (len(m._forward_hooks), len(m._forward_pre_hooks))
        for name, m in model.named_modules()
    }


def warm(model: nn.Module, batch: dict[str, torch.Tensor]) -> None:
    """Run once with output_hidden_states so HF installs its own (permanent) capture hooks."""
    with torch.no_grad():
        model(**batch, output_hidden_states=True)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads; on a busy 2-core machine they stall ~1 s a call.

    Opt in per module with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
