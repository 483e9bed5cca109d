"""VLLMBackend: bulk generation through vLLM, an optional extra imported only when used.

vLLM exposes no model internals, so this backend has no steering and no capture; use it for
large amounts of plain text (rollouts, stories) and LocalBackend for everything hooked.

Example:
    >>> engine = VLLMBackend("org/model")  # doctest: +SKIP
    >>> engine.generate(["Hello"], max_new_tokens=8)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


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
        self, prompts: Sequence[str], max_new_tokens: int = 256, temperature: float = 0.0
    ) -> list[str]:
        """Responses to already formatted prompts."""
        params = self._vllm.SamplingParams(max_tokens=max_new_tokens, temperature=temperature)
        return [out.outputs[0].text for out in self.engine.generate(list(prompts), params)]

    def shutdown(self) -> None:
        """Free the engine (and its GPU memory)."""
        del self.engine
