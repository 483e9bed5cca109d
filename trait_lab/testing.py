"""Tiny random models of every registered architecture, for tests and offline examples.

They download nothing and build in milliseconds, so architecture handling can be tested
everywhere. The weights are random: never use them for a demo of behaviour.

Example:
    >>> from trait_lab.testing import tiny_model
    >>> model = tiny_model("llama")
    >>> model.config.num_hidden_layers
    3
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import torch
import transformers as tf
from tokenizers import Tokenizer, decoders, models
from transformers import AutoModelForCausalLM

from trait_lab.dynamics.records import build_record

TINY_ARCHITECTURES: tuple[str, ...] = (
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma2",
    "gemma3",
    "gpt2",
    "gpt_neox",
    "phi3",
    "olmo2",
)

_VOCAB = 128
_HIDDEN = 32
_LAYERS = 3


def _config(arch: str) -> Any:

    common: dict[str, Any] = dict(
        vocab_size=_VOCAB,
        hidden_size=_HIDDEN,
        intermediate_size=64,
        num_hidden_layers=_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    if arch == "llama":
        return tf.LlamaConfig(**common)
    if arch == "mistral":
        return tf.MistralConfig(**common)
    if arch == "qwen2":
        return tf.Qwen2Config(**common)
    if arch == "qwen3":
        return tf.Qwen3Config(**common, head_dim=8)
    if arch == "gemma2":
        return tf.Gemma2Config(**common, head_dim=8)
    if arch == "gemma3":
        return tf.Gemma3TextConfig(**common, head_dim=8)
    if arch == "phi3":
        return tf.Phi3Config(**common)
    if arch == "olmo2":
        return tf.Olmo2Config(**common)
    if arch == "gpt2":
        return tf.GPT2Config(
            vocab_size=_VOCAB,
            n_embd=_HIDDEN,
            n_layer=_LAYERS,
            n_head=4,
            n_positions=256,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        )
    if arch == "gpt_neox":
        return tf.GPTNeoXConfig(
            vocab_size=_VOCAB,
            hidden_size=_HIDDEN,
            intermediate_size=64,
            num_hidden_layers=_LAYERS,
            num_attention_heads=4,
            max_position_embeddings=256,
            bos_token_id=1,
            eos_token_id=2,
            pad_token_id=0,
        )
    raise ValueError(
        f"unknown tiny architecture {arch!r}; choose one of {', '.join(TINY_ARCHITECTURES)}"
    )


def tiny_model(
    arch: str = "llama", seed: int = 0, dtype: torch.dtype = torch.float32
) -> torch.nn.Module:
    """Build a 3-layer, 32-wide random causal LM of the given architecture, in eval mode.

    Example:
        >>> tiny_model("gpt2").config.model_type
        'gpt2'
    """

    config = _config(arch)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    # Random init leaves norms at 1 and small weights; scale so every path carries signal.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name or name.endswith("ln_1.weight") or "ln_" in name:
                param.add_(torch.randn_like(param) * 0.1)
    return model.eval()


def tiny_tokenizer() -> Any:
    """A character-level fast tokenizer whose ids fit :func:`tiny_model` (vocab 128), no template.

    Ids: ``<pad>`` 0, ``<s>`` 1, ``</s>`` 2, ``<unk>`` 3, the digits ``0``–``9`` 4–13, then
    letters, space and punctuation; numbers are spelled digit by digit (like SmolLM2 or Llama 2).

    Example:
        >>> tok = tiny_tokenizer()
        >>> tok("42")["input_ids"], tok.decode([8, 6])
        ([8, 6], '42')
    """
    chars = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ .,:;!?'\"()-\n"
    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    vocab.update({c: 4 + i for i, c in enumerate(chars)})
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.decoder = decoders.Fuse()
    return tf.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )


def tiny_batch(
    batch: int = 2, seq: int = 7, left_pad: tuple[int, ...] = (), seed: int = 0
) -> dict[str, torch.Tensor]:
    """Random token ids and an attention mask, left-padded by ``left_pad[i]`` for sample ``i``.

    Example:
        >>> tiny_batch(2, 5, left_pad=(0, 2))["attention_mask"].tolist()
        [[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]]
    """
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, _VOCAB, (batch, seq), generator=gen)
    mask = torch.ones(batch, seq, dtype=torch.long)
    for i, pad in enumerate(left_pad):
        mask[i, :pad] = 0
        ids[i, :pad] = 0
    return {"input_ids": ids, "attention_mask": mask}


def tiny_record(layers: Sequence[int] = (4, 8), hidden: int = 8, seed: int = 0) -> Any:
    """A 3-token projection record (2 prompt tokens, 1 response token) of trait ``"t"`` on
    random activations, for examples of the record views; dim 0 is its massive-dim candidate.

    Example:
        >>> rec = tiny_record()
        >>> rec.tokens, rec.boundary, sorted(rec.projections["t"])
        (['w1', 'w2', 'w3'], 2, [4, 8])
    """

    gen = torch.Generator().manual_seed(seed)
    tok = SimpleNamespace(convert_ids_to_tokens=lambda ids: [f"w{i}" for i in ids])
    acts = {layer: torch.randn(3, hidden, generator=gen) for layer in layers}
    members = {layer: [(1.0, torch.ones(hidden))] for layer in layers}
    calibration = {"candidates": [0], "layers": []}
    return build_record("hi", "yo", [1, 2], [3], tok, acts, {"t": members}, calibration)
