"""HookedGenerator: KV-cached generation with capture, steering and projection together.

One loop serves ``stream`` (an event per token with that token's own captures, cancellable)
and ``generate`` (which collects the stream's events into per-row results). It matches
``model.generate`` token for token when greedy, on left-padded batches; each row stops at its
own EOS; steering is applied from the position that predicts the first generated token on (and
optionally to the prompt); captured activations and projection scores line up 1:1 with tokens:
token ``k``'s entry is the hidden state at token ``k``'s own position, exactly what a no-cache
forward over the final sequence gives there. A model spread over devices (``device_map``) works
the same: ids go to the input embedding's device (``architectures.input_device``), steering
vectors to each block's, captures and projection scores come back on the CPU.

Example:
    >>> import torch
    >>> from trait_lab.testing import tiny_model, tiny_batch
    >>> gen = HookedGenerator(tiny_model())
    >>> batch = tiny_batch(2, 5, left_pad=(0, 2))
    >>> out = gen.generate(batch["input_ids"], batch["attention_mask"], max_new_tokens=4,
    ...                    capture=CaptureConfig(layers=[1]))
    >>> len(out[0].token_ids) == out[0].activations[1]["residual"].shape[0]
    True
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace

import torch
from torch import nn

from trait_lab.generation.compiled import CompiledDecoder, CompiledSession
from trait_lab.generation.configs import (
    CaptureConfig,
    GenerationResult,
    ProjectionSpec,
    SamplingConfig,
    SteeringConfig,
    StreamEvent,
)
from trait_lab.generation.prompt_cache import Prefix, PromptCache, join_fields, reusable, tensor_key
from trait_lab.generation.step_hooks import StepHooks
from trait_lab.models import tokens
from trait_lab.models.architectures import COMPONENTS, context_limit, input_device, n_layers
from trait_lab.models.kv_cache import cache_keyword, output_cache

__all__ = [
    "COMPONENTS",
    "CaptureConfig",
    "GenerationResult",
    "HookedGenerator",
    "ProjectionSpec",
    "SamplingConfig",
    "SteeringConfig",
    "StreamEvent",
]


def _eos_ids(model: nn.Module, eos_token_id: int | Sequence[int] | None) -> list[int]:
    if eos_token_id is None:
        config = getattr(model, "generation_config", None) or getattr(model, "config", None)
        eos_token_id = getattr(config, "eos_token_id", None)
    if eos_token_id is None:
        return []
    return [int(eos_token_id)] if isinstance(eos_token_id, int) else [int(e) for e in eos_token_id]


def _check_max_new_tokens(max_new_tokens: int) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise TypeError(f"max_new_tokens must be an int, got {max_new_tokens!r}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")


def _check_context(model: nn.Module, mask: torch.Tensor, max_new_tokens: int) -> None:
    """Refuse before any forward a prompt that, with ``max_new_tokens``, overruns the context."""
    limit = context_limit(model)
    if limit is None:
        return
    lengths = mask.sum(dim=1)
    prompt = int(lengths.max())
    if prompt + max_new_tokens > limit:
        row = int(lengths.argmax())
        which = f" (row {row}, the longest)" if mask.shape[0] > 1 else ""
        raise ValueError(
            f"the prompt{which} is {prompt} tokens and max_new_tokens is {max_new_tokens}: "
            f"{prompt + max_new_tokens} positions, but the model's context is {limit} "
            "(config.max_position_embeddings); beyond it the output is garbage. Shorten the "
            f"prompt to at most {limit - max_new_tokens} tokens or lower max_new_tokens."
        )


def _vocab_size(model: nn.Module) -> int | None:
    get = getattr(model, "get_input_embeddings", None)
    embed = get() if callable(get) else None
    if isinstance(embed, nn.Embedding):
        return int(embed.num_embeddings)
    size = getattr(getattr(model, "config", None), "vocab_size", None)
    return size if isinstance(size, int) else None


def _check_ids(name: str, ids: torch.Tensor, vocab: int | None) -> None:
    """Refuse token ids outside the embedding (0..vocab-1) before the embedding sees them."""
    if vocab is None or ids.numel() == 0:
        return
    low, high = int(ids.min()), int(ids.max())
    if low >= 0 and high < vocab:
        return
    bad = low if low < 0 else high
    row = int(((ids == bad).any(dim=-1)).nonzero()[0]) if ids.dim() == 2 else 0
    raise ValueError(
        f"{name} contains the token id {bad} (row {row}), outside this model's vocabulary: "
        f"ids 0..{vocab - 1}. Encode prompts with this model's own tokenizer."
    )


class HookedGenerator:
    """Generate with steering, capture and projection in one KV-cached loop.

    Args:
        model: a Hugging Face causal LM (any architecture in ``trait_lab.models.architectures``).
        compile: decode through a compiled step (:mod:`~trait_lab.generation.compiled`): the
            same tokens, captures and scores; the first generation of each batch size, cache
            size and hook structure waits for a compile (seconds once torch has it on disk).

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> HookedGenerator(tiny_model()).n_layers
        3
    """

    def __init__(self, model: nn.Module, compile: bool = False) -> None:
        self.model = model
        self.n_layers = n_layers(model)
        #: the compiled decode step (``compile=True``, :mod:`~trait_lab.generation.compiled`)
        self.compiled = CompiledDecoder(model) if compile else None
        #: the latest prompt kept by ``stream(..., reuse_prompt=True)``; ``clear()`` it after
        #: changing the model's weights or adapters in place
        self.kept_prompt = PromptCache()

    @property
    def device(self) -> torch.device:
        """Where input ids go: the input embedding's device (also under a ``device_map``)."""
        return input_device(self.model)

    def _inputs(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(input_ids, torch.Tensor):
            input_ids = torch.as_tensor(input_ids)
        if input_ids.is_floating_point() or input_ids.is_complex() or input_ids.dtype == torch.bool:
            raise TypeError(
                f"input_ids must be integer token ids, got dtype {input_ids.dtype}; encode the "
                "prompt with the tokenizer (or pass torch.long ids)"
            )
        if input_ids.dim() == 1:
            input_ids = input_ids.unsqueeze(0)
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise ValueError(
                f"input_ids must be [batch, seq] with seq >= 1, got shape {tuple(input_ids.shape)}"
            )
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        attention_mask = torch.as_tensor(attention_mask)
        if attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"attention_mask shape {tuple(attention_mask.shape)} differs from input_ids "
                f"shape {tuple(input_ids.shape)}"
            )
        if bool((attention_mask[:, -1] == 0).any()):
            rows = (attention_mask[:, -1] == 0).nonzero().flatten().tolist()
            raise ValueError(
                f"rows {rows} end with padding: generation needs LEFT padding (the last column "
                "must be a real token). Set tokenizer.padding_side = 'left' (load_model does)."
            )
        if bool((attention_mask.sum(dim=1) == 0).any()):
            raise ValueError("a row of attention_mask is all zeros: every prompt needs a token")
        _check_ids("input_ids", input_ids, _vocab_size(self.model))
        device = self.device
        return input_ids.to(device), attention_mask.to(device).long()

    def stream(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int = 32,
        *,
        capture: CaptureConfig | None = None,
        steering: Sequence[SteeringConfig] = (),
        projection: ProjectionSpec | None = None,
        sampling: SamplingConfig | None = None,
        eos_token_id: int | Sequence[int] | None = None,
        pad_token_id: int | None = None,
        cancel: threading.Event | None = None,
        reuse_prompt: bool = False,
    ) -> Iterator[StreamEvent]:
        """Yield a ``StreamEvent`` per generated token; stop early by breaking or ``cancel.set()``.

        Event ``k`` carries every row's token ``k`` (``None`` for rows already finished) and,
        when capture or projection is on, that same token's activations / scores: the event
        then waits for the forward step that feeds its token back (one extra step after the
        last token), and its rows equal ``generate``'s row ``k``. With nothing recorded, a
        token is yielded as soon as it is chosen. The hooks are registered only while a step's
        forward runs, so between events (and after the iterator is left alone, closed or
        garbage-collected) the model is unsteered for everyone else, and two streams on one
        model can be interleaved. Raises before the first forward when the prompt plus
        ``max_new_tokens`` overruns the model's context or an id is outside its vocabulary,
        and at the first step whose logits are NaN/inf (e.g. a far too large coefficient).

        ``reuse_prompt=True`` (a slider re-steering one prompt) keeps the prompt's KV cache
        and records up to its last token (:mod:`~trait_lab.generation.prompt_cache`) and
        reuses them when the same prompt comes again with steering that starts at the last
        prompt token or later, so the first forward runs one token; equal to the full
        computation up to float rounding. It assumes the weights did not change in between
        (else call ``self.kept_prompt.clear()``).

        Example:
            >>> from trait_lab.testing import tiny_model, tiny_batch
            >>> ids = tiny_batch(1, 5)["input_ids"]
            >>> events = HookedGenerator(tiny_model()).stream(
            ...     ids, max_new_tokens=3, capture=CaptureConfig(layers=[1]), eos_token_id=[])
            >>> [tuple(e.activations[1]["residual"].shape) for e in events]
            [(1, 32), (1, 32), (1, 32)]
        """
        _check_max_new_tokens(max_new_tokens)
        ids, mask = self._inputs(input_ids, attention_mask)
        _check_context(self.model, mask, max_new_tokens)
        batch, prompt_len = ids.shape
        sampling = sampling or SamplingConfig()
        eos = _eos_ids(self.model, eos_token_id)
        pad = tokens.pad_token_id(model=self.model, explicit=pad_token_id, eos=eos)
        _check_ids("pad_token_id", torch.tensor([pad]), _vocab_size(self.model))
        hooks = StepHooks(self.model, batch, prompt_len, capture, steering, projection)
        prefix = None
        if reuse_prompt and reusable(steering, prompt_len) and bool(mask[:, :-1].any(1).all()):
            positions = tokens.padded_positions(mask)
            prefix = self._prefix(ids, mask, positions, hooks, capture, projection)
        session = None
        if self.compiled is not None:
            kept = None if prefix is None else prefix.cache
            configs = (capture, steering, projection)
            session = self.compiled.open(mask, max_new_tokens, hooks, configs, kept)
        try:
            yield from self._loop(
                ids, mask, max_new_tokens, hooks, session, prefix, sampling, eos, pad, cancel
            )
        finally:
            if session is not None:
                session.close()

    def _loop(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        max_new_tokens: int,
        hooks: StepHooks,
        session: CompiledSession | None,
        prefix: Prefix | None,
        sampling: SamplingConfig,
        eos: list[int],
        pad: int,
        cancel: threading.Event | None,
    ) -> Iterator[StreamEvent]:
        """The decode loop of ``stream`` (eager, or through a compiled ``session``)."""
        batch, prompt_len = ids.shape
        rng = sampling.generators(self.device, batch) if sampling.do_sample else None
        finished = torch.zeros(batch, dtype=torch.bool, device=ids.device)
        step_ids, step_pos = ids, tokens.padded_positions(mask)
        cache, cache_name = None, cache_keyword(self.model)
        if prefix is not None:
            cache, step_ids, step_pos = prefix.cache, ids[:, -1:], step_pos[:, -1:]
        if session is not None:
            hooks = session.hooks  # the resident hooks, holding this generation's values
        held: StreamEvent | None = None  # the last token, waiting for its own activations
        for step in range(max_new_tokens + 1):
            # absolute index of this forward's first token in the padded sequence
            hooks.at(prompt_len + step - 1 if step or prefix else 0)
            if session is not None:
                logits = session.forward(step_ids, step_pos)
            else:
                # hooks and no_grad hold only while this step computes, never across a yield:
                # a suspended stream must not steer (or disable autograd for) others' forwards
                with hooks, torch.no_grad():
                    out = self.model(
                        input_ids=step_ids,
                        attention_mask=mask,
                        position_ids=step_pos,
                        use_cache=True,
                        **{cache_name: cache},
                    )
                cache, logits = output_cache(out), out.logits[:, -1, :]
            if step == 0:
                hooks.check_fired()
            scored = hooks.collect(step)  # step 0: the prompt's; else token step - 1's
            if step == 0 and prefix is not None:
                scored = join_fields(prefix.fields, scored)
            if held is not None:
                yield replace(held, **scored)
            if step == max_new_tokens or bool(finished.all()):
                return
            if cancel is not None and cancel.is_set():
                return
            hooks.check_step(logits, step)
            if step == 0 and rng and rng[0].device != logits.device:  # a map's last device
                rng = sampling.generators(logits.device, batch)
            token = sampling.choose(logits, rng).to(ids.device)
            token = torch.where(finished, torch.full_like(token, pad), token)
            new = [None if finished[i] else int(token[i]) for i in range(batch)]
            if eos:
                finished |= torch.isin(token, torch.tensor(eos, device=token.device))
            prompt_fields = scored if step == 0 else {}
            event = StreamEvent(step, new, finished.tolist(), **prompt_fields, logits=logits)
            if hooks.needs_final_step:
                held = event
            else:
                yield event
                if bool(finished.all()) or step + 1 == max_new_tokens:
                    return
            step_ids = token.unsqueeze(-1)
            mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=-1)
            step_pos = step_pos[:, -1:] + 1

    def _prefix(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        hooks: StepHooks,
        capture: CaptureConfig | None,
        projection: ProjectionSpec | None,
    ) -> Prefix:
        """The prompt before its last token, kept or computed (unsteered, with the observers)."""
        observers = hooks.observers()  # the kept prompt belongs to this generator, so its model
        rows = [tensor_key(ids[i], mask[i]) for i in range(ids.shape[0])]
        kept = self.kept_prompt.get(observers, rows)
        if kept is not None:
            return kept
        recorders = StepHooks(self.model, ids.shape[0], ids.shape[1], capture, (), projection)
        with recorders, torch.no_grad():
            out = self.model(
                input_ids=ids[:, :-1],
                attention_mask=mask[:, :-1],
                position_ids=positions[:, :-1],
                use_cache=True,
            )
        prefix = Prefix(observers, rows, output_cache(out), recorders.collect(0))
        self.kept_prompt.put(prefix)  # a copy: this generation extends the cache it got
        return prefix

    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int = 32,
        *,
        capture: CaptureConfig | None = None,
        steering: Sequence[SteeringConfig] = (),
        projection: ProjectionSpec | None = None,
        sampling: SamplingConfig | None = None,
        eos_token_id: int | Sequence[int] | None = None,
        pad_token_id: int | None = None,
        cancel: threading.Event | None = None,
        reuse_prompt: bool = False,
    ) -> list[GenerationResult]:
        """Generate for a left-padded batch; one ``GenerationResult`` per row.

        ``token_ids`` of a row end at its first EOS (included); ``activations[layer][comp]``
        and ``projections[layer]`` have one row per token in ``token_ids``.
        """
        ids, mask = self._inputs(input_ids, attention_mask)
        results = [GenerationResult.start(ids[i], mask[i]) for i in range(ids.shape[0])]
        events = self.stream(
            ids,
            mask,
            max_new_tokens,
            capture=capture,
            steering=steering,
            projection=projection,
            sampling=sampling,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            cancel=cancel,
            reuse_prompt=reuse_prompt,
        )
        for event in events:
            for i, result in enumerate(results):
                result.absorb(event, i)
        for result in results:
            result.finish(max_new_tokens, cancelled=cancel is not None and cancel.is_set())
        return results
