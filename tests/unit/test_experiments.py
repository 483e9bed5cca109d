"""Experiment configs and the backends' pieces that need no real model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from trait_lab.core.experiments import experiments_root, get_model_variant, load_experiment_config
from trait_lab.generation.backends import GenerationConfig, LocalBackend, VLLMBackend
from trait_lab.testing import tiny_model


def _write(root: Path, name: str, config: object) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "config.json").write_text(json.dumps(config))


def test_variants_and_default(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "exp",
        {
            "model_variants": {"instruct": {"model": None}, "base": {"model": "/m", "lora": "/l"}},
            "default_variant": "base",
            "use_chat_template": False,
        },
    )
    config = load_experiment_config("exp", tmp_path)
    assert config.use_chat_template is False
    assert get_model_variant("exp", root=tmp_path).model == "/m"
    assert get_model_variant("exp", "instruct", root=tmp_path).model is None
    with pytest.raises(
        ValueError, match=r"no model variant 'chat'; variants: \['base', 'instruct'\]"
    ):
        config.variant("chat")


def test_repo_ships_the_default_experiment() -> None:
    root = Path(__file__).resolve().parents[2] / "experiments"
    assert get_model_variant("default", root=root).model is None


def test_root_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAIT_LAB_EXPERIMENTS", str(tmp_path))
    assert experiments_root() == tmp_path


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"model_variants": {}}, "must be a non-empty object"),
        ({"model_variants": {"a": {"model": None}}, "extra": 1}, r"unknown keys \['extra'\]"),
        ({"model_variants": {"a": {"model": None}}, "default_variant": "b"}, "default_variant 'b'"),
        ({"model_variants": {"bad name": {"model": None}}}, r"model_variants\.bad name"),
        ({"model_variants": {"a": {"modle": None}}}, "modle"),
        ({"model_variants": {"a": {}}, "use_chat_template": "yes"}, "true, false or null"),
    ],
)
def test_bad_configs_name_the_problem(tmp_path: Path, config: dict, message: str) -> None:
    _write(tmp_path, "exp", config)
    with pytest.raises(ValueError, match=message):
        load_experiment_config("exp", tmp_path)


def test_missing_experiment_lists_existing(tmp_path: Path) -> None:
    _write(tmp_path, "there", {"model_variants": {"a": {}}})
    with pytest.raises(FileNotFoundError, match=r"experiments under .*\['there'\]"):
        load_experiment_config("nope", tmp_path)


def test_invalid_json(tmp_path: Path) -> None:
    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "config.json").write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_experiment_config("exp", tmp_path)


def test_vllm_backend_explains_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_vllm(name: str, *args: object, **kwargs: object):
        if name == "vllm":
            raise ImportError("No module named 'vllm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_vllm)
    with pytest.raises(ImportError, match=r"pip install 'trait_lab\[vllm\]'"):
        VLLMBackend("some/model")


def test_generation_config_greedy_and_sampling() -> None:
    assert GenerationConfig().sampling().do_sample is False
    sampling = GenerationConfig(temperature=0.7, top_p=0.9, seed=1).sampling()
    assert sampling.do_sample and sampling.top_p == 0.9
    with pytest.raises(ValueError, match="temperature must be >= 0"):
        GenerationConfig(temperature=-1).sampling()


def test_backend_properties_on_a_tiny_model() -> None:
    backend = LocalBackend(tiny_model("gpt2"), tokenizer=None, use_chat_template=False)
    assert (backend.n_layers, backend.hidden_dim) == (3, 32)
    assert backend.device == torch.device("cpu")
    ids = torch.randint(3, 100, (2, 5))
    acts = backend.forward_with_capture(ids)
    assert sorted(acts) == [0, 1, 2] and acts[1]["residual"].shape == (2, 5, 32)
