"""Tiny random models of every registered architecture, for tests and offline examples.

They download nothing and build in milliseconds, so architecture handling can be tested
everywhere. The weights are random: never use them for a demo of behaviour.

:func:`tiny_kempnerforge_model` and :func:`tiny_token_dataset` stand in for KempnerForge's
``Transformer`` and its ``{"input_ids": ...}`` datasets (a plain torch model, no transformers).

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
import torch.nn.functional as F
import transformers as tf
from tokenizers import Tokenizer, decoders, models
from torch import nn
from torch.utils.data import Dataset
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


# --- a KempnerForge-shaped model: plain torch, layers in a ModuleDict, forward(tokens) ---------


class KFAttention(nn.Module):
    """Causal multi-head self-attention through SDPA (the weights are never materialised).

    Returns ``(output, aux)`` as some KempnerForge modules do: ``aux`` is a zero scalar standing
    in for an auxiliary loss, so hooks must take ``output[0]``.
    """

    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (
            nn.Linear(dim, dim, bias=False) for _ in range(4)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, s, d = x.shape
        q, k, v = (
            proj(x).view(b, s, self.n_heads, d // self.n_heads).transpose(1, 2)
            for proj in (self.q_proj, self.k_proj, self.v_proj)
        )
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(out.transpose(1, 2).reshape(b, s, d)), x.new_zeros(())


class KFMLP(nn.Module):
    """SwiGLU feed-forward: ``down_proj(silu(gate_proj(x)) * up_proj(x))``."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class KFBlock(nn.Module):
    """Pre-norm block: ``x + attention(attention_norm(x))``, then ``+ mlp(mlp_norm(x))``.

    Its children are exactly ``attention_norm, attention, mlp_norm, mlp``; the branch outputs
    go through dropout (functional, active in train mode only) before joining the residual.
    """

    def __init__(self, dim: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.dropout = dropout
        self.attention_norm = nn.RMSNorm(dim)
        self.attention = KFAttention(dim, n_heads)
        self.mlp_norm = nn.RMSNorm(dim)
        self.mlp = KFMLP(dim, 2 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn, _aux = self.attention(self.attention_norm(x))
        x = x + F.dropout(attn, self.dropout, self.training)
        return x + F.dropout(self.mlp(self.mlp_norm(x)), self.dropout, self.training)


class Transformer(nn.Module):
    """KempnerForge's ``Transformer`` in miniature: ``forward(tokens)`` gives logits.

    Modules: ``token_embedding``, ``layers`` (an ``nn.ModuleDict`` keyed ``"0"`` ...
    ``"n-1"``), ``norm`` and ``output_head``. ``tokens`` is a ``[batch, seq]`` integer tensor,
    taken positionally; there is no attention mask (the model is causal).
    """

    def __init__(self, vocab: int, dim: int, n_layers: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.vocab = vocab
        self.token_embedding = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleDict(
            {str(i): KFBlock(dim, n_heads, dropout) for i in range(n_layers)}
        )
        self.norm = nn.RMSNorm(dim)
        self.output_head = nn.Linear(dim, vocab, bias=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 2 or tokens.is_floating_point():
            raise ValueError(
                f"tokens must be a [batch, seq] integer tensor, got {tuple(tokens.shape)} "
                f"{tokens.dtype}; add a batch dim with tokens[None]"
            )
        h = self.token_embedding(tokens)
        for layer in self.layers.values():
            h = layer(h)
        return self.output_head(self.norm(h))


def tiny_kempnerforge_model(
    n_layers: int = 3,
    dim: int = 32,
    n_heads: int = 4,
    *,
    vocab: int = _VOCAB,
    dropout: float = 0.1,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> Transformer:
    """A random KempnerForge-shaped :class:`Transformer` (no transformers), in eval mode.

    Its token ids fit :func:`tiny_tokenizer` (vocab 128); ``dropout`` makes a forward in train
    mode visibly different from one in eval mode.

    Example:
        >>> model = tiny_kempnerforge_model()
        >>> model(torch.tensor([[5, 6, 7]])).shape
        torch.Size([1, 3, 128])
        >>> [n for n, _ in model.layers["0"].named_children()]
        ['attention_norm', 'attention', 'mlp_norm', 'mlp']
    """
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or n_layers < 1:
        raise ValueError(f"n_layers={n_layers!r}; pass an int >= 1")
    if not isinstance(n_heads, int) or n_heads < 1 or not isinstance(dim, int) or dim % n_heads:
        raise ValueError(
            f"dim={dim!r} must be a multiple of n_heads={n_heads!r} (both ints >= 1); "
            "e.g. dim=32, n_heads=4"
        )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout={dropout!r}; pass a probability in [0, 1)")
    torch.manual_seed(seed)
    model = Transformer(vocab, dim, n_layers, n_heads, dropout)
    return model.to(dtype).eval()


class TokenDataset(Dataset):
    """A map-style dataset of ``{"input_ids": LongTensor[seq]}`` samples, as KempnerForge's."""

    def __init__(self, items: list[torch.Tensor]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.items[index]}


def tiny_token_dataset(
    n: int = 8, seq: int | Sequence[int] = 6, *, vocab: int = _VOCAB, seed: int = 0
) -> TokenDataset:
    """``n`` random token sequences of length ``seq`` (or ``seq[i]`` for sample ``i``).

    Ids are drawn from ``3 .. vocab - 1`` (no pad, bos or eos).

    Example:
        >>> data = tiny_token_dataset(4, 5)
        >>> len(data), data[0]["input_ids"].shape, data[0]["input_ids"].dtype
        (4, torch.Size([5]), torch.int64)
    """
    lengths = [seq] * n if isinstance(seq, int) else list(seq)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0 or len(lengths) != n:
        raise ValueError(f"n={n!r} with seq={seq!r}; pass n >= 0 and one length or n lengths")
    if any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in lengths):
        raise ValueError(f"seq={seq!r}; every length must be an int >= 1")
    if vocab <= 3:
        raise ValueError(f"vocab={vocab!r}; pass vocab > 3 (ids 0-2 are pad, bos and eos)")
    gen = torch.Generator().manual_seed(seed)
    return TokenDataset([torch.randint(3, vocab, (k,), generator=gen) for k in lengths])
