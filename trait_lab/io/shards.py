"""A folder of activation shards: stream long runs to disk, resume them, read them back.

``ActivationWriter`` streams batches into safetensors shards plus a ``manifest.json`` that only
ever lists complete shards; ``ActivationReader`` reads the folder back shard by shard or all at
once. :func:`trait_lab.activations.extract.extract_representations` uses both when given
``output_dir``.

Example:
    >>> import tempfile, torch
    >>> d = tempfile.mkdtemp()
    >>> with ActivationWriter(d, shard_size=2) as w:
    ...     w.append({"h": torch.zeros(3, 4)})
    >>> len(ActivationReader(d))
    3
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from trait_lab.core.atomic import TEMP_GLOB, atomic_write_text, make_folder
from trait_lab.core.schema import Schema
from trait_lab.io.activations import Loaded, cpu_copy, load_activation_file, save_activations

__all__ = [
    "SHARD_MANIFEST",
    "SHARD_SCHEMA",
    "ActivationReader",
    "ActivationWriter",
    "update_digest",
]

SHARD_MANIFEST = "manifest.json"
"""The file in a shard folder that lists its complete shards (not the model cache's manifest)."""

SHARD_SCHEMA = Schema(
    "trait_lab.activations",
    1,
    kind_key="format",
    version_key="version",
    remake="extract again into a new folder",
)
"""The shard manifest's format: ``{"format": "trait_lab.activations", "version": 1, ...}``."""


def update_digest(h: Any, inputs: Iterable[torch.Tensor]) -> None:
    """Feed token-id tensors into a hashlib object (length-prefixed int64), for resume checks."""
    for ids in inputs:
        ids = torch.as_tensor(ids, dtype=torch.int64).reshape(-1).contiguous()
        h.update(len(ids).to_bytes(8, "little"))
        h.update(ids.numpy().tobytes())


class ActivationWriter:
    """Stream activations into ``directory`` as safetensors shards plus ``manifest.json``.

    ``append`` buffers whole batches; once ``shard_size`` samples are buffered they are written as
    one shard (atomically), then the manifest is rewritten atomically, so memory stays bounded
    and the manifest only ever lists complete shards. Opening a folder that has a manifest
    resumes it: ``num_samples`` says how many samples are done, new shards continue the
    numbering, and tmp files left by an interrupted write are deleted. ``meta`` (for example
    layers and positions) must match the stored one on resume.

    Example:
        >>> import tempfile, torch
        >>> d = tempfile.mkdtemp()
        >>> with ActivationWriter(d, shard_size=2) as w:
        ...     for _ in range(3):
        ...         w.append({"h": torch.zeros(1, 4)})
        >>> ActivationReader(d).load()["h"].shape
        torch.Size([3, 4])
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        shard_size: int = 256,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(shard_size, int) or shard_size < 1:
            raise ValueError(
                f"shard_size must be an int >= 1 (samples per shard), got {shard_size!r}"
            )
        self.directory = Path(directory)
        self.shard_size = shard_size
        make_folder(self.directory)
        meta = json.loads(json.dumps(dict(meta or {})))  # normalise (tuples -> lists) for compare
        manifest_path = self.directory / SHARD_MANIFEST
        if manifest_path.exists():
            self.manifest = _read_manifest(self.directory)
            stored = self.manifest.get("meta", {})
            if stored != meta:
                diff = sorted(k for k in set(stored) | set(meta) if stored.get(k) != meta.get(k))
                raise ValueError(
                    f"{str(self.directory)!r} holds a run with different settings ({diff}: stored "
                    f"{[stored.get(k) for k in diff]}, now {[meta.get(k) for k in diff]}); use "
                    "a new folder, or delete this one to start over"
                )
            for tmp in self.directory.glob(TEMP_GLOB):  # interrupted shard or manifest writes
                tmp.unlink(missing_ok=True)
        else:
            self.manifest = SHARD_SCHEMA.stamp(
                {"meta": meta, "layers": {}, "num_samples": 0, "shards": []}
            )
        self._buffer: dict[str, list[Any]] = {}
        self._pending = 0
        self._digest: Any = hashlib.sha256()
        self._hashed = 0

    @property
    def num_samples(self) -> int:
        """Samples committed to disk (listed in the manifest)."""
        return int(self.manifest["num_samples"])

    @property
    def shards(self) -> list[dict[str, Any]]:
        """Manifest entries of the committed shards: file, start, num_samples, inputs_sha256."""
        return list(self.manifest["shards"])

    def verify_inputs(self, inputs: Iterator[torch.Tensor]) -> None:
        """Check the committed samples' token ids against the recorded digests, on resume.

        Consumes exactly ``num_samples`` items of ``inputs``; raises ``ValueError`` if they
        differ from those written, or run out first.
        """
        for shard in self.shards:
            h = hashlib.sha256()
            chunk = list(itertools.islice(inputs, shard["num_samples"]))
            update_digest(h, chunk)
            end = shard["start"] + shard["num_samples"] - 1
            if len(chunk) < shard["num_samples"] or shard["inputs_sha256"] not in (
                None,
                h.hexdigest(),
            ):
                raise ValueError(
                    f"samples {shard['start']}..{end} differ from (or are fewer than) those "
                    f"recorded in {str(self.directory)!r}; rerun with the same dataset, or use "
                    "a new folder"
                )

    def append(
        self,
        acts: Mapping[str, torch.Tensor | Sequence[torch.Tensor]],
        inputs: Sequence[torch.Tensor] | None = None,
    ) -> None:
        """Buffer one batch: per layer a ``[b, ...]`` tensor or a list of ``b`` tensors.

        ``inputs`` (the batch's token ids) feeds a per-shard digest used to check, on resume,
        that the dataset is the same.
        """
        kinds = {n: "tensor" if isinstance(v, torch.Tensor) else "list" for n, v in acts.items()}
        sizes = {len(v) for v in acts.values()}
        layers = self.manifest["layers"] or kinds
        if not acts or kinds != layers or len(sizes) != 1:
            raise ValueError(
                f"append() needs the same layers and kinds every time ({layers}) and "
                f"one batch size; got kinds {kinds}, batch sizes {sorted(sizes)}"
            )
        (size,) = sizes
        if inputs is not None and len(inputs) != size:
            raise ValueError(f"inputs has {len(inputs)} samples but the batch has {size}")
        self.manifest["layers"] = layers
        parts = {
            n: [cpu_copy(v)] if isinstance(v, torch.Tensor) else [cpu_copy(x) for x in v]
            for n, v in acts.items()
        }
        for name, part in parts.items():  # extend only once all converted: buffer stays whole
            self._buffer.setdefault(name, []).extend(part)
        if inputs is not None:
            update_digest(self._digest, inputs)
            self._hashed += size
        self._pending += size
        if self._pending >= self.shard_size:
            self.flush()

    def flush(self) -> None:
        """Write the buffered samples as one shard and commit it in the manifest."""
        if self._pending == 0:
            return
        kinds = self.manifest["layers"]
        shard = {n: v if kinds[n] == "list" else torch.cat(v) for n, v in self._buffer.items()}
        name = f"shard-{len(self.manifest['shards']):05d}.safetensors"
        save_activations(shard, self.directory / name)
        digest = self._digest.hexdigest() if self._hashed == self._pending else None
        self.manifest["shards"].append(
            {
                "file": name,
                "start": self.num_samples,
                "num_samples": self._pending,
                "inputs_sha256": digest,
            }
        )
        self.manifest["num_samples"] = self.num_samples + self._pending
        atomic_write_text(self.directory / SHARD_MANIFEST, json.dumps(self.manifest, indent=1))
        self._buffer, self._pending, self._hashed = {}, 0, 0
        self._digest = hashlib.sha256()

    def close(self) -> None:
        """Flush what is buffered. Safe to call twice."""
        self.flush()

    def __enter__(self) -> ActivationWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # buffered batches are complete, so they are kept even on an exception


class ActivationReader:
    """Read a folder written by :class:`ActivationWriter`: shard by shard, or all at once.

    Example:
        >>> reader = ActivationReader("acts/run1")  # doctest: +SKIP
        >>> for shard in reader:  # doctest: +SKIP
        ...     probe.partial_fit(shard["model.layers.5"])
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.manifest = _read_manifest(self.directory)

    @property
    def layers(self) -> list[str]:
        """Layer names, in the order they were written."""
        return list(self.manifest["layers"])

    @property
    def meta(self) -> dict[str, Any]:
        """The ``meta`` the writer was given (extract_representations stores its settings)."""
        return dict(self.manifest.get("meta", {}))

    def __len__(self) -> int:
        return int(self.manifest["num_samples"])

    def __iter__(self) -> Iterator[Loaded]:
        """Yield each shard's ``{name: tensor | list}``, in sample order."""
        for shard in self.manifest["shards"]:
            yield load_activation_file(self.directory / shard["file"])

    def load(self) -> Loaded:
        """Concatenate every shard (tensors along dim 0; lists are joined)."""
        parts: dict[str, list[Any]] = {n: [] for n in self.layers}
        for shard in self:
            for name, value in shard.items():
                parts[name].extend(value if isinstance(value, list) else [value])
        kinds = self.manifest["layers"]
        return {
            n: p if kinds[n] == "list" else (torch.cat(p) if p else torch.empty(0))
            for n, p in parts.items()
        }


def _read_manifest(directory: Path) -> dict[str, Any]:
    """The checked manifest of a shard folder; a missing or damaged one is a clear error."""
    path = directory / SHARD_MANIFEST

    def corrupt(why: str) -> ValueError:
        return ValueError(
            f"{str(path)!r} is damaged: {why}. It lists the folder's complete shards; delete "
            f"the folder {str(directory)!r} and extract again"
        )

    missing = (
        f"no {SHARD_MANIFEST} in {str(directory)!r}: not a folder written by "
        "ActivationWriter / extract_representations"
    )
    return SHARD_SCHEMA.read(path, missing=missing, corrupt=corrupt)
