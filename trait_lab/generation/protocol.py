"""The ``Backend`` protocol: what every generation backend offers, so callers can swap them.

``LocalBackend`` (hooks: steering, capture, streaming) and ``VLLMBackend`` (bulk text, no
hooks) both satisfy it: both take the same prompts (a user message, or a conversation) and
format them the same way (the model's chat template), so code that only needs text —
rollouts for extraction, answers for evaluation — should accept a ``Backend``.
:func:`backend_identity` is what a run records of the backend that made its text.

Example:
    >>> from trait_lab.generation.backends import LocalBackend
    >>> from trait_lab.testing import tiny_model
    >>> isinstance(LocalBackend(tiny_model(), None), Backend)
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from torch import nn

from trait_lab.generation.configs import GenerationConfig, SteeringConfig
from trait_lab.models.identity import model_identity
from trait_lab.prompts.formatting import PromptLike

__all__ = ["Backend", "backend_identity"]


@runtime_checkable
class Backend(Protocol):
    """Batched text generation: ``generate(prompts, config, steering) -> [response, …]``.

    ``prompts`` are user messages or conversations, formatted by the backend. A backend that
    cannot apply ``steering`` raises ``ValueError`` when it is given some, instead of
    generating unsteered text.
    """

    def generate(
        self,
        prompts: Sequence[PromptLike],
        config: GenerationConfig | None = None,
        steering: Sequence[SteeringConfig] = (),
    ) -> list[str]:
        """One response per prompt."""
        ...


def backend_identity(backend: Backend) -> dict[str, Any]:
    """What a run records (and hashes) of the backend that generated its text.

    The backend's own ``identity`` dict when it has one (``VLLMBackend``: model, seed,
    template, engine settings that change outputs); otherwise its class, with the identity
    of its ``model`` when that is a torch module (``LocalBackend``) and its chat-template
    choice when it has one.

    Example:
        >>> class Echo:
        ...     def generate(self, prompts, config=None, steering=()):
        ...         return list(prompts)
        >>> backend_identity(Echo())["backend"]
        'trait_lab.generation.protocol.Echo'
    """
    own = getattr(backend, "identity", None)
    if isinstance(own, dict):
        return dict(own)
    kind = type(backend)
    found: dict[str, Any] = {"backend": f"{kind.__module__}.{kind.__qualname__}"}
    model = getattr(backend, "model", None)
    if isinstance(model, nn.Module) and hasattr(model, "config"):
        found["model"] = model_identity(model)
    if isinstance(getattr(backend, "use_chat_template", None), bool):
        found["use_chat_template"] = backend.use_chat_template  # type: ignore[attr-defined]
    return found
