"""Vector files: safetensors round trips, and pickles refused rather than executed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trait_lab.io.vectors import load_vector, save_vector


class Payload:
    """Unpickling this would import and build arbitrary objects."""

    def __init__(self) -> None:
        self.vector = torch.ones(3)


def test_bf16_round_trip_with_metadata(tmp_path: Path) -> None:
    v = torch.randn(16).to(torch.bfloat16)
    save_vector(v, tmp_path / "v.safetensors", layer=7, method="mean_diff")
    loaded, meta = load_vector(tmp_path / "v.safetensors", with_metadata=True)
    assert loaded.dtype == torch.bfloat16 and torch.equal(loaded, v)
    assert meta == {"layer": "7", "method": "mean_diff"}


def test_plain_tensor_pt_loads(tmp_path: Path) -> None:
    torch.save(torch.arange(4.0), tmp_path / "v.pt")
    assert torch.equal(load_vector(tmp_path / "v.pt"), torch.arange(4.0))
    np.save(tmp_path / "v.npy", np.arange(3.0))
    assert load_vector(tmp_path / "v.npy").tolist() == [0.0, 1.0, 2.0]


def test_pickled_object_is_refused(tmp_path: Path) -> None:
    torch.save(Payload(), tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="needs pickle to load, which can run arbitrary code"):
        load_vector(tmp_path / "evil.pt")
    np.save(tmp_path / "evil.npy", np.array([Payload()], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="needs pickle"):
        load_vector(tmp_path / "evil.npy")


def test_bad_suffix_shape_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"allowed suffixes: \.safetensors, \.pt, \.pth, \.npy"):
        (tmp_path / "v.bin").write_bytes(b"x")
        load_vector(tmp_path / "v.bin")
    with pytest.raises(ValueError, match=r"writes \.safetensors files"):
        save_vector(torch.ones(3), tmp_path / "v.pt")
    with pytest.raises(ValueError, match=r"got shape \(2, 2, 2\)"):
        save_vector(torch.ones(2, 2, 2), tmp_path / "v.safetensors")
    with pytest.raises(FileNotFoundError, match="no vector file"):
        load_vector(tmp_path / "missing.safetensors")


def test_failed_save_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "v.safetensors"
    save_vector(torch.ones(4), path)
    before = path.read_bytes()

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("trait_lab.io.vectors.save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_vector(torch.zeros(4), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.safetensors"]
