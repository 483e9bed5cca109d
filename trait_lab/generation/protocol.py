"""The ``Backend`` protocol: what every generation backend offers, so callers can swap them.

``LocalBackend`` (hooks: steering, capture, streaming) and ``VLLMBackend`` (bulk text, no
hooks) both satisfy it; code that only needs text — rollouts for extraction, answers for
evaluation — should accept a ``Backend``.

Example:
    >>> from trait_lab.generation.backends import LocalBackend
    >>> from trait_lab.testing import tiny_model
    >>> isinstance(LocalBackend(tiny_model(), None), Backend)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from trait_lab.generation.configs import GenerationConfig, SteeringConfig


@runtime_checkable
class Backend(Protocol):
    """Batched text generation: ``generate(prompts, config, steering) -> [response, …]``.

    A backend that cannot apply ``steering`` raises ``ValueError`` when it is given some,
    instead of generating unsteered text.
    """

    def generate(
        self,
        prompts: Sequence[Any],
        config: GenerationConfig | None = None,
        steering: Sequence[SteeringConfig] = (),
    ) -> list[str]:
        """One response per prompt."""
        ...
