"""Shared helpers for the test suite."""

from __future__ import annotations

import logging

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
