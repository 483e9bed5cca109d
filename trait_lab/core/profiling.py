"""Profiling: wall time and memory of a block, memory snapshots, live CUDA tensors, sizes.

Everything works with or without an accelerator. On CUDA the numbers come from PyTorch's
caching allocator, on Apple MPS from what ``torch.mps`` exposes, and on the CPU from the
process's resident set size (RSS) and the system's memory. Units are decimal throughout:
GB = 10**9 bytes and MB = 10**6 bytes (so a ``(64, 300, 2304)`` bfloat16 tensor is 88.47 MB,
0.0885 GB).

Example:
    >>> import io
    >>> with gpu_profile("sum", device="cpu", file=io.StringIO()) as prof:
    ...     total = sum(range(1000))
    >>> prof.kind, prof.seconds >= 0
    ('process_rss', True)
"""

from __future__ import annotations

import contextlib
import gc
import math
import operator
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

import torch

from trait_lab.core.records import check_float, invalid

try:  # Unix only; elsewhere the process's peak memory reads as NaN
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

__all__ = [
    "Profile",
    "bandwidth_report",
    "find_cuda_tensors",
    "gpu_profile",
    "memory_stats",
    "tensor_size_gb",
]

#: bytes in a GB and in an MB as this module counts them (decimal: 0.0885 GB for 88.47 MB)
_GB, _MB = 1e9, 1e6

#: what the memory numbers of a profile measure, per device type
_KINDS = {"cuda": "cuda_allocated", "mps": "mps_allocated", "cpu": "process_rss"}
#: the word before the peak in the printed line, per device type
_PEAK_WORDS = {"cuda": "peak", "mps": "driver", "cpu": "peak RSS"}
_DEVICE_FIX = "Pass device=None (the best device present), 'cuda', 'cuda:N', 'mps' or 'cpu'."


@dataclass
class Profile:
    """What :func:`gpu_profile` measured; ``seconds``, ``peak_gb`` and ``delta_gb`` fill on exit.

    ``kind`` says what the memory numbers are: ``'cuda_allocated'`` (peak and change of the
    tensors PyTorch allocated on the GPU), ``'mps_allocated'`` (peak = memory the Metal driver
    holds at exit, change = tensors allocated) or ``'process_rss'`` (peak = the process's peak
    RSS since it started, change = the change of its current RSS). Values are in GB (10**9 B).

    Example:
        >>> print(Profile("load", "cpu", "process_rss", 0.5, 1.25, 0.25))
        [load] 0.50s | peak RSS 1.2GB | delta RSS +0.25GB
    """

    label: str
    device: str
    kind: str
    seconds: float = math.nan
    peak_gb: float = math.nan
    delta_gb: float = math.nan

    def __str__(self) -> str:
        device_type = self.device.split(":")[0]
        peak_word = _PEAK_WORDS.get(device_type, "peak")
        delta_word = "delta RSS" if device_type == "cpu" else "delta"
        return (
            f"[{self.label}] {self.seconds:.2f}s | {peak_word} {_gb_text(self.peak_gb)} | "
            f"{delta_word} {_gb_text(self.delta_gb, signed=True)}"
        )


def _gb_text(value: float, signed: bool = False) -> str:
    """``12.3GB`` (one decimal from 1 GB up, two below), ``+0.25GB`` when signed, or ``n/a``."""
    if not math.isfinite(value):
        return "n/a"
    decimals = 1 if abs(value) >= 1 else 2
    return f"{value:{'+' if signed else ''}.{decimals}f}GB"


def _resolve_device(device: str | int | torch.device | None) -> torch.device:
    """The device to measure: the given one (checked present), or CUDA, then MPS, then CPU."""
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"device={device!r} is not a device. {_DEVICE_FIX}") from exc
    if resolved.type not in _KINDS:
        raise ValueError(
            f"device={device!r} has type {resolved.type!r}; expected one of {sorted(_KINDS)}. "
            + _DEVICE_FIX
        )
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but CUDA is not available here. {_DEVICE_FIX}")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise ValueError(
                f"device={device!r} but this machine has {count} CUDA device(s) "
                f"(cuda:0 to cuda:{count - 1}). {_DEVICE_FIX}"
            )
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r} but MPS is not available here. {_DEVICE_FIX}")
    return resolved


def _peak_rss_bytes() -> float:
    """The process's peak RSS in bytes (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    if resource is None:  # pragma: no cover - Windows
        return math.nan
    peak = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak if sys.platform == "darwin" else peak * 1024


def _rss_bytes() -> float:
    """The process's current RSS in bytes (``/proc/self/statm``; the peak where it is absent)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            resident_pages = int(fh.read().split()[1])
    except (OSError, IndexError, ValueError):
        return _peak_rss_bytes()
    return float(resident_pages * os.sysconf("SC_PAGE_SIZE"))


