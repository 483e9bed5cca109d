"""Shared helpers for the test suite."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import torch
from torch import nn
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


# A word-level tokenizer and a hand-made calibration for projection records on tiny models
# (trait_lab.testing.tiny_model); shared by the record, dynamics and widget tests.
WORDS = "the a cat dog sat on mat hello world how are you fine thanks tell me joke why be brief"
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
PROMPTS = ["hello how are you", "the cat sat on the mat"]
# Hand-made calibration: dims 3 and 7 in the top 5 of all 3 layers ("Top 5, 3+ layers").
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
