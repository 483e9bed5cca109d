"""VLLMBackend: bulk generation through vLLM, an optional extra imported only when used.

vLLM exposes no model internals, so this backend has no steering and no capture; use it for
large amounts of plain text (rollouts, stories, extraction's generated responses) and
LocalBackend for everything hooked. It takes the same prompts as LocalBackend (a user message,
or a conversation) and formats them the same way, with vLLM's own tokenizer: the chat template
(resolved like LocalBackend's) and the same special tokens, handed to vLLM as token ids, so a
chat template's BOS is never doubled.

Example:
    >>> engine = VLLMBackend("org/model")  # doctest: +SKIP
    >>> chat = [{"role": "user", "content": "Hello"}]
    >>> engine.generate([chat], GenerationConfig(max_new_tokens=8))  # doctest: +SKIP
    >>> engine.generate(["Hello"], max_new_tokens=8, temperature=0.7)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from trait_lab.generation.configs import GenerationConfig, SteeringConfig
from trait_lab.prompts.formatting import PromptLike, format_prompt, uses_chat_template

#: engine keywords that change what the model generates, so they belong to its identity
IDENTITY_KWARGS = ("revision", "tokenizer", "tokenizer_revision", "dtype", "quantization")


class VLLMBackend:
    """Bulk generation through vLLM (no hooks: no steering, no capture).

    vLLM is an optional extra (``pip install 'trait_lab[vllm]'``, Linux + CUDA); it is imported
    only when this class is instantiated. ``use_chat_template`` works as in LocalBackend
    (``None``: when vLLM's tokenizer has a template; ``False``: prompts are plain text).
    """

    #: an engine without a tokenizer (``skip_tokenizer_init``) gets string prompts as given
    _tokenizer: Any = None
    _use_chat_template: bool | None = None

    def __init__(
        self,
        model: str,
        *,
        seed: int = 0,
        use_chat_template: bool | None = None,
        **engine_kwargs: Any,
    ) -> None:
        try:
            import vllm
        except ImportError as exc:
            raise ImportError(
                "VLLMBackend needs vLLM, which is not installed. Install it with "
                "`pip install 'trait_lab[vllm]'` on a Linux machine with a CUDA GPU, or use "
                "LocalBackend (works everywhere, supports steering and capture)."
            ) from exc
        self._vllm = vllm
        self._use_chat_template = use_chat_template
        self.identity: dict[str, Any] = {
            "backend": "vllm",
            "model": model,
            "seed": seed,
            "use_chat_template": use_chat_template,
            **{k: str(engine_kwargs[k]) for k in IDENTITY_KWARGS if k in engine_kwargs},
        }
        self.engine = vllm.LLM(model=model, seed=seed, **engine_kwargs)

    @property
    def tokenizer(self) -> Any:
        """vLLM's tokenizer (``engine.get_tokenizer()``), or ``None`` when it has none."""
        if self._tokenizer is None:
            get = getattr(self.engine, "get_tokenizer", None)
            self._tokenizer = None if get is None else get()
        return self._tokenizer

    def format(self, prompt: PromptLike, system: str | None = None) -> str:
        """The text the model sees for ``prompt`` (as ``LocalBackend.format`` renders it).

        Example:
            >>> backend = VLLMBackend.__new__(VLLMBackend)  # an engine without a tokenizer
            >>> backend.engine = object()
            >>> backend.format("Hello")
            'Hello'
        """
        return format_prompt(
            self.tokenizer, prompt, system=system, use_chat_template=self._use_chat_template
        )

    def prompt_inputs(
        self, prompts: Sequence[PromptLike], system: str | None = None
    ) -> list[dict[str, list[int]] | str]:
        """What vLLM is given for ``prompts``: ``{"prompt_token_ids": ids}`` per prompt.

        The ids are ``LocalBackend.encode``'s without the padding: the formatted text, with
        the tokenizer's special tokens added only to plain text (a chat template writes its
        own). An engine without a tokenizer gets string prompts unchanged.
        """
        if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not prompts:
            raise TypeError("prompts must be a non-empty list of prompts; wrap one prompt in [ ]")
        tok = self.tokenizer
        texts = [self.format(p, system) for p in prompts]
        if tok is None:
            return list(texts)
        chat = uses_chat_template(tok, self._use_chat_template)
        return [
            {"prompt_token_ids": list(tok(text, add_special_tokens=not chat)["input_ids"])}
            for text in texts
        ]

    def generate(
        self,
        prompts: Sequence[PromptLike],
        config: GenerationConfig | None = None,
        steering: Sequence[SteeringConfig] = (),
        *,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        system: str | None = None,
    ) -> list[str]:
        """Responses to ``prompts`` (the ``Backend`` protocol), formatted as LocalBackend would.

        ``max_new_tokens`` / ``temperature`` override ``config`` (traitinterp's call style).
        vLLM cannot apply steering: given any, this raises instead of generating unsteered text.
        """
        if steering:
            raise ValueError(
                f"VLLMBackend cannot steer (got {len(steering)} steering configs): vLLM exposes "
                "no hooks. Use LocalBackend for steered generation."
            )
        config = sampling_config(config, max_new_tokens, temperature)
        params = self._vllm.SamplingParams(
            max_tokens=config.max_new_tokens,
            temperature=config.temperature,
            top_p=1.0 if config.top_p is None else config.top_p,
            top_k=-1 if config.top_k is None else config.top_k,
            seed=config.seed,
        )
        inputs = self.prompt_inputs(prompts, system)
        return [out.outputs[0].text for out in self.engine.generate(inputs, params)]

    def shutdown(self) -> None:
        """Free the engine (and its GPU memory)."""
        del self.engine


def sampling_config(
    config: GenerationConfig | None, max_new_tokens: int | None, temperature: float | None
) -> GenerationConfig:
    """``config`` (default ``GenerationConfig(max_new_tokens=256)``) with the overrides applied.

    Example:
        >>> sampling_config(None, None, 0.7).temperature
        0.7
    """
    config = config or GenerationConfig(max_new_tokens=256)
    if max_new_tokens is not None:
        config = replace(config, max_new_tokens=max_new_tokens)
    if temperature is not None:
        config = replace(config, temperature=temperature)
    config.sampling()  # validates (temperature >= 0)
    return config
