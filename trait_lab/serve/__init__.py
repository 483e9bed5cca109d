"""``trait-lab serve``: an OpenAI-compatible server for one local model, steerable per request.

``create_app(model, tokenizer, model_name=...)`` builds the FastAPI app (run it with uvicorn);
``trait-lab serve`` loads a model and runs it. Any OpenAI client talks to it::

    client = openai.OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
    client.chat.completions.create(
        model="SmolLM2-135M-Instruct",
        messages=[{"role": "user", "content": "How was your day?"}],
        extra_body={"steering": [{"trait": "optimism", "coefficient": 4.0}]},
    )

fastapi and uvicorn (the ``serve`` extra) are imported only when an app is built or run.
"""

from __future__ import annotations

from trait_lab.serve.app import ModelServer, create_app
from trait_lab.serve.cli import add_serve_parser, run_serve
from trait_lab.serve.engine import DEFAULT_MAX_TOKENS, Completion, Engine, Job, Piece, TokenLogprob
from trait_lab.serve.protocol import (
    MAX_STOP,
    MAX_TOP_LOGPROBS_CHAT,
    MAX_TOP_LOGPROBS_COMPLETION,
    APIError,
    GenerationRequest,
    invalid_value,
    parse_request,
)
from trait_lab.serve.responses import (
    ChunkWriter,
    chat_logprobs,
    completion_body,
    completion_logprobs,
    usage,
)
from trait_lab.serve.steering import (
    MAX_EDIT_NORM,
    POSITIONS,
    SteeringItem,
    SteeringResolver,
    parse_steering,
)
from trait_lab.serve.text import StopText

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "MAX_EDIT_NORM",
    "MAX_STOP",
    "MAX_TOP_LOGPROBS_CHAT",
    "MAX_TOP_LOGPROBS_COMPLETION",
    "POSITIONS",
    "APIError",
    "ChunkWriter",
    "Completion",
    "Engine",
    "GenerationRequest",
    "Job",
    "ModelServer",
    "Piece",
    "SteeringItem",
    "SteeringResolver",
    "StopText",
    "TokenLogprob",
    "add_serve_parser",
    "chat_logprobs",
    "completion_body",
    "completion_logprobs",
    "create_app",
    "invalid_value",
    "parse_request",
    "parse_steering",
    "run_serve",
    "usage",
]
