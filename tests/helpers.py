"""Helpers shared by test modules (fixtures stay in conftest.py; plain functions live here)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

import trait_lab
import widgets as widgets_package

_NEW_PLOT = re.compile(r"Plotly\.newPlot\(\s*")


def figures_in_html(text: str) -> list[dict[str, Any]]:
    """Every figure a plotly-exported HTML page draws, as ``{"data": [...], "layout": {...}}``.

    Parses the JSON arguments of the page's ``Plotly.newPlot(div_id, data, layout, …)`` calls
    instead of matching substrings, so it does not depend on how a plotly release escapes text.
    """
    decoder = json.JSONDecoder()
    figures = []
    for match in _NEW_PLOT.finditer(text):
        args: list[Any] = []
        pos = match.end()
        for _ in range(3):  # div id, data, layout
            try:
                value, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError:
                break  # plotly.js's own source also mentions newPlot( with code arguments
            args.append(value)
            pos = end
            while pos < len(text) and text[pos] in ", \n\t":
                pos += 1
        if len(args) == 3 and isinstance(args[1], list) and isinstance(args[2], dict):
            figures.append({"data": args[1], "layout": args[2]})
    return figures


def html_title(text: str) -> str:
    """The title of the one figure in a plotly-exported HTML page."""
    (figure,) = figures_in_html(text)
    title = figure["layout"].get("title", "")
    return title.get("text", "") if isinstance(title, dict) else str(title)


# --- deprecations that reach a user through trait_lab's own calls -------------------------------

OUR_DIRS = tuple(
    str(Path(module.__file__).parent) + os.sep for module in (trait_lab, widgets_package)
)


def our_frame() -> str | None:
    """``file:line`` of the innermost trait_lab/widgets frame on the current stack, if any."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename.startswith(OUR_DIRS):
            return f"{frame.f_code.co_filename}:{frame.f_lineno}"
        frame = frame.f_back
    return None


class _DeprecationLog(logging.Handler):
    """Records deprecations transformers logs while a trait_lab frame is on the stack."""

    def __init__(self, found: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.found = found

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        where = our_frame() if "deprecat" in message.lower() else None
        if where:
            self.found.append(f"transformers log: {message} (from {where})")


@contextlib.contextmanager
def deprecations_from_our_calls() -> Iterator[list[str]]:
    """Collect every DeprecationWarning/FutureWarning (and transformers' logged deprecation
    notices) raised while a trait_lab or widgets frame is on the stack.

    ``warnings.warn`` attributes a library's warning to the library's caller (stacklevel), which
    for a model forward is torch, not us: so the stack is walked at the moment of the warning.
    """
    found: list[str] = []
    original = warnings.warn

    def warn(message: Any, category: Any = None, stacklevel: int = 1, *args: Any, **kw: Any):
        cls = category or (type(message) if isinstance(message, Warning) else UserWarning)
        if issubclass(cls, (DeprecationWarning, FutureWarning)):
            where = our_frame()
            if where:
                found.append(f"{cls.__name__}: {message} (from {where})")
        return original(message, category, stacklevel + 1, *args, **kw)

    handler = _DeprecationLog(found)
    library_logger = logging.getLogger("transformers")
    warnings.warn = warn  # type: ignore[assignment]
    library_logger.addHandler(handler)
    try:
        yield found
    finally:
        warnings.warn = original
        library_logger.removeHandler(handler)


# --- models, tokenizers and calibrations for tests -------------------------------------------


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


class FakeTokenizer:
    """Word-hash tokenizer, right-padded with id 0 (enough for calibrate)."""

    def __call__(self, texts, return_tensors="pt", padding=True):
        rows = [[3 + sum(map(ord, w)) % 120 for w in t.split()] for t in texts]
        width = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return {"input_ids": ids, "attention_mask": mask}


# A word-level tokenizer and a hand-made calibration for projection records on tiny models
# (trait_lab.testing.tiny_model); shared by the record, dynamics and widget tests.
WORDS = "the a cat dog sat on mat hello world how are you fine thanks tell me joke why be brief"
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
PROMPTS = ["hello how are you", "the cat sat on the mat"]
# Hand-made calibration: dims 3 and 7 in the top 5 of all 3 layers (clean "top5").
CALIBRATION = {
    "candidates": [3, 7, 11],
    "layers": [{"layer": i, "top_dims": [3, 7, 20 + i, 1, 5, 9]} for i in range(3)],
}


def make_tokenizer():
    """A word-level fast tokenizer over ``WORDS`` that prepends ``<s>`` (no chat template)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + WORDS.split())}
    raw = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.add_special_tokens(SPECIALS)
    raw.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=raw, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
        unk_token="<unk>",
    )  # fmt: skip
