"""VLLMBackend: bulk generation through vLLM, an optional extra imported only when used.

vLLM exposes no model internals, so this backend has no steering and no capture; use it for
large amounts of plain text (rollouts, stories) and LocalBackend for everything hooked.

Example:
    >>> engine = VLLMBackend("org/model")  # doctest: +SKIP
    >>> engine.generate(["Hello"], GenerationConfig(max_new_tokens=8))  # doctest: +SKIP
    >>> engine.generate(["Hello"], max_new_tokens=8, temperature=0.7)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from trait_lab.generation.configs import GenerationConfig, SteeringConfig


class VLLMBackend:
    """Bulk generation through vLLM (no hooks: no steering, no capture).

    vLLM is an optional extra (``pip install 'trait_lab[vllm]'``, Linux + CUDA); it is imported
    only when this class is instantiated.
    """

    def __init__(self, model: str, *, seed: int = 0, **engine_kwargs: Any) -> None:
        try:
            import vllm
        except ImportError as exc:
            raise ImportError(
                "VLLMBackend needs vLLM, which is not installed. Install it with "
                "`pip install 'trait_lab[vllm]'` on a Linux machine with a CUDA GPU, or use "
                "LocalBackend (works everywhere, supports steering and capture)."
            ) from exc
        self._vllm = vllm
        self.engine = vllm.LLM(model=model, seed=seed, **engine_kwargs)

    def generate(
        self,
        prompts: Sequence[str],
        config: GenerationConfig | None = None,
        steering: Sequence[SteeringConfig] = (),
        *,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
    ) -> list[str]:
        """Responses to already formatted prompts (the ``Backend`` protocol).

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
        return [out.outputs[0].text for out in self.engine.generate(list(prompts), params)]

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
