"""``trait-lab serve``: the subcommand loads the right model and hands uvicorn the app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import uvicorn

import trait_lab.generation.backends as backends
import trait_lab.serve.cli as serve_cli
from trait_lab.cli import main
from trait_lab.testing import tiny_model, tiny_tokenizer


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Records what would be loaded and served instead of loading and serving it."""
    seen: dict[str, Any] = {}

    def load(name: Any = None, **options: Any) -> tuple[Any, Any]:
        seen["loaded"] = (name, options)
        return tiny_model(), tiny_tokenizer()

    def run(app: Any, **options: Any) -> None:
        seen["app"], seen["options"] = app, options

    monkeypatch.setattr(serve_cli, "load_model", load)
    monkeypatch.setattr(backends, "load_model", load)
    monkeypatch.setattr(uvicorn, "run", run)
    return seen


def test_defaults_serve_the_default_model_on_localhost(served: dict[str, Any]) -> None:
    assert main(["serve"]) == 0
    assert served["loaded"] == (None, {"dtype": None, "device": None})
    assert served["options"] == {"host": "127.0.0.1", "port": 8000, "log_level": "info"}
    server = served["app"].state.server
    assert server.model_name == "SmolLM2-135M-Instruct"
    assert server.engine.resolver.experiment is None


def test_model_name_port_and_experiment(served: dict[str, Any], tmp_path: Path) -> None:
    config = {"model_variants": {"chat": {"model": "some/model"}}, "default_variant": "chat"}
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "config.json").write_text(json.dumps(config))
    argv = ["serve", "--experiment", "exp", "--root", str(tmp_path), "--port", "9001"]
    assert main(argv) == 0
    assert served["loaded"][0] == "some/model" and served["options"]["port"] == 9001
    resolver = served["app"].state.server.engine.resolver
    assert (resolver.experiment, resolver.variant, resolver.root) == ("exp", "chat", str(tmp_path))
    assert served["app"].state.server.model_name == "some/model"
    assert main(["serve", "--model", "m.gguf", "--served-model-name", "mine"]) == 0
    assert served["loaded"][0] == "m.gguf" and served["app"].state.server.model_name == "mine"


def test_unknown_experiment_is_a_clear_error(
    served: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--experiment", "nope", "--root", str(tmp_path)]) == 2
    assert "no experiment config" in capsys.readouterr().err
