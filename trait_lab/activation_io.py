"""Activations on disk: one-file ``.npz`` / ``.safetensors`` saves and streamed shard folders.

``save_activations`` / ``load_activations`` keep KempnerForge's one-call API and remove its
limits: bf16 saves to ``.npz`` without a manual cast (bit-exact round trip), lists of
variable-length tensors (``positions="all"``) save too, writes are atomic, and loading never
unpickles. ``ActivationWriter`` streams long runs into a folder of safetensors shards plus a
``manifest.json``; ``ActivationReader`` reads it back shard by shard or all at once.

Example:
    >>> import tempfile, torch
    >>> d = tempfile.mkdtemp()
    >>> save_activations({"h": torch.ones(2, 3, dtype=torch.bfloat16)}, f"{d}/a.npz")
    >>> load_activations(f"{d}/a.npz")["h"].dtype
    torch.bfloat16
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import uuid
import zipfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import torch

__all__ = [
    "SUFFIXES",
    "ActivationReader",
    "ActivationWriter",
    "load_activations",
    "save_activations",
]

SUFFIXES: tuple[str, ...] = (".npz", ".safetensors")
MANIFEST = "manifest.json"
_PREFIX = "__trait_lab__."
_OFFSETS = _PREFIX + "offsets."  # int64 [n + 1]: a list of n variable-length tensors, flattened
_DTYPE = _PREFIX + "dtype."  # npz only: "bfloat16" for a uint16 bit pattern
Activations: TypeAlias = Mapping[str, torch.Tensor | np.ndarray | Sequence[torch.Tensor]]
Loaded: TypeAlias = dict[str, torch.Tensor | list[torch.Tensor]]


def _atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Write via ``write(tmp)`` to a hidden tmp file beside ``path``, fsync, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # persist the rename; not every filesystem allows it
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _suffix(path: Path) -> str:
    if path.suffix not in SUFFIXES:
        raise ValueError(
            f"unsupported activation file suffix {path.suffix or '(none)'!r} in {str(path)!r}; "
            f"use one of {', '.join(SUFFIXES)} (.npz for numpy tools, .safetensors for "
            "memory-mapped loading), or a folder written by ActivationWriter"
        )
    return path.suffix


def _cpu(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().cpu().contiguous()
    # A view of a bigger buffer would save the whole buffer (safetensors refuses shared storage).
    if t.untyped_storage().nbytes() != t.numel() * t.element_size():
        t = t.clone()
    return t


def _encode(acts: Activations) -> dict[str, torch.Tensor | np.ndarray]:
    """Flatten lists into ``name`` + ``offsets`` entries; tensors come back on CPU, contiguous."""
    if not isinstance(acts, Mapping):
        raise TypeError(f"activations must be a dict name -> tensor, got {type(acts).__name__}")
    out: dict[str, torch.Tensor | np.ndarray] = {}
    for name, value in acts.items():
        if not isinstance(name, str) or not name or name.startswith(_PREFIX):
            raise ValueError(
                f"invalid activation name {name!r}: use a non-empty str not "
                f"starting with {_PREFIX!r}"
            )
        if isinstance(value, torch.Tensor):
            out[name] = _cpu(value)
        elif isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                raise TypeError(
                    f"{name!r} is an object array, which needs pickle; convert it "
                    "to a numeric dtype first"
                )
            out[name] = np.ascontiguousarray(value)
        elif isinstance(value, (list, tuple)):
            parts = [_cpu(torch.as_tensor(v)) for v in value]
            if any(p.ndim == 0 for p in parts):
                raise ValueError(f"{name!r}: list items must be tensors of ndim >= 1")
            kinds = {(p.dtype, tuple(p.shape[1:])) for p in parts}
            if len(kinds) > 1:
                raise ValueError(
                    f"{name!r}: list items must share dtype and trailing shape, "
                    f"got {sorted(map(str, kinds))}"
                )
            out[name] = torch.cat(parts) if parts else torch.empty(0)
            lengths = torch.tensor([0] + [len(p) for p in parts], dtype=torch.int64)
            out[_OFFSETS + name] = torch.cumsum(lengths, 0)
        else:
            raise TypeError(
                f"{name!r} is a {type(value).__name__}; save a torch.Tensor, a numpy "
                "array, or a list of tensors"
            )
    return out


def _decode(entries: Mapping[str, torch.Tensor]) -> Loaded:
    out: Loaded = {}
    for name, t in entries.items():
        if name.startswith(_PREFIX):
            continue
        offsets = entries.get(_OFFSETS + name)
        if offsets is None:
            out[name] = t
        else:
            bounds = offsets.tolist()
            out[name] = [t[a:b] for a, b in itertools.pairwise(bounds)]
    return out


def _write_npz(arrays: Mapping[str, np.ndarray], tmp: Path) -> None:
    # Our own zip writer: np.savez(**arrays) breaks on a key named "file", and pickles objects.
    with open(tmp, "xb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        for key, arr in arrays.items():
            with z.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def _to_numpy(name: str, t: torch.Tensor | np.ndarray) -> dict[str, np.ndarray]:
    if isinstance(t, np.ndarray):
        return {name: t}
    if t.dtype == torch.bfloat16:  # numpy has no bf16: keep the exact bits plus a marker
        return {
            name: t.view(torch.int16).numpy().view(np.uint16),
            _DTYPE + name: np.array("bfloat16"),
        }
    try:
        return {name: t.numpy()}
    except TypeError as err:
        raise TypeError(
            f"{name!r} has dtype {t.dtype}, which .npz cannot hold; save to "
            ".safetensors instead or cast it"
        ) from err


def save_activations(acts: Activations, path: str | os.PathLike[str]) -> None:
    """Save ``{name: tensor | array | list of tensors}`` to one file, atomically.

    The format follows the suffix: ``.npz`` (bf16 is stored as its uint16 bit pattern plus a
    marker, so :func:`load_activations` returns the exact bf16 tensor) or ``.safetensors``
    (native dtypes). A list of variable-length tensors (``positions="all"``) is stored
    concatenated with an offsets array and loads back as a list. The file is written to a tmp
    file in the same folder, fsynced, then moved over ``path``: a failed write leaves any old file
    intact. Parent folders are created.

    Example:
        >>> import tempfile, torch
        >>> p = tempfile.mkdtemp() + "/acts.safetensors"
        >>> save_activations({"h": [torch.zeros(3, 4), torch.zeros(5, 4)]}, p)
        >>> [t.shape[0] for t in load_activations(p)["h"]]
        [3, 5]
    """
    path = Path(path)
    suffix = _suffix(path)
    entries = _encode(acts)
    if suffix == ".npz":
        arrays: dict[str, np.ndarray] = {}
        for name, t in entries.items():
            arrays.update(_to_numpy(name, t))
        _atomic_write(path, lambda tmp: _write_npz(arrays, tmp))
    else:
        from safetensors.torch import save_file

        tensors = {
            k: v if isinstance(v, torch.Tensor) else torch.from_numpy(v) for k, v in entries.items()
        }
        _atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))


def _load_npz(path: Path) -> dict[str, torch.Tensor]:
    entries: dict[str, torch.Tensor] = {}
    with np.load(path, allow_pickle=False) as z:
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError(
                f"{str(path)!r} is not an .npz archive (a plain .npy?); "
                "re-save it with save_activations"
            )
        markers = {k[len(_DTYPE) :]: str(z[k]) for k in z.files if k.startswith(_DTYPE)}
        for key in z.files:
            if key.startswith(_DTYPE):
                continue
            try:
                arr = z[key]
            except ValueError as err:
                raise ValueError(
                    f"{str(path)!r}: entry {key!r} is an object array that needs pickle to load; "
                    "trait_lab never unpickles (it can run arbitrary code). Re-save the data "
                    "as numeric arrays, e.g. with save_activations"
                ) from err
            if markers.get(key) == "bfloat16":
                entries[key] = torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
            else:
                entries[key] = torch.from_numpy(arr)
    return entries


def load_activations(path: str | os.PathLike[str]) -> Loaded:
    """Load what :func:`save_activations` or :class:`ActivationWriter` wrote.

    Returns ``{name: tensor}``, or ``{name: list of tensors}`` for lists that were saved. A
    folder with a ``manifest.json`` loads all its shards. Pickle is never used: a file that needs
    it raises ``ValueError``.

    Example:
        >>> import tempfile, torch
        >>> p = tempfile.mkdtemp() + "/a.npz"
        >>> save_activations({"h": torch.arange(3.0)}, p)
        >>> load_activations(p)["h"].tolist()
        [0.0, 1.0, 2.0]
    """
    path = Path(path)
    if path.is_dir():
        return ActivationReader(path).load()
    if _suffix(path) == ".npz":
        return _decode(_load_npz(path))
    from safetensors.torch import load_file

    return _decode(load_file(str(path)))


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
        self.directory.mkdir(parents=True, exist_ok=True)
        meta = json.loads(json.dumps(dict(meta or {})))  # normalise (tuples -> lists) for compare
        manifest_path = self.directory / MANIFEST
        if manifest_path.exists():
            self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
            stored = self.manifest.get("meta", {})
            if stored != meta:
                diff = sorted(k for k in set(stored) | set(meta) if stored.get(k) != meta.get(k))
                raise ValueError(
                    f"{str(self.directory)!r} holds a run with different settings ({diff}: stored "
                    f"{[stored.get(k) for k in diff]}, now {[meta.get(k) for k in diff]}); use "
                    "a new folder, or delete this one to start over"
                )
            for tmp in self.directory.glob(".*.tmp"):  # interrupted shard or manifest writes
                tmp.unlink(missing_ok=True)
        else:
            self.manifest = {
                "format": "trait_lab.activations",
                "version": 1,
                "meta": meta,
                "layers": {},
                "num_samples": 0,
                "shards": [],
            }
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
            n: [_cpu(v)] if isinstance(v, torch.Tensor) else [_cpu(x) for x in v]
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
        text = json.dumps(self.manifest, indent=1)
        _atomic_write(self.directory / MANIFEST, lambda tmp: tmp.write_text(text))
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
        path = self.directory / MANIFEST
        if not path.is_file():
            raise FileNotFoundError(
                f"no {MANIFEST} in {str(self.directory)!r}: not a folder "
                "written by ActivationWriter / extract_representations"
            )
        self.manifest: dict[str, Any] = json.loads(path.read_text())

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
            yield load_activations(self.directory / shard["file"])

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
