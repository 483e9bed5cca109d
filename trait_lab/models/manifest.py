"""A converted model folder's manifest: every file's sha256 and size, written last.

Private; used by :mod:`trait_lab.models.cache`. ``write_manifest`` hashes a finished folder and
writes ``manifest.json`` atomically as the last file, so its presence marks a complete copy;
``cache_problem`` re-checks a folder against it (missing, truncated or corrupt files);
``model_fingerprint`` names a model folder by its content (the manifest's hashes), not by where
it lives, so a moved cache keeps its outputs' fingerprints.

Example:
    >>> cache_problem(Path("/nonexistent"))
    'folder does not exist'
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import transformers

from trait_lab import __version__
from trait_lab.core.atomic import atomic_write_json
from trait_lab.core.schema import Schema

MANIFEST = "manifest.json"
MODEL_MANIFEST_SCHEMA = Schema(
    "trait_lab.model_manifest",
    2,
    kind_key=None,
    version_key="format",
    remake="trait-lab model fetch (it converts the model again)",
)
"""The converted-model manifest's layout: its version sits under ``"format"``.

Version 2: the tokenizer's special tokens and BOS flag follow the GGUF metadata (version-1
copies made by transformers 4.57 added BOS and stopped on ``<|im_start|>``), so older copies are
converted again.
"""
READ_CHUNK = 1 << 22
"""Bytes read at a time when hashing or copying large files."""


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    with open(path, "rb") as fh:
        if hasattr(hashlib, "file_digest"):  # Python >= 3.11, releases the GIL, ~1.6 GB/s
            return hashlib.file_digest(fh, "sha256").hexdigest()
        digest = hashlib.sha256()
        while chunk := fh.read(READ_CHUNK):
            digest.update(chunk)
        return digest.hexdigest()


def write_manifest(folder: Path, source: dict[str, Any]) -> dict[str, Any]:
    """Hash every file in ``folder`` and write ``manifest.json`` (atomically, and last)."""

    files = {
        p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "size": p.stat().st_size}
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST and not p.name.endswith(".tmp")
    }
    manifest = MODEL_MANIFEST_SCHEMA.stamp(
        {
            "source": source,
            "files": files,
            "trait_lab_version": __version__,
            "transformers_version": transformers.__version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
    )
    atomic_write_json(folder / MANIFEST, manifest, indent=2)
    return manifest


def cache_problem(folder: Path, source_sha256: str | None = None) -> str | None:
    """Why a converted folder cannot be used, or ``None`` when every file matches its manifest.

    Checks: the manifest exists and parses, names a config and a safetensors file, its source
    hash is ``source_sha256`` (when given), and every listed file has its size and sha256.

    Example:
        >>> cache_problem(Path("/nonexistent"))
        'folder does not exist'
    """
    if not folder.is_dir():
        return "folder does not exist"
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files: dict[str, dict[str, Any]] = manifest["files"]
        source_hash = manifest["source"]["sha256"]
    except FileNotFoundError:
        return f"no {MANIFEST} (conversion never finished)"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"{MANIFEST} unreadable ({exc!r})"
    if (problem := MODEL_MANIFEST_SCHEMA.problem(manifest, folder / MANIFEST)) is not None:
        return problem
    if source_sha256 is not None and source_hash != source_sha256:
        return f"made from a source with sha256 {source_hash}, expected {source_sha256}"
    if "config.json" not in files or not any(n.endswith(".safetensors") for n in files):
        return f"{MANIFEST} lists no config.json or no .safetensors file"
    for name, entry in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != entry["size"]:
            return f"{name} has {size} bytes, expected {entry['size']} (truncated?)"
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            return f"{name} has sha256 {actual}, expected {entry['sha256']}"
    return None


def _content_digest(files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(sorted(files.items())).encode()).hexdigest()


def model_fingerprint(name_or_path: str | Path) -> str | None:
    """sha256 of a model folder's content, or ``None`` when ``name_or_path`` is not a folder.

    A converted folder's manifest already holds every file's hash, so its fingerprint costs
    one small read; any other folder is hashed file by file (config, tokenizer, weights; about
    0.6 s per GB). The same files in two folders give the same fingerprint; a hub id such as
    ``"gpt2"`` is not a folder and is its own identity (``None``).

    Example:
        >>> model_fingerprint("gpt2") is None
        True
    """
    folder = Path(name_or_path) if str(name_or_path) else None
    if folder is None or not folder.is_dir():
        return None
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        files = {name: str(entry["sha256"]) for name, entry in manifest["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        files = {
            p.relative_to(folder).as_posix(): sha256_file(p)
            for p in sorted(folder.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        }
    return _content_digest(files)
