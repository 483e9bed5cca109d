"""``trait-lab serve``: load a model and serve it over the OpenAI API, steerable per request.

::

    trait-lab serve                                  # the embedded default model
    trait-lab serve --experiment default             # its model; steering by trait name works
    trait-lab serve --model Qwen/Qwen2.5-0.5B-Instruct --port 8001

Clients pass ``model=<served name>`` (``GET /v1/models`` lists it): the ``--model`` argument as
given, the default model's name, or ``--served-model-name``. The server listens on
``127.0.0.1:8000`` unless ``--host`` / ``--port`` say otherwise; it has no authentication, so
bind it to another interface only on a network you trust.

Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="trait-lab")
    >>> _ = add_serve_parser(parser.add_subparsers(dest="command"))
    >>> parser.parse_args(["serve", "--port", "9000"]).port
    9000
"""

from __future__ import annotations

import argparse
from typing import Any

from trait_lab.core.experiments import load_experiment_config
from trait_lab.generation.backends import LocalBackend
from trait_lab.models.loading import DEFAULT_MODEL, load_model
from trait_lab.serve.app import create_app

__all__ = ["add_serve_parser", "port_number", "run_serve"]


def port_number(text: str) -> int:
    """A TCP port from the command line (1-65535), or argparse's usage error naming it.

    Example:
        >>> port_number("9000")
        9000
    """
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"expected a port number from 1 to 65535, got {text!r}; e.g. --port 8000"
        )
    return port


def add_serve_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to a parser's subparsers; returns it."""
    serve_parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="serve a model over an OpenAI-compatible API, with steering"
    )
    serve_parser.add_argument(
        "--model", default=None, help="model to serve (default: the experiment's, else SmolLM2)"
    )
    serve_parser.add_argument("--served-model-name", default=None, help="name clients pass")
    serve_parser.add_argument(
        "--experiment", default=None, help="experiment whose vectors steering by trait uses"
    )
    serve_parser.add_argument("--variant", default=None, help="the experiment's model variant")
    serve_parser.add_argument("--root", default=None, help="experiments folder")
    serve_parser.add_argument("--host", default="127.0.0.1")
    serve_parser.add_argument("--port", type=port_number, default=8000, help="1-65535")
    serve_parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: cpu)")
    serve_parser.add_argument("--dtype", default=None, help="float32, bfloat16, float16, auto")
    serve_parser.set_defaults(run=run_serve)
    return serve_parser


def _load(args: argparse.Namespace) -> tuple[Any, Any, str, str]:
    """``(model, tokenizer, served name, variant name)`` for the arguments."""
    options = {"dtype": args.dtype, "device": args.device}
    variant = args.variant or "instruct"
    if args.model is None and args.experiment is not None:
        chosen = load_experiment_config(args.experiment, args.root).variant(args.variant)
        backend = LocalBackend.from_experiment(
            args.experiment, chosen.name, root=args.root, **options
        )
        model, tokenizer, variant = backend.model, backend.tokenizer, chosen.name
        source = chosen.model or DEFAULT_MODEL
    else:
        model, tokenizer = load_model(args.model, **options)
        source = args.model or DEFAULT_MODEL
    return model, tokenizer, args.served_model_name or str(source), variant


def run_serve(args: argparse.Namespace) -> int:
    """Load the model and run uvicorn until interrupted; returns the exit code."""
    import uvicorn

    model, tokenizer, name, variant = _load(args)
    app = create_app(
        model,
        tokenizer,
        model_name=name,
        experiment=args.experiment,
        variant=variant,
        root=args.root,
    )
    print(f"serving {name!r} at http://{args.host}:{args.port}/v1 (Ctrl-C stops)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0
