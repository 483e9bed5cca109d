"""De-quantise a GGUF file with transformers into a Hugging Face folder, special tokens checked.

Used by :mod:`trait_lab.models.cache`, which decides when to convert and where the result lives.

Example:
    >>> convert_gguf(Path("SmolLM2.Q4_1.gguf"), Path("/tmp/out"))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import transformers
from gguf import GGUFReader
from transformers import AutoModelForCausalLM, AutoTokenizer

logger = logging.getLogger("trait_lab.models.loading")

__all__ = ["align_added_tokens", "align_special_tokens", "convert_gguf", "gguf_tokenizer_flags"]


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """De-quantise a GGUF file to fp32 with transformers and save model + tokenizer to out_dir."""

    try:
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32, local_files_only=True
        )
        tokenizer = AutoTokenizer.from_pretrained(
            gguf.parent, gguf_file=gguf.name, local_files_only=True
        )
    except (ValueError, KeyError, RuntimeError, OSError) as exc:
        raise ValueError(
            f"transformers {transformers.__version__} could not convert the GGUF file {gguf}: "
            f"{exc}. transformers reads GGUF only for some architectures and quantisations; "
            "convert it elsewhere and pass the Hugging Face folder, or use load_model() for "
            "the embedded default model."
        ) from exc
    # A GGUF-quantised model refuses save_pretrained; the weights are already plain fp32.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tokenizer.init_kwargs.pop("local_files_only", None)  # else saved into tokenizer_config
    align_special_tokens(tokenizer, model.config)
    align_added_tokens(tokenizer, gguf_tokenizer_flags(gguf))
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def align_special_tokens(tokenizer: Any, config: Any) -> dict[str, tuple[int | None, int]]:
    """Make the tokenizer's BOS/EOS/PAD tokens the ones the GGUF metadata names; return changes.

    The model config of a GGUF carries ``tokenizer.ggml.{bos,eos,padding}_token_id``; some
    transformers releases build the tokenizer with other special tokens (4.57 gives SmolLM2 EOS
    ``<|im_start|>`` and no PAD, while the metadata says ``<|im_end|>`` for both), so generation
    would stop on the wrong token and padding would use the wrong id. Returns
    ``{name: (old_id, new_id)}`` for every token it changed.

    Example:
        >>> align_special_tokens(tokenizer, model.config)  # doctest: +SKIP
        {'eos': (1, 2), 'pad': (None, 2)}
    """
    changed: dict[str, tuple[int | None, int]] = {}
    for name in ("bos", "eos", "pad"):
        wanted = getattr(config, f"{name}_token_id", None)
        if (
            not isinstance(wanted, int)
            or isinstance(wanted, bool)
            or not 0 <= wanted < len(tokenizer)
        ):
            continue
        current = getattr(tokenizer, f"{name}_token_id")
        if current != wanted:
            setattr(tokenizer, f"{name}_token", tokenizer.convert_ids_to_tokens(wanted))
            changed[name] = (current, wanted)
            logger.info(
                "GGUF conversion: %s token id %s -> %s (from the GGUF metadata)",
                name,
                current,
                wanted,
            )
    return changed


def gguf_tokenizer_flags(path: Path) -> dict[str, bool]:
    """The GGUF's ``tokenizer.ggml.add_bos_token`` / ``add_eos_token`` flags (those present).

    Example:
        >>> gguf_tokenizer_flags(Path("SmolLM2-135M-Instruct.Q4_1.gguf"))  # doctest: +SKIP
        {'add_bos_token': False}
    """
    reader = GGUFReader(path)
    flags: dict[str, bool] = {}
    for name in ("add_bos_token", "add_eos_token"):
        field = reader.fields.get(f"tokenizer.ggml.{name}")
        if field is not None and field.data:
            flags[name] = bool(field.parts[field.data[0]][0])
    return flags


def align_added_tokens(tokenizer: Any, flags: dict[str, bool]) -> dict[str, bool]:
    """Make the tokenizer add BOS/EOS to plain text exactly when the GGUF metadata says so.

    transformers 4.57 builds SmolLM2's tokenizer with ``add_bos_token=True`` although the GGUF
    says ``False``; then ``tokenizer(text)`` depends on the transformers release, and a chat
    prompt tokenized with special tokens starts with BOS twice. Returns the flags it changed;
    logs a warning when the tokenizer ignores the flag.

    Example:
        >>> align_added_tokens(tokenizer, {"add_bos_token": False})  # doctest: +SKIP
        {'add_bos_token': False}
    """
    changed: dict[str, bool] = {}
    for name, wanted in flags.items():
        if getattr(tokenizer, name, None) in (None, wanted):
            continue
        setattr(tokenizer, name, wanted)
        changed[name] = wanted
        logger.info("GGUF conversion: %s -> %s (from the GGUF metadata)", name, wanted)
    bos = tokenizer.bos_token_id
    if "add_bos_token" in flags and bos is not None:
        adds = tokenizer("a")["input_ids"][:1] == [bos]
        if adds != flags["add_bos_token"]:
            logger.warning(
                "the converted tokenizer %s BOS although the GGUF says add_bos_token=%s "
                "(transformers %s); tokenize chat-rendered text with add_special_tokens=False",
                "adds" if adds else "does not add",
                flags["add_bos_token"],
                transformers.__version__,
            )
    return changed
