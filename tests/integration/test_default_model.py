"""The embedded default model (SmolLM2-135M-Instruct) through load_model()."""

from __future__ import annotations

import logging
import shutil

import pytest
import torch

import trait_lab.models.cache as cache
from trait_lab.models.loading import cache_root, default_model_path, load_model

PROMPT = "The quick brown fox"


def _logits(model, tokenizer) -> torch.Tensor:
    batch = tokenizer([PROMPT], return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.integration
def test_default_model_shape_and_tokenizer(default_model):
    model, tok = default_model
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.num_hidden_layers == 30 and len(model.model.layers) == 30
    assert model.config.hidden_size == 576
    assert model.dtype == torch.float32
    assert not model.training
    assert tok.pad_token == "<|im_end|>" and tok.padding_side == "left"
    # generation stops on the token the tokenizer calls EOS (the GGUF metadata's, on 4.57 too)
    assert tok.eos_token == "<|im_end|>" and tok.bos_token == "<|im_start|>"
    assert tok.eos_token_id == model.generation_config.eos_token_id == model.config.eos_token_id
    assert tok.chat_template
    batch = tok(["Hi", "Hello there, friend"], return_tensors="pt", padding=True)
    assert batch["attention_mask"][0, 0] == 0 and batch["attention_mask"][0, -1] == 1


@pytest.mark.integration
def test_greedy_answer_mentions_paris(default_model):
    model, tok = default_model
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    inputs = tok.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    answer = tok.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in answer, answer


@pytest.mark.integration
def test_second_load_uses_cache(default_model, caplog):
    with caplog.at_level(logging.DEBUG, logger="trait_lab"):
        model, tok = load_model()
    messages = [r.getMessage() for r in caplog.records]
    assert not any("converting" in m for m in messages), messages
    assert any("using cached model" in m for m in messages), messages
    assert cache.cache_problem(default_model_path()) is None
    assert torch.equal(_logits(model, tok), _logits(*default_model))


@pytest.mark.integration
def test_gguf_path_of_default_hits_same_cache(default_model, caplog):
    gguf = cache_root() / "gguf" / cache.DEFAULT_GGUF_NAME
    if not gguf.is_file():
        pytest.skip("the default GGUF came from an installed wheel, not our cache")
    with caplog.at_level(logging.INFO, logger="trait_lab"):
        model, tok = load_model(gguf)
    assert not any("converting" in r.getMessage() for r in caplog.records)
    assert torch.equal(_logits(model, tok), _logits(*default_model))


@pytest.mark.integration
@pytest.mark.slow
def test_truncated_cache_is_reconverted(default_model, tmp_path, caplog):
    source = default_model_path()
    copy = tmp_path / "models" / source.name
    shutil.copytree(source, copy)
    gguf = cache.locate_default_gguf(cache_root(), local_files_only=True)
    (tmp_path / "gguf").mkdir()
    shutil.copyfile(gguf, tmp_path / "gguf" / cache.DEFAULT_GGUF_NAME)  # no download needed
    weights = copy / "model.safetensors"
    with open(weights, "r+b") as fh:
        fh.truncate(weights.stat().st_size // 2)

    with caplog.at_level(logging.INFO, logger="trait_lab"):
        model, tok = load_model(cache_dir=tmp_path)
    messages = [r.getMessage() for r in caplog.records]
    assert any("invalid" in m and "truncated" in m for m in messages), messages
    assert any("converting" in m for m in messages), messages
    assert cache.cache_problem(copy, cache.DEFAULT_GGUF_SHA256) is None
    assert torch.equal(_logits(model, tok), _logits(*default_model))