def _system_memory_bytes() -> tuple[float, float]:
    """(available, total) system memory in bytes, from /proc/meminfo or ``os.sysconf``."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            fields = {line.split(":")[0]: line.split()[1] for line in fh if ":" in line}
        return float(fields["MemAvailable"]) * 1024, float(fields["MemTotal"]) * 1024
    except (OSError, KeyError, IndexError, ValueError):
        pass
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        total = float(os.sysconf("SC_PHYS_PAGES") * page)
    except (AttributeError, OSError, ValueError):  # no sysconf (Windows)
        return math.nan, math.nan
    try:
        available = float(os.sysconf("SC_AVPHYS_PAGES") * page)
    except (OSError, ValueError):  # macOS has no SC_AVPHYS_PAGES
        available = math.nan
    return available, total


def _synchronize(device: torch.device) -> None:
    """Wait for queued kernels so wall time covers them (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _current_bytes(device: torch.device) -> float:
    """Bytes in use now: allocated tensors on CUDA/MPS, the process's RSS on the CPU."""
    if device.type == "cuda":
        return float(torch.cuda.memory_allocated(device))
    if device.type == "mps":
        return float(torch.mps.current_allocated_memory())
    return _rss_bytes()


def _peak_bytes(device: torch.device) -> float:
    """The peak the line reports (see :class:`Profile` for what it is per device)."""
    if device.type == "cuda":
        return float(torch.cuda.max_memory_allocated(device))
    if device.type == "mps":
        return float(torch.mps.driver_allocated_memory())
    return _peak_rss_bytes()


@contextlib.contextmanager
def gpu_profile(
    label: str,
    *,
    device: str | int | torch.device | None = None,
    file: IO[str] | None = None,
) -> Iterator[Profile]:
    """Time a block and measure its memory; print one line and fill the yielded :class:`Profile`.

    The wall time is bracketed by ``synchronize`` on CUDA and MPS, so it covers the block's
    kernels. On CUDA the peak statistics are reset at entry and the line shows
    ``max_memory_allocated`` and the change of ``memory_allocated``; on MPS the memory the
    driver holds at exit and the change of allocated memory; on the CPU (also when no
    accelerator is present) the process's peak RSS since start and the change of its current
    RSS. GB = 10**9 bytes. If the block raises, nothing is printed and the error propagates.

    Args:
        label: name shown in brackets.
        device: the device to measure; ``None`` picks CUDA, then MPS, then the CPU.
        file: where the line goes (default: ``sys.stdout``).

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> with gpu_profile("forward pass", device="cpu", file=out) as prof:
        ...     _ = [0] * 1000
        >>> out.getvalue().startswith("[forward pass] ") and "| peak RSS" in out.getvalue()
        True
    """
    if not isinstance(label, str):
        raise TypeError(f"gpu_profile label={label!r} must be a str, e.g. 'forward pass'")
    resolved = _resolve_device(device)
    profile = Profile(label, str(resolved), _KINDS[resolved.type])
    _synchronize(resolved)
    if resolved.type == "cuda":
        torch.cuda.reset_peak_memory_stats(resolved)
    start_bytes = _current_bytes(resolved)
    start = time.perf_counter()
    yield profile
    _synchronize(resolved)
    profile.seconds = time.perf_counter() - start
    profile.peak_gb = _peak_bytes(resolved) / _GB
    profile.delta_gb = (_current_bytes(resolved) - start_bytes) / _GB
    print(profile, file=sys.stdout if file is None else file)


def memory_stats(device: str | int | torch.device | None = None) -> dict[str, float]:
    """A memory snapshot in GB (10**9 bytes): ``allocated``, ``reserved``, ``free``, ``total``.

    * CUDA: ``allocated`` = tensors (``memory_allocated``), ``reserved`` = held by PyTorch's
      caching allocator (``memory_reserved``), ``free`` / ``total`` = the whole GPU
      (``mem_get_info``, other processes included).
    * MPS: ``allocated`` = tensors (``current_allocated_memory``), ``reserved`` = held by the
      Metal driver (``driver_allocated_memory``), ``total`` = ``recommended_max_memory``,
      ``free`` = ``total - reserved`` (at least 0).
    * CPU (the default when no accelerator is present): ``allocated`` = ``reserved`` = this
      process's resident set size, ``free`` / ``total`` = the system's available and total
      memory (``/proc/meminfo``, else ``os.sysconf``; NaN where neither tells).

    Args:
        device: the device to read; ``None`` picks CUDA, then MPS, then the CPU.

    Example:
        >>> stats = memory_stats("cpu")
        >>> sorted(stats), stats["free"] <= stats["total"]
        (['allocated', 'free', 'reserved', 'total'], True)
    """
    resolved = _resolve_device(device)
    if resolved.type == "cuda":
        free_bytes, total_bytes = torch.cuda.mem_get_info(resolved)
        free, total = float(free_bytes), float(total_bytes)
        allocated = float(torch.cuda.memory_allocated(resolved))
        reserved = float(torch.cuda.memory_reserved(resolved))
    elif resolved.type == "mps":
        allocated = float(torch.mps.current_allocated_memory())
        reserved = float(torch.mps.driver_allocated_memory())
        total = float(torch.mps.recommended_max_memory())
        free = max(total - reserved, 0.0)
    else:
        allocated = reserved = _rss_bytes()
        free, total = _system_memory_bytes()
    return {
        "allocated": allocated / _GB,
        "reserved": reserved / _GB,
        "free": free / _GB,
        "total": total / _GB,
    }


def find_cuda_tensors(min_mb: float = 0.0) -> list[tuple[torch.Size, torch.dtype, str, float]]:
    """Live CUDA tensors as ``(shape, dtype, device, size MB)``, largest first; ``[]`` without CUDA.

    Walks the objects the garbage collector tracks, so it finds tensors still referenced after
    a cleanup (a leak). Objects whose inspection raises are skipped; views are listed apiece
    (they share their base's memory). Sizes are in MB (10**6 bytes), rounded to 2 decimals.

    Args:
        min_mb: leave out tensors smaller than this many MB.

    Example:
        >>> all(size >= 10.0 for *_, size in find_cuda_tensors(min_mb=10.0))
        True
    """
    threshold = check_float("find_cuda_tensors", "min_mb", min_mb, lo=0.0)
    if not torch.cuda.is_available():
        return []
    found: list[tuple[torch.Size, torch.dtype, str, float]] = []
    with warnings.catch_warnings():  # touching deprecated module objects warns; not ours to say
        warnings.simplefilter("ignore")
        for obj in gc.get_objects():
            try:
                if not (isinstance(obj, torch.Tensor) and obj.is_cuda):
                    continue
                size_mb = obj.numel() * obj.element_size() / _MB
                entry = (obj.shape, obj.dtype, str(obj.device), size_mb)
            except Exception:  # a proxy or half-built object; not a tensor we can size
                continue
            if size_mb >= threshold:
                found.append(entry)
    found.sort(key=lambda entry: entry[3], reverse=True)
    return [(shape, dtype, dev, round(size, 2)) for shape, dtype, dev, size in found]


def bandwidth_report(data_gb: float, elapsed: float) -> str:
    """``"4.6GB in 0.19s = 24.2 GB/s"``: data moved (GB = 10**9 bytes) over seconds taken.

    Args:
        data_gb: data moved, in GB (finite, >= 0).
        elapsed: seconds it took (finite, > 0).

    Example:
        >>> bandwidth_report(data_gb=4.6, elapsed=0.19)
        '4.6GB in 0.19s = 24.2 GB/s'
    """
    data = check_float("bandwidth_report", "data_gb", data_gb, lo=0.0)
    seconds = check_float("bandwidth_report", "elapsed", elapsed, lo=0.0)
    if seconds == 0:
        fix = "Measure a block that took time (e.g. with time.perf_counter before and after)."
        raise invalid("bandwidth_report", "elapsed", elapsed, "a finite number > 0", fix)
    rate = _number_text(data / seconds)
    return f"{_number_text(data)}GB in {_number_text(seconds)}s = {rate} GB/s"


def _number_text(value: float) -> str:
    """Three significant digits below 100 (``4.6``, ``0.19``, ``24.2``), whole numbers above."""
    return f"{value:.3g}" if value < 100 else f"{value:.0f}"


def tensor_size_gb(shape: Sequence[int], dtype: torch.dtype = torch.bfloat16) -> float:
    """Bytes a dense tensor of ``shape`` and ``dtype`` takes, in GB (10**9 bytes).

    Args:
        shape: the dimensions, whole numbers >= 0 (a tuple, list or ``torch.Size``).
        dtype: the element type (default ``torch.bfloat16``, 2 bytes).

    Example:
        >>> round(tensor_size_gb((64, 300, 2304)), 4)
        0.0885
        >>> tensor_size_gb((1000, 1000), torch.float32)
        0.004
    """
    if isinstance(shape, str | bytes) or not isinstance(shape, Sequence):
        raise TypeError(
            f"tensor_size_gb shape={shape!r} must be a sequence of whole numbers; "
            "pass a tuple such as (64, 300, 2304) (a single dimension as (n,))"
        )
    if not isinstance(dtype, torch.dtype):
        raise TypeError(
            f"tensor_size_gb dtype={dtype!r} must be a torch.dtype, e.g. torch.bfloat16"
        )
    numel = 1
    for dim in shape:
        numel *= _dimension(shape, dim)
    return numel * dtype.itemsize / _GB


def _dimension(shape: Any, dim: Any) -> int:
    """One dimension of ``shape`` as an int >= 0, or a ValueError naming it."""
    if not isinstance(dim, bool):
        with contextlib.suppress(TypeError):
            size = operator.index(dim)
            if size >= 0:
                return size
    fix = f"Dimension {dim!r} is not a whole number >= 0; use ints such as (64, 300, 2304)."
    raise invalid("tensor_size_gb", "shape", shape, "a sequence of ints >= 0", fix)
