"""Helpers shared by test modules (fixtures stay in conftest.py; plain functions live here)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

import trait_lab
import widgets as widgets_package
from trait_lab.models.architectures import find_layers

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


def _silenced_by_its_library(
    message: Any, category: type[Warning], stacklevel: int, baseline: list[Any]
) -> bool:
    """Whether the filter Python applies to this warning is an "ignore" added since ``baseline``.

    A library that wraps its own call in ``warnings.catch_warnings()`` plus
    ``filterwarnings("ignore", ...)`` (plotly 6 does, building its default template) hides the
    warning from every user, so it is not ours to report. Filters active before the check began
    (Python's defaults, pytest's, the user's) excuse nothing, even an equal one added again: each
    ``filterwarnings`` call makes a new entry, so entries are compared by identity. Called from
    the replacement ``warnings.warn`` with the ``stacklevel`` it was given.
    """
    try:
        frame = sys._getframe(stacklevel + 1)
        module, lineno = frame.f_globals.get("__name__", "<string>"), frame.f_lineno
    except ValueError:  # the stack is shallower than stacklevel: warnings.warn says "sys"
        module, lineno = "sys", 1
    text = str(message)
    for rule in warnings.filters:  # the first match decides, as in warnings.warn_explicit
        action, msg, cat, mod, line = rule
        if (
            (msg is None or msg.match(text))
            and issubclass(category, cat)
            and (mod is None or mod.match(module))
            and (line == 0 or line == lineno)
        ):
            return action == "ignore" and not any(rule is old for old in baseline)
    return False


@contextlib.contextmanager
def deprecations_from_our_calls() -> Iterator[list[str]]:
    """Collect every DeprecationWarning/FutureWarning (and transformers' logged deprecation
    notices) raised while a trait_lab or widgets frame is on the stack.

    ``warnings.warn`` attributes a library's warning to the library's caller (stacklevel), which
    for a model forward is torch, not us: so the stack is walked at the moment of the warning.
    """
    found: list[str] = []
    original = warnings.warn
    baseline = list(warnings.filters)

    def warn(message: Any, category: Any = None, stacklevel: int = 1, *args: Any, **kw: Any):
        cls = category or (type(message) if isinstance(message, Warning) else UserWarning)
        if issubclass(cls, (DeprecationWarning, FutureWarning)):
            where = our_frame()
            if where and not _silenced_by_its_library(message, cls, stacklevel, baseline):
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


def dies_on_call(
    monkeypatch: Any, owner: Any, name: str, n: int, at_death: Callable[[], object] | None = None
) -> Callable[..., Any]:
    """Make ``owner.name`` raise KeyboardInterrupt (a kill, as the run sees it) on call ``n``.

    Works for functions of a module and methods of a class alike; returns the original so a
    test can put it back before resuming. ``at_death`` runs just before the raise (e.g. to
    snapshot the disk as a kill -9 would leave it).
    """
    real = getattr(owner, name)
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == n:
            if at_death is not None:
                at_death()
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return real


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


def edit_block_output(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[..., Any]:
    """A plain torch forward hook that replaces a block's hidden states ``h`` with ``fn(h)``.

    Blocks return a tensor on transformers 5 but a ``(hidden, ...)`` tuple on 4.57 for gemma2/3,
    gpt2 and gpt_neox; a test's own reference edit must work on both.
    """

    def hook(module: nn.Module, args: tuple, output: Any) -> Any:
        if isinstance(output, tuple):
            return (fn(output[0]), *output[1:])
        return fn(output)

    return hook


@contextlib.contextmanager
def residual_stream(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """The residual stream as the model's own blocks read it, indexed like ``hidden_states``.

    Filled by a forward pass inside the ``with``: entry ``L`` is what block ``L`` reads, the last
    entry the last block's output, so entry ``L + 1`` is block ``L``'s output after every hook on
    it. Plain torch hooks, removed on exit. ``output_hidden_states`` is no reference for a hooked
    forward: transformers 4.56-4.57 record it inside each block's ``forward``, before forward
    hooks run, so an edit hooked onto block ``L`` is missing from ``hidden_states[L + 1]`` there
    (the model itself, and every later entry, do see it).
    """
    _, blocks = find_layers(model)
    stream: list[torch.Tensor] = []

    def reads(i: int) -> Callable[..., None]:
        def pre_hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
            h = args[0] if args else kwargs["hidden_states"]
            del stream[i:]
            stream.append(h.detach().clone())

        return pre_hook

    def last(module: nn.Module, args: tuple, output: Any) -> None:
        h = output if isinstance(output, torch.Tensor) else output[0]
        stream.append(h.detach().clone())

    handles = [
        block.register_forward_pre_hook(reads(i), with_kwargs=True)
        for i, block in enumerate(blocks)
    ]
    handles.append(blocks[-1].register_forward_hook(last))
    try:
        yield stream
    finally:
        for handle in handles:
            handle.remove()


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
