"""Generation backends: one interface for local (hooked) and vLLM (bulk, hook-free) generation.

``LocalBackend`` wraps a model and tokenizer: it formats prompts (chat template resolved by
explicit argument, then the experiment config, then whether the tokenizer has one), batches
with left padding, and runs ``HookedGenerator`` so generation, steering, capture and streaming
all work together.

Example:
    >>> backend = LocalBackend.from_model(*load_model())  # doctest: +SKIP
    >>> backend.generate(["Say hi"], GenerationConfig(max_new_tokens=5))  # doctest: +SKIP
    ['Hi! How can I']
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from trait_lab.core.experiments import get_model_variant, load_experiment_config
from trait_lab.generation.configs import (
    CaptureSpec,
    GenerationConfig,
    ProjectionSpec,
    SteeringConfig,
    SteeringSpec,
    StreamEvent,
)
from trait_lab.generation.generator import HookedGenerator
from trait_lab.generation.precision import (
    Agreement,
    Precision,
    agreement,
    at_precision,
    check_precision,
    precision_of,
)
from trait_lab.generation.vllm import VLLMBackend
from trait_lab.hooks import MultiLayerCapture
from trait_lab.models.architectures import hidden_size, input_device, n_layers
from trait_lab.models.loading import load_model
from trait_lab.prompts.formatting import PromptLike, format_prompt, uses_chat_template
from trait_lab.prompts.prompt_sets import load_prompt_set


@dataclass
class CaptureResult:
    """A generation with its activations split at the prompt/response boundary."""

    prompt: str
    response: str
    prompt_token_ids: list[int]
    response_token_ids: list[int]
    prompt_activations: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    response_activations: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    finish_reason: str = "length"


@dataclass
class StreamToken(StreamEvent):
    """One streamed token: a ``StreamEvent`` plus each row's new text (``""`` for finished rows).

    ``token`` / ``token_id`` are a single prompt's new text and id; ``activations`` (by layer,
    then component: ``[batch, hidden]``) belong to this same token.

    Example:
        >>> StreamToken(step=0, token_ids=[7], finished=[False], texts=["Hi"]).token
        'Hi'
    """

    texts: list[str] = field(default_factory=list)

    @property
    def token(self) -> str:
        """The first row's new text (single-prompt streams)."""
        return self.texts[0]


