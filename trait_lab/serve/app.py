"""The FastAPI app of ``trait-lab serve``: OpenAI's endpoints over one local, steerable model.

* ``GET /v1/models`` (and ``/v1/models/{id}``): the one served model;
* ``POST /v1/chat/completions`` and ``POST /v1/completions``: replies, streamed as server-sent
  events (``data: {chunk}`` … ``data: [DONE]``) when ``stream`` is true, with ``logprobs`` and
  the ``steering`` extension (:mod:`trait_lab.serve.steering`).

One model serves many clients: requests are checked and tokenised on the event loop's thread
pool, then generate one at a time on a single model thread, so a long stream never stops the
server from accepting (and queueing) other requests. Every error, FastAPI's own included, is an
OpenAI-style JSON error (:class:`~trait_lab.serve.protocol.APIError`): 400 for a bad request,
404 for an unknown model or path, 500 for a failure of the server.

Example:
    >>> from trait_lab.testing import tiny_model, tiny_tokenizer
    >>> app = create_app(tiny_model(), tiny_tokenizer(), model_name="tiny")
    >>> sorted(r.path for r in app.routes if r.path.startswith("/v1"))
    ['/v1/chat/completions', '/v1/completions', '/v1/models', '/v1/models/{model_id:path}']
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from torch import nn

from trait_lab.serve.engine import Completion, Engine, Job, Piece
from trait_lab.serve.protocol import APIError, Kind, parse_request
from trait_lab.serve.responses import ChunkWriter, completion_body
from trait_lab.serve.steering import SteeringResolver

__all__ = ["ModelServer", "create_app"]

log = logging.getLogger(__name__)


def _sse(data: Any) -> str:
    return f"data: {json.dumps(data)}\n\n"


def _server_error(exc: BaseException) -> APIError:
    return APIError(
        f"the server failed: {type(exc).__name__}: {exc}. This is a bug or a resource problem "
        "(memory?) on the server; its log has the traceback.",
        code="internal_error",
        status=500,
        kind="server_error",
    )


class ModelServer:
    """What the routes call: one engine, its name, and the thread it generates on.

    Args:
        engine: the model and tokenizer.
        model_name: the name clients must pass as ``model``.
    """

    def __init__(self, engine: Engine, model_name: str) -> None:
        self.engine = engine
        self.model_name = model_name
        self.created = int(time.time())
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="trait-lab-model")

    def models(self) -> dict[str, Any]:
        """The ``GET /v1/models`` body."""
        return {"object": "list", "data": [self.model_card(self.model_name)]}

    def model_card(self, model_id: str) -> dict[str, Any]:
        """The ``GET /v1/models/{id}`` body (404 for another name)."""
        if model_id != self.model_name:
            raise APIError(
                f"the model {model_id!r} does not exist on this server; it serves "
                f"{self.model_name!r}",
                param="model",
                code="model_not_found",
                status=404,
            )
        card = {"id": model_id, "object": "model", "created": self.created}
        return {**card, "owned_by": "trait-lab"}

    async def generate(self, kind: Kind, body: Any) -> dict[str, Any] | AsyncIterator[str]:
        """A whole response body, or the SSE lines of a stream; bad requests raise first."""
        request = parse_request(kind, body, self.model_name)
        job = await asyncio.to_thread(self.engine.prepare, request)
        logprobs = request.top_logprobs is not None
        if request.stream:
            writer = ChunkWriter(
                kind, self.model_name, logprobs=logprobs, include_usage=request.include_usage
            )
            return self._stream(job, writer)
        loop = asyncio.get_running_loop()
        done = await loop.run_in_executor(self.executor, self.engine.run, job)
        return completion_body(kind, self.model_name, done, logprobs)

    async def _stream(self, job: Job, writer: ChunkWriter) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Piece | Completion | BaseException] = asyncio.Queue()
        cancel = threading.Event()

        def put(item: Piece | Completion | BaseException) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening
                loop.call_soon_threadsafe(queue.put_nowait, item)

        def work() -> None:
            try:
                put(self.engine.run(job, put, cancel))
            except Exception as exc:
                log.exception("generation failed")
                put(exc)

        loop.run_in_executor(self.executor, work)
        try:
            for chunk in writer.start():
                yield _sse(chunk)
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    yield _sse(_server_error(item).body())
                    break
                if isinstance(item, Completion):
                    for chunk in writer.end(item):
                        yield _sse(chunk)
                    break
                for chunk in writer.piece(item):
                    yield _sse(chunk)
            yield "data: [DONE]\n\n"
        finally:
            cancel.set()


def create_app(
    model: nn.Module,
    tokenizer: Any,
    *,
    model_name: str,
    experiment: str | None = None,
    variant: str = "instruct",
    root: str | os.PathLike[str] | None = None,
) -> Any:
    """A FastAPI app serving ``model`` as ``model_name``; run it with uvicorn.

    Args:
        model: a Hugging Face causal LM (steering hooks it while it generates).
        tokenizer: its tokenizer; chat requests need its chat template.
        model_name: what clients pass as ``model`` (others get 404 ``model_not_found``).
        experiment: where ``steering`` items by trait name find their vectors.
        variant: the experiment's model variant whose extractions are used.
        root: the experiments folder (default: :func:`trait_lab.core.paths.experiments_root`).
    """
    from fastapi import FastAPI

    resolver = SteeringResolver(model, experiment=experiment, variant=variant, root=root)
    server = ModelServer(Engine(model, tokenizer, resolver), model_name)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        yield
        server.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="trait-lab serve", lifespan=lifespan)
    app.state.server = server
    _add_error_handlers(app)
    _add_routes(app, server)
    return app


def _add_routes(app: Any, server: ModelServer) -> None:
    """Plain Starlette routes (the handler gets the request): the bodies are checked by
    :mod:`trait_lab.serve.protocol`, not by FastAPI's models."""
    from fastapi.responses import JSONResponse, StreamingResponse

    async def respond(kind: Kind, request: Any) -> Any:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise APIError(f"the body is not valid JSON: {exc}", code="invalid_json") from exc
        try:
            result = await server.generate(kind, body)
        except APIError:
            raise
        except Exception as exc:  # a failure of ours, answered in OpenAI's shape
            log.exception("request failed")
            raise _server_error(exc) from exc
        if isinstance(result, dict):
            return JSONResponse(result)
        return StreamingResponse(result, media_type="text/event-stream")

    async def models(request: Any) -> Any:
        return JSONResponse(server.models())

    async def model_card(request: Any) -> Any:
        return JSONResponse(server.model_card(request.path_params["model_id"]))

    async def chat(request: Any) -> Any:
        return await respond("chat", request)

    async def completions(request: Any) -> Any:
        return await respond("completion", request)

    app.add_route("/v1/models", models, methods=["GET"])
    app.add_route("/v1/models/{model_id:path}", model_card, methods=["GET"])
    app.add_route("/v1/chat/completions", chat, methods=["POST"])
    app.add_route("/v1/completions", completions, methods=["POST"])


def _add_error_handlers(app: Any) -> None:
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    def reply(error: APIError) -> Any:
        return JSONResponse(error.body(), status_code=error.status)

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> Any:
        return reply(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Any:
        first = exc.errors()[0] if exc.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return reply(APIError(f"invalid request: {first.get('msg', exc)}", param=param))

    async def http_error(request: Request, exc: Any) -> Any:
        code = "not_found" if exc.status_code == 404 else "http_error"
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return reply(APIError(message, code=code, status=exc.status_code))

    for status in range(400, 600):  # the router's own HTTP errors (404, 405, ...), by status
        app.exception_handler(status)(http_error)

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> Any:
        log.exception("request failed")
        return reply(_server_error(exc))
