"""Capture activations at a position-DSL slice, for many prompts, in left-padded batches.

Example:
    >>> from trait_lab.models.loading import load_model
    >>> model, tok = load_model()  # doctest: +SKIP
    >>> prompts = ["Hi", "Tell me a joke"]
    >>> acts = capture_at_position(model, tok, prompts, layers=[6, 12])  # doctest: +SKIP
    >>> acts.shape  # doctest: +SKIP
    torch.Size([2, 2, 576])
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from trait_lab.hooks import MultiLayerCapture
from trait_lab.models import tokens
from trait_lab.models.architectures import input_device, resolve_layers
from trait_lab.prompts.formatting import (
    PromptLike,
    chat_spans,
    encode_text,
    format_prompt,
    uses_chat_template,
)
from trait_lab.prompts.offsets import Span, TurnSpan
from trait_lab.prompts.positions import Position

POOLS: tuple[str, ...] = ("mean", "first", "last", "none")


def capture_at_position(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[PromptLike],
    layers: int | Iterable[int] | None,
    position: str | Position = "prompt[-1]",
    pool: str = "mean",
    *,
    responses: Sequence[str] | None = None,
    pre_formatted: bool = False,
    system: str | None = None,
    component: str = "residual",
    batch_size: int = 8,
    use_chat_template: bool | None = None,
    progress: bool = False,
) -> torch.Tensor | list[torch.Tensor]:
    """Run prompts through the model and return activations at a position, pooled per prompt.

    Each prompt is formatted with :func:`~trait_lab.prompts.formatting.format_prompt` (chat template
    with the assistant header when the tokenizer has one) unless ``pre_formatted=True``; a response,
    when given, is tokenized on its own (no special tokens) and appended, so the prompt/response
    boundary is exact. Batches are left-padded with explicit ``position_ids``, so every sample gets
    the same activations as when run alone; the tokenizer is not modified.

    Args:
        model: a Hugging Face causal LM (any architecture in ``trait_lab.models.architectures``).
        tokenizer: its tokenizer.
        prompts: strings, or conversations (lists of ``{"role", "content"}`` messages).
        layers: a layer index (result ``[n, hidden]``), a list of them (``[n, n_layers,
            hidden]``, in the order given), or ``None`` for every layer.
        position: a position-DSL string such as ``"prompt[-1]"``, ``"prompt[-3:]"``,
            ``"response[:]"``, ``"all[:]"``, ``"system[:]"`` or ``"turn[1]:prompt[-1]"``.
        pool: ``"mean"``, ``"first"`` or ``"last"`` over the selected tokens, or ``"none"``
            for a list of per-prompt ``[n_positions(, n_layers), hidden]`` tensors.
        responses: one response string per prompt, appended after the formatted prompt
            (needed by ``response`` positions).
        pre_formatted: the prompts are final text: no chat template, no ``system``.
        system: a system message for every prompt (chat template only).
        component: what to capture (``"residual"``, ``"attn_contribution"``, ...).
        batch_size: prompts per forward pass.
        use_chat_template: ``None`` = when the tokenizer has one; see ``format_prompt``.
        progress: show a progress bar (tqdm) over the batches, counted in prompts.

    Returns:
        fp32 CPU activations: a tensor, or a list of tensors when ``pool="none"``.

    Raises:
        ValueError: a bad position, pool or argument combination, or a position that selects
            no token in some sample (the message names the sample).

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> from trait_lab.prompts.formatting import format_prompt
        >>> model = tiny_model()
        >>> class Tok:  # any tokenizer; here a fake one mapping characters to ids
        ...     bos_token = None
        ...     def __call__(self, text, add_special_tokens=True):
        ...         return {"input_ids": [3 + ord(c) % 100 for c in text]}
        >>> capture_at_position(model, Tok(), ["abc", "de"], 1, "prompt[-2:]").shape
        torch.Size([2, 32])
    """
    pos = Position.parse(position)
    prompts = _check_args(pos, pool, prompts, responses, pre_formatted, system, batch_size)
    if not pre_formatted:
        uses_chat_template(tokenizer, use_chat_template)  # fail early on use_chat_template=True
    layer_list = resolve_layers(model, layers)
    samples = _encode_all(
        tokenizer, prompts, pos, responses, pre_formatted, system, use_chat_template
    )
    pad_id = tokens.pad_token_id(tokenizer=tokenizer)
    outputs = _run_batches(
        model, samples, layer_list, component, pool, batch_size, pad_id, progress
    )
    if isinstance(layers, int):
        outputs = [out[..., 0, :] for out in outputs]
    if pool == "none":
        return outputs
    return torch.stack(outputs)


def _encode_all(
    tokenizer: Any,
    prompts: list[PromptLike],
    pos: Position,
    responses: Sequence[str] | None,
    pre_formatted: bool,
    system: str | None,
    use_chat_template: bool | None,
) -> list[_Sample]:
    """Tokenize every prompt (+ response) and resolve the position in each sample.

    Every position is resolved before the first forward pass, so a bad sample fails fast.
    """
    need_spans = pos.frame == "system" or pos.turn is not None
    samples = []
    for i, prompt in enumerate(prompts):
        response = responses[i] if responses is not None else None
        sample = _encode(
            tokenizer, prompt, response, need_spans, pre_formatted, system, use_chat_template, i
        )
        sample.rel = pos.resolve(
            0,
            sample.prompt_len,
            sample.response_len,
            system=sample.system,
            turns=sample.turns,
            sample=i,
        )
        samples.append(sample)
    return samples


def _run_batches(
    model: nn.Module,
    samples: list[_Sample],
    layer_list: list[int],
    component: str,
    pool: str,
    batch_size: int,
    pad_id: int,
    progress: bool,
) -> list[torch.Tensor]:
    """Forward the samples in left-padded batches under capture hooks; one output per sample.

    Runs in ``eval()`` under ``no_grad()`` and restores every module's train flag, removes the
    hooks and closes the progress bar on exit, also on exceptions.
    """
    outputs: list[torch.Tensor] = []
    states = {module: module.training for module in model.modules()}
    device = input_device(model)
    accepted = _forward_kwargs(model)
    bar = tqdm(total=len(samples), unit="prompt", desc="capture", disable=not progress)
    try:
        model.eval()
        cap = MultiLayerCapture(model, layer_list, component)
        with torch.no_grad(), cap:
            for first in range(0, len(samples), batch_size):
                chunk = samples[first : first + batch_size]
                ids, mask = tokens.left_pad([s.ids for s in chunk], pad_id)
                cap.clear()
                model(**_forward_inputs(ids, mask, device, accepted))
                acts = [cap.get(layer) for layer in layer_list]
                for row, sample in enumerate(chunk):
                    idx = sample.rel + (ids.shape[1] - len(sample.ids))  # left padding
                    picked = torch.stack([a[row, idx.to(a.device)] for a in acts], dim=1)
                    outputs.append(_pool(picked.to("cpu", torch.float32), pool))
                bar.update(len(chunk))
    finally:
        for module, training in states.items():
            module.training = training
        bar.close()
    return outputs


def _forward_inputs(
    ids: torch.Tensor, mask: torch.Tensor, device: torch.device, accepted: set[str]
) -> dict[str, Any]:
    """The forward call's keyword arguments for one left-padded batch.

    Besides ids and mask, whichever the model accepts of: explicit ``position_ids`` (so left
    padding does not shift positions), ``use_cache=False`` and ``logits_to_keep=1``.
    """
    kwargs: dict[str, Any] = {"input_ids": ids.to(device)}
    kwargs["attention_mask"] = mask.to(device)
    if "position_ids" in accepted:
        kwargs["position_ids"] = tokens.padded_positions(mask).to(device)
    if "use_cache" in accepted:
        kwargs["use_cache"] = False
    if "logits_to_keep" in accepted:
        kwargs["logits_to_keep"] = 1
    return kwargs


class _Sample:
    """One tokenized prompt (+ response) and, when the position needs them, its spans."""

    __slots__ = ("ids", "prompt_len", "rel", "response_len", "system", "turns")

    def __init__(
        self,
        ids: list[int],
        prompt_len: int,
        system: Span | None,
        turns: tuple[TurnSpan, ...] | None,
    ) -> None:
        self.ids = ids
        self.prompt_len = prompt_len
        self.response_len = len(ids) - prompt_len
        self.system = system
        self.turns = turns
        self.rel = torch.empty(0, dtype=torch.long)  # selected indices without padding


def _encode(
    tokenizer: Any,
    prompt: PromptLike,
    response: str | None,
    need_spans: bool,
    pre_formatted: bool,
    system: str | None,
    use_chat_template: bool | None,
    index: int,
) -> _Sample:
    sys_span: Span | None = None
    turns: tuple[TurnSpan, ...] | None = None
    if pre_formatted:
        if not isinstance(prompt, str):
            raise TypeError(
                f"prompts[{index}] is {type(prompt).__name__}; with pre_formatted=True every "
                "prompt must be the final text (a string)"
            )
        ids = encode_text(tokenizer, prompt, chat=False)
    elif need_spans:
        spans = chat_spans(tokenizer, prompt, system=system, use_chat_template=use_chat_template)
        ids, sys_span, turns = list(spans.input_ids), spans.system, spans.turns
    else:
        chat = uses_chat_template(tokenizer, use_chat_template)
        text = format_prompt(tokenizer, prompt, system=system, use_chat_template=use_chat_template)
        ids = encode_text(tokenizer, text, chat=chat)
    if not ids:
        raise ValueError(
            f"prompts[{index}] has no tokens ({prompt!r}); every prompt needs at least one"
        )
    prompt_len = len(ids)
    if response is not None:
        if not isinstance(response, str):
            raise TypeError(f"responses[{index}] must be a string, got {type(response).__name__}")
        ids = ids + list(tokenizer(response, add_special_tokens=False)["input_ids"])
    if turns:
        last = turns[-1]  # the appended response is the last turn's reply
        turns = (
            *turns[:-1],
            TurnSpan(last.start, last.prompt_end, last.end + len(ids) - prompt_len),
        )
    return _Sample(ids, prompt_len, sys_span, turns)


def _check_args(
    pos: Position,
    pool: str,
    prompts: Sequence[PromptLike],
    responses: Sequence[str] | None,
    pre_formatted: bool,
    system: str | None,
    batch_size: int,
) -> list[PromptLike]:
    if pool not in POOLS:
        raise ValueError(f"unknown pool {pool!r}; choose one of {', '.join(POOLS)}")
    if isinstance(prompts, str):
        raise TypeError("prompts must be a list of prompts, got a single string; wrap it: [prompt]")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("prompts is empty; pass at least one prompt")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if responses is not None:
        if isinstance(responses, str):
            raise TypeError("responses must be a list with one string per prompt, not a string")
        if len(responses) != len(prompts):
            raise ValueError(
                f"responses has {len(responses)} entries but prompts has {len(prompts)}; "
                "pass one response per prompt"
            )
    elif pos.frame == "response" and pos.turn is None:
        raise ValueError(
            f"position {str(pos)!r} reads the response, but no responses were given: pass "
            "responses=[...] (one string per prompt), or use a 'prompt' or 'all' position"
        )
    if pre_formatted:
        if system is not None:
            raise ValueError(
                "system= cannot be applied to pre_formatted prompts; put the system message "
                "into the text yourself, or pass unformatted prompts"
            )
        if pos.frame == "system":
            raise ValueError(
                f"position {str(pos)!r} needs the system message's span, which is unknown for "
                "pre_formatted prompts; pass unformatted prompts with system='...'"
            )
    return prompts


def _pool(picked: torch.Tensor, pool: str) -> torch.Tensor:
    if pool == "mean":
        return picked.mean(dim=0)
    if pool == "first":
        return picked[0]
    if pool == "last":
        return picked[-1]
    return picked


def _forward_kwargs(model: nn.Module) -> set[str]:
    try:
        return set(inspect.signature(model.forward).parameters)
    except (TypeError, ValueError):
        return set()
