"""Tensor files and models on disk: damaged, hostile or misplaced files give our clear errors.

Covers: truncated and non-safetensors files (vectors, activations, shards, a model folder's
weights), random bytes in .pt/.npy/.npz files (damaged, not "needs pickle"), real pickles (still
refused, and never executed: no unpickler runs at all), ``load_model`` arguments, non-finite and
complex vectors, and writing below a path whose parent is a file.
"""

from __future__ import annotations

import os
import pickle
import random
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.faults.checks import clear_error
from trait_lab.core.atomic import TEMP_GLOB, atomic_write_text
from trait_lab.io import (
    ActivationReader,
    ActivationWriter,
    load_activation_file,
    load_activations,
    load_vector,
    save_activations,
    save_vector,
)
from trait_lab.models.loading import ModelNotFoundError, load_model
from trait_lab.testing import tiny_model, tiny_tokenizer

RANDOM = random.Random(14).randbytes(300)


def damage(path: Path, how: str) -> None:
    """Damage the file at ``path`` in place: cut it short, empty it, or replace it by text."""
    data = path.read_bytes()
    if how == "half":
        path.write_bytes(data[: len(data) // 2])
    elif how == "head":
        path.write_bytes(data[:3])
    elif how == "empty":
        path.write_bytes(b"")
    else:
        path.write_bytes(b"just some text, not a tensor file\n")


DAMAGE = ["half", "head", "empty", "text"]


# ------------------------------------------------------------------ 1. truncated safetensors


class TestDamagedSafetensors:
    @pytest.mark.parametrize("how", DAMAGE)
    def test_vector(self, tmp_path: Path, how: str) -> None:
        path = tmp_path / "v.safetensors"
        save_vector(torch.ones(8), path, layer=3)
        damage(path, how)
        clear_error(ValueError, load_vector, path, mentions=[str(path), "safetensors", "rerun"])

    @pytest.mark.parametrize("how", DAMAGE)
    def test_activation_file(self, tmp_path: Path, how: str) -> None:
        path = tmp_path / "a.safetensors"
        save_activations({"h": torch.ones(2, 4)}, path)
        damage(path, how)
        clear_error(ValueError, load_activations, path, mentions=[str(path), "re-create"])

    @pytest.mark.parametrize("how", DAMAGE)
    def test_shard(self, tmp_path: Path, how: str) -> None:
        with ActivationWriter(tmp_path / "run", shard_size=2) as writer:
            writer.append({"h": torch.zeros(2, 3)})
            writer.append({"h": torch.ones(2, 3)})
        shard = tmp_path / "run" / "shard-00001.safetensors"
        damage(shard, how)
        reader = ActivationReader(tmp_path / "run")
        clear_error(ValueError, reader.load, mentions=[str(shard), "extract again"])
        clear_error(ValueError, load_activations, tmp_path / "run", mentions=[str(shard)])

    @pytest.mark.parametrize("content", [b"\xff\xfe{", b'{"format": "trait_lab.acti'])
    def test_shard_manifest(self, tmp_path: Path, content: bytes) -> None:
        with ActivationWriter(tmp_path / "run", shard_size=2) as writer:
            writer.append({"h": torch.zeros(2, 3)})
        manifest = tmp_path / "run" / "manifest.json"
        manifest.write_bytes(content)
        for call in (ActivationReader, ActivationWriter):
            clear_error(ValueError, call, tmp_path / "run", mentions=[str(manifest), "extract"])
        assert manifest.read_bytes() == content  # the writer did not overwrite it

    def test_missing_activation_file(self, tmp_path: Path) -> None:
        path = tmp_path / "none.safetensors"
        clear_error(FileNotFoundError, load_activation_file, path, mentions=[str(path), "path"])

    @pytest.mark.parametrize("how", ["head", "text"])
    def test_model_folder_weights(self, tmp_path: Path, how: str) -> None:
        folder = tmp_path / "model"
        tiny_model().save_pretrained(folder)
        tiny_tokenizer().save_pretrained(folder)
        damage(folder / "model.safetensors", how)
        clear_error(
            ModelNotFoundError,
            load_model,
            folder,
            mentions=[str(folder), "model.safetensors is not a readable", "download"],
        )


# ------------------------------------------------------------------ 2. random bytes, pickles


class Payload:
    """Unpickling this creates the folder ``marker``: proof that pickled code ran."""

    marker = ""

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return os.mkdir, (self.marker,)


@pytest.fixture
def no_unpickling(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Make every entry point of the pickle module fail the test if anything calls it."""
    calls: list[str] = []

    def refuse(name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            raise AssertionError(f"pickle.{name} was called")

        return call

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse(name))
    yield calls
    assert calls == [], f"pickle was used: {calls}"


class TestRandomBytesAreDamagedNotPickle:
    @pytest.mark.parametrize("suffix", [".pt", ".pth", ".npy"])
    @pytest.mark.parametrize("data", [RANDOM, b"", b"\x80\x02garbage"], ids=["rnd", "0", "pk"])
    def test_vector(
        self, tmp_path: Path, no_unpickling: list[str], suffix: str, data: bytes
    ) -> None:
        path = tmp_path / f"v{suffix}"
        path.write_bytes(data)
        err = clear_error(ValueError, load_vector, path, mentions=[str(path), "corrupt"])
        assert "needs pickle" not in str(err)

    @pytest.mark.parametrize("data", [RANDOM, b"", b"PK\x03\x04" + RANDOM])
    def test_npz(self, tmp_path: Path, no_unpickling: list[str], data: bytes) -> None:
        path = tmp_path / "a.npz"
        path.write_bytes(data)
        err = clear_error(ValueError, load_activations, path, mentions=[str(path), "corrupt"])
        assert "pickle" not in str(err)

    def test_bin_is_not_a_vector_file(self, tmp_path: Path) -> None:
        path = tmp_path / "v.bin"
        path.write_bytes(RANDOM)
        clear_error(ValueError, load_vector, path, mentions=["'v.bin'", ".safetensors, .pt"])

    @pytest.mark.parametrize("suffix", [".pt", ".npy", ".npz"])
    def test_truncated_files(self, tmp_path: Path, no_unpickling: list[str], suffix: str) -> None:
        path = tmp_path / f"x{suffix}"
        if suffix == ".pt":
            torch.save(torch.arange(50.0), path)
        elif suffix == ".npy":
            np.save(path, np.arange(50.0))
        else:
            save_activations({"h": torch.arange(50.0)}, path)
        path.write_bytes(path.read_bytes()[:-40])
        load = load_activations if suffix == ".npz" else load_vector
        err = clear_error(ValueError, load, path, mentions=[str(path), "truncated"])
        assert "needs pickle" not in str(err)

    def test_valid_files_load_with_pickle_disabled(
        self, tmp_path: Path, no_unpickling: list[str]
    ) -> None:
        torch.save(torch.arange(3.0), tmp_path / "v.pt")
        np.save(tmp_path / "v.npy", np.arange(3.0))
        save_activations({"h": torch.arange(3.0)}, tmp_path / "a.npz")
        for path in (tmp_path / "v.pt", tmp_path / "v.npy"):
            assert load_vector(path).tolist() == [0.0, 1.0, 2.0]
        assert load_activations(tmp_path / "a.npz")["h"].tolist() == [0.0, 1.0, 2.0]

    def test_real_pickles_are_refused_and_never_run(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_unpickling: list[str]
    ) -> None:
        marker = tmp_path / "code-ran"
        monkeypatch.setattr(Payload, "marker", str(marker))
        files = {
            "zip.pt": lambda p: torch.save({"v": Payload()}, p),
            "legacy.pt": lambda p: p.write_bytes(pickle.dumps(Payload(), protocol=2)),
            "objects.npy": lambda p: np.save(p, np.array([Payload()], dtype=object)),
        }
        for name, write in files.items():
            write(tmp_path / name)
        for name in files:
            path = tmp_path / name
            clear_error(ValueError, load_vector, path, mentions=[str(path), "needs pickle"])
        npz = tmp_path / "objects.npz"
        np.savez(npz, h=np.array([Payload()], dtype=object))
        clear_error(ValueError, load_activations, npz, mentions=["'h'", "needs pickle"])
        assert zipfile.is_zipfile(tmp_path / "zip.pt") and not marker.exists()


# ------------------------------------------------------------------ 5. load_model arguments


class TestLoadModelArgument:
    @pytest.mark.parametrize("value", [123, 1.5, b"model", ["m"], {"id": "m"}])
    def test_not_a_str_or_path(self, value: object) -> None:
        clear_error(TypeError, load_model, value, mentions=[repr(value), "a .gguf", "None"])

    @pytest.mark.parametrize("value", ["", "   "])
    def test_empty(self, value: str) -> None:
        clear_error(ValueError, load_model, value, mentions=[repr(value), "load_model()"])


# ------------------------------------------------------------------ 6. non-finite vectors


class TestSaveVectorRefusesBadValues:
    @pytest.mark.parametrize(
        ("values", "count"),
        [([1.0, float("nan"), 2.0], 1), ([float("inf"), float("-inf"), 0.0], 2)],
    )
    @pytest.mark.parametrize("kind", ["torch", "numpy", "bf16"])
    def test_nan_and_inf(self, tmp_path: Path, values: list[float], count: int, kind: str) -> None:
        vector: Any = torch.tensor(values)
        if kind == "numpy":
            vector = np.array(values)
        elif kind == "bf16":
            vector = vector.to(torch.bfloat16)
        path = tmp_path / "v.safetensors"
        clear_error(ValueError, save_vector, vector, path, mentions=[str(path), f"{count} NaN"])
        assert list(tmp_path.iterdir()) == []

    def test_complex(self, tmp_path: Path) -> None:
        path = tmp_path / "v.safetensors"
        save_vector(torch.ones(2), path)
        before = path.read_bytes()
        vector = torch.tensor([1 + 2j, 3 + 0j])
        clear_error(TypeError, save_vector, vector, path, mentions=[str(path), "complex", "real"])
        assert path.read_bytes() == before

    def test_finite_vector_round_trips(self, tmp_path: Path) -> None:
        path = tmp_path / "v.safetensors"
        save_vector(torch.tensor([1.5, -2.0], dtype=torch.bfloat16), path)
        assert load_vector(path).tolist() == [1.5, -2.0]


# ------------------------------------------------------------------ 7. parent is a file


class TestParentIsAFile:
    def writers(self, parent: Path) -> dict[str, Callable[[], object]]:
        return {
            "vector": lambda: save_vector(torch.ones(2), parent / "v.safetensors"),
            "npz": lambda: save_activations({"h": torch.ones(2)}, parent / "sub" / "a.npz"),
            "text": lambda: atomic_write_text(parent / "note.txt", "x"),
            "shards": lambda: ActivationWriter(parent / "run"),
        }

    @pytest.mark.parametrize("what", ["vector", "npz", "text", "shards"])
    def test_names_target_and_file(self, tmp_path: Path, what: str) -> None:
        parent = tmp_path / "results"
        parent.write_text("I am a file")
        err = clear_error(
            NotADirectoryError,
            self.writers(parent)[what],
            mentions=[f"{str(parent)!r} is a file, not a folder", "move or rename"],
        )
        if what != "shards":
            assert "cannot write" in str(err) and str(parent) + os.sep in str(err)
        assert ".tmp" not in str(err)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]
        assert parent.read_text() == "I am a file"

    def test_target_is_a_folder(self, tmp_path: Path) -> None:
        target = tmp_path / "v.safetensors"
        target.mkdir()
        err = clear_error(
            IsADirectoryError,
            save_vector,
            torch.ones(2),
            target,
            mentions=[str(target), "is a folder, not a file"],
        )
        assert ".tmp" not in str(err) and not list(tmp_path.glob(TEMP_GLOB))

    def test_figure_export(self, tmp_path: Path) -> None:
        import plotly.graph_objects as go

        from widgets.common.export import export_figure

        (tmp_path / "figures").write_text("x")
        target = tmp_path / "figures" / "f.html"
        clear_error(
            NotADirectoryError,
            export_figure,
            go.Figure(),
            target,
            mentions=[str(target), "is a file, not a folder"],
        )