class LocalBackend:
    """Generation, steering and capture on a local model.

    ``precision``: ``"fp32"`` computes with the model as given (the exact reference),
    ``"bf16"`` with a bfloat16 copy of it (faster on CPUs with native bf16; steering and
    capture still compute in fp32 on the activations; :meth:`agreement` says how close its
    choices stay). ``model`` is then the copy and ``reference`` the model given.
    ``compile=True`` decodes through a ``torch.compile``-d step (same tokens; see
    :mod:`~trait_lab.generation.compiled`): the first generation of each shape compiles.

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> LocalBackend(tiny_model(), tokenizer=None, use_chat_template=False).n_layers
        3
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        use_chat_template: bool | None = None,
        precision: Precision = "fp32",
        compile: bool = False,
    ) -> None:
        self.precision: Precision = check_precision(precision)
        self.reference = model
        self._model = at_precision(model, precision)
        self._tokenizer = tokenizer
        self._generator = HookedGenerator(self._model, compile=compile)
        self._use_chat_template = use_chat_template

    @classmethod
    def from_model(
        cls,
        model: Any,
        tokenizer: Any,
        use_chat_template: bool | None = None,
        precision: Precision = "fp32",
        compile: bool = False,
    ) -> LocalBackend:
        """Wrap an already loaded model; ``use_chat_template=None`` follows the tokenizer."""
        return cls(model, tokenizer, use_chat_template, precision, compile)

    def agreement(
        self,
        prompts: Sequence[PromptLike] | None = None,
        max_new_tokens: int = 32,
        system: str | None = None,
    ) -> Agreement:
        """How this backend's next-token choices agree with fp32's (the ``reference``) on
        ``prompts`` (default: the built-in ``neutral`` prompt set), teacher-forced on fp32's
        greedy replies; ``same_greedy`` counts this backend's own replies (compiled or not)
        equal to fp32's (``generation.precision.agreement``)."""
        texts = list(prompts) if prompts is not None else load_prompt_set("neutral")
        batch = self.encode(texts, system)
        ids, mask = batch["input_ids"], batch["attention_mask"]
        return agreement(self.reference, self._model, ids, mask, max_new_tokens, self._generator)

    @classmethod
    def from_experiment(
        cls,
        experiment: str,
        variant: str | None = None,
        *,
        use_chat_template: bool | None = None,
        root: str | None = None,
        precision: Precision = "fp32",
        compile: bool = False,
        **load_kwargs: Any,
    ) -> LocalBackend:
        """Load an experiment's model variant (computing at ``precision``, see the class).

        Chat template: this argument, then the experiment config, then the tokenizer.
        """
        check_precision(precision)  # before the model is loaded

        config = load_experiment_config(experiment, root)
        chosen = config.variant(variant)
        model, tokenizer = load_model(chosen.model, **load_kwargs)
        if chosen.lora:
            model = _apply_lora(model, chosen.lora)
        if use_chat_template is None:
            use_chat_template = config.use_chat_template
        return cls(model, tokenizer, use_chat_template, precision, compile)

    @property
    def model(self) -> Any:
        return self._model

    @property
    def compute(self) -> str:
        """What generation computes with: the weights' precision, then ``compiled`` while the
        compiled decode step is on and working, ``eager`` after it fell back (its
        ``unavailable`` says why).

        Example:
            >>> from trait_lab.testing import tiny_model
            >>> LocalBackend(tiny_model(), None, False, compile=True).compute
            'fp32 · compiled'
        """
        label = precision_of(self._model)
        decoder = self._generator.compiled
        if decoder is not None:
            label += " · compiled" if decoder.unavailable is None else " · eager"
        return label

    @property
    def tokenizer(self) -> Any:
        return self._tokenizer

    @property
    def n_layers(self) -> int:
        return n_layers(self._model)

    @property
    def hidden_dim(self) -> int:
        return hidden_size(self._model)

    @property
    def device(self) -> torch.device:
        """Where input ids go: the input embedding's device (also under a ``device_map``)."""
        return input_device(self._model)

    @property
    def use_chat_template(self) -> bool:
        """The resolved choice (explicit / experiment setting, else whether a template exists)."""
        return uses_chat_template(self._tokenizer, self._use_chat_template)

    def format(self, prompt: PromptLike, system: str | None = None) -> str:
        """The text the model sees for ``prompt``."""
        return format_prompt(
            self._tokenizer, prompt, system=system, use_chat_template=self._use_chat_template
        )

    def encode(
        self, prompts: Sequence[PromptLike], system: str | None = None
    ) -> dict[str, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` (left-padded, on the model's device) exactly as
        ``generate`` and ``stream`` feed ``prompts`` to the model: template, specials, padding.

        Example:
            >>> from trait_lab.testing import tiny_model, tiny_tokenizer
            >>> backend = LocalBackend(tiny_model(), tiny_tokenizer(), use_chat_template=False)
            >>> batch = backend.encode(["Hi", "Hello there"])
            >>> batch["input_ids"].shape[0], int(batch["attention_mask"][1].sum())
            (2, 11)
        """
        if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not prompts:
            raise TypeError("prompts must be a non-empty list of prompts; wrap one prompt in [ ]")
        texts = [self.format(p, system) for p in prompts]
        tok = self._tokenizer
        side = tok.padding_side
        tok.padding_side = "left"
        try:
            chat = self.use_chat_template
            batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=not chat)
        finally:
            tok.padding_side = side
        return {
            k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")
        }

    def _decode(self, ids: Sequence[int]) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=True)

    def _batches(self, prompts: Sequence[PromptLike], size: int) -> Iterator[Sequence[PromptLike]]:
        if size < 1:
            raise ValueError(f"batch_size must be >= 1, got {size}")
        for start in range(0, len(prompts), size):
            yield prompts[start : start + size]

    def generate(
        self,
        prompts: Sequence[PromptLike],
        config: GenerationConfig | None = None,
        steering: Sequence[SteeringSpec] = (),
        *,
        system: str | None = None,
    ) -> list[str]:
        """Responses to ``prompts`` (batched, left-padded, each stopping at its EOS)."""
        return [r.response for r in self._run(prompts, config, steering, None, system)]

    def generate_with_capture(
        self,
        prompts: Sequence[PromptLike],
        capture: CaptureSpec | None = None,
        config: GenerationConfig | None = None,
        steering: Sequence[SteeringSpec] = (),
        *,
        system: str | None = None,
    ) -> list[CaptureResult]:
        """Responses with prompt and response activations (steering applies while capturing)."""
        return self._run(prompts, config, steering, capture or CaptureSpec(), system)

    def _run(
        self,
        prompts: Sequence[PromptLike],
        config: GenerationConfig | None,
        steering: Sequence[SteeringSpec],
        capture: CaptureSpec | None,
        system: str | None,
    ) -> list[CaptureResult]:
        config = config or GenerationConfig()
        results: list[CaptureResult] = []
        start = 0
        for chunk in self._batches(prompts, config.batch_size):
            batch = self.encode(chunk, system)
            window = range(start, start + len(chunk))
            start += len(chunk)
            outs = self._generator.generate(
                batch["input_ids"],
                batch["attention_mask"],
                config.max_new_tokens,
                steering=[_for_rows(s, window, len(prompts), i) for i, s in enumerate(steering)],
                capture=replace(capture, prompt=True) if capture else None,
                sampling=config.sampling(),
                pad_token_id=self._tokenizer.pad_token_id,
            )
            for out in outs:
                results.append(
                    CaptureResult(
                        prompt=self._decode(out.prompt_ids),
                        response=self._decode(out.token_ids),
                        prompt_token_ids=out.prompt_ids,
                        response_token_ids=out.token_ids,
                        prompt_activations=out.prompt_activations,
                        response_activations=out.activations,
                        finish_reason=out.finish_reason,
                    )
                )
        return results

    def stream(
        self,
        prompt: PromptLike | Sequence[PromptLike],
        config: GenerationConfig | None = None,
        steering: Sequence[SteeringSpec] = (),
        *,
        capture: CaptureSpec | None = None,
        projection: ProjectionSpec | None = None,
        system: str | None = None,
        cancel: threading.Event | None = None,
        reuse_prompt: bool = False,
    ) -> Iterator[StreamToken]:
        """Yield each token as it is generated, for one prompt or a batch (one text per row).

        Text is decoded incrementally per row, so multi-token characters appear whole. With
        ``capture`` (or ``projection``) each token comes with its own activations
        ``[batch, hidden]`` — the rows ``generate_with_capture`` returns — one forward step
        later than without. Stop early by breaking out of the loop or setting ``cancel``.
        ``reuse_prompt``: keep the prompt's KV cache for the next stream of the same prompt
        (see ``HookedGenerator.stream``).

        Example:
            >>> spec = CaptureSpec(layers=[14])
            >>> for token in backend.stream("Hi", capture=spec):  # doctest: +SKIP
            ...     print(token.token, token.activations[14]["residual"].shape)
        """
        config = config or GenerationConfig()
        single = isinstance(prompt, str) or _is_conversation(prompt)
        prompts: list[PromptLike] = [prompt] if single else list(prompt)  # type: ignore[list-item, arg-type]
        batch = self.encode(prompts, system)
        generated: list[list[int]] = [[] for _ in prompts]
        shown = [""] * len(prompts)
        for event in self._generator.stream(
            batch["input_ids"],
            batch["attention_mask"],
            config.max_new_tokens,
            steering=list(steering),
            capture=capture,
            projection=projection,
            sampling=config.sampling(),
            pad_token_id=self._tokenizer.pad_token_id,
            cancel=cancel,
            reuse_prompt=reuse_prompt,
        ):
            texts = []
            for i, token in enumerate(event.token_ids):
                if token is not None:
                    generated[i].append(token)
                full = self._decode(generated[i])
                texts.append(full[len(shown[i]) :] if full.startswith(shown[i]) else full)
                shown[i] = full
            yield StreamToken(**vars(event), texts=texts)

    def forward_with_capture(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        capture: CaptureSpec | None = None,
    ) -> dict[int, dict[str, torch.Tensor]]:
        """One forward pass; ``{layer: {component: [batch, seq, hidden]}}``."""

        capture = capture or CaptureSpec()
        ids = torch.as_tensor(input_ids).to(self.device)
        mask = None if attention_mask is None else torch.as_tensor(attention_mask).to(self.device)
        with (
            MultiLayerCapture(self._model, capture.layers, components=capture.components) as cap,
            torch.no_grad(),
        ):
            self._model(input_ids=ids, attention_mask=mask)
        return {layer: {c: cap.get(layer, c) for c in capture.components} for layer in cap.layers}


def _for_rows(spec: SteeringSpec, window: range, n_prompts: int, index: int) -> SteeringConfig:
    """``spec`` for the prompts in ``window`` (a chunk of ``batch_size``): per-prompt
    coefficients and ``rows`` are indices over all prompts, so they are sliced here."""
    config = replace(spec)
    if not isinstance(spec.coefficient, (int, float)):
        coefs = list(spec.coefficient)
        if len(coefs) != n_prompts:
            raise ValueError(
                f"steering[{index}].coefficient has {len(coefs)} values for {n_prompts} prompts; "
                "give one number, or one per prompt"
            )
        config.coefficient = coefs[window.start : window.stop]
    if spec.rows is not None:
        bad = [r for r in spec.rows if not 0 <= r < n_prompts]
        if bad:
            raise ValueError(
                f"steering[{index}].rows {bad} are outside the prompts (0..{n_prompts - 1})"
            )
        config.rows = [r - window.start for r in spec.rows if r in window]
    return config


def _is_conversation(prompt: Any) -> bool:
    return isinstance(prompt, list) and bool(prompt) and isinstance(prompt[0], dict)


def _apply_lora(model: Any, adapter: str) -> Any:
    try:
        from peft import PeftModel
    except ImportError as exc:
        raise ImportError(
            f"model variant uses the LoRA adapter {adapter!r}, which needs the peft package: "
            "pip install peft"
        ) from exc
    return PeftModel.from_pretrained(model, adapter).eval()


def get_backend(
    experiment: str | None = None,
    variant: str | None = None,
    *,
    prefer_server: bool = False,
    **kwargs: Any,
) -> LocalBackend | VLLMBackend:
    """A backend for an experiment (or the default model when ``experiment`` is None).

    ``prefer_server=True`` picks vLLM when it is installed and a GPU is visible (bulk text,
    no hooks) and otherwise falls back to ``LocalBackend``.
    """
    if prefer_server and torch.cuda.is_available():
        try:
            import vllm  # noqa: F401
        except ImportError:
            pass
        else:
            model = None
            if experiment is not None:
                model = get_model_variant(experiment, variant).model
            if model is not None:
                return VLLMBackend(model)
    if experiment is None:
        return LocalBackend.from_model(*load_model(**kwargs))
    return LocalBackend.from_experiment(experiment, variant, **kwargs)
