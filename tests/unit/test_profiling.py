"""trait_lab.core.profiling: the CPU path for real, the CUDA and MPS paths through faked torch.

Ground truth comes from elsewhere: the kernel's /proc/self/status (VmRSS, VmHWM) for process
memory, ``os.sysconf`` for the machine's memory, ``Tensor.nbytes`` for sizes, and plain
arithmetic for the numbers the faked allocator reports.
"""

from __future__ import annotations

import io
import math
import mmap
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from trait_lab.core.profiling import (
    Profile,
    bandwidth_report,
    find_cuda_tensors,
    gpu_profile,
    memory_stats,
    tensor_size_gb,
)
from trait_lab.testing import tiny_model

LINE = re.compile(
    r"^\[(?P<label>[^\]]+)\] (?P<seconds>\d+\.\d\d)s \| (?P<peak_word>peak RSS|peak|driver) "
    r"(?P<peak>\d+\.\d{1,2})GB \| (?P<delta_word>delta RSS|delta) (?P<delta>[+-]\d+\.\d{1,2})GB$"
)
LINUX_PROC = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="needs Linux /proc for the ground truth"
)
NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def proc_status_gb(field: str) -> float:
    """A memory field of /proc/self/status (kB) in GB (10**9 bytes)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / 1e9
    raise AssertionError(f"{field} missing from /proc/self/status")


def no_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


class FakeCuda:
    """Stands in for torch.cuda's allocator calls; records what was called, in order."""

    def __init__(self, allocated: list[float], peak: float, sync_sleep: float = 0.0) -> None:
        self.calls: list[str] = []
        self.allocated = iter(allocated)
        self.peak = peak
        self.sync_sleep = sync_sleep

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        cuda = torch.cuda
        monkeypatch.setattr(cuda, "is_available", lambda: True)
        monkeypatch.setattr(cuda, "device_count", lambda: 1)
        monkeypatch.setattr(cuda, "synchronize", self.synchronize)
        monkeypatch.setattr(cuda, "reset_peak_memory_stats", self.reset)
        monkeypatch.setattr(cuda, "memory_allocated", self.memory_allocated)
        monkeypatch.setattr(cuda, "max_memory_allocated", self.max_memory_allocated)
        monkeypatch.setattr(cuda, "memory_reserved", lambda device=None: 8.0e9)
        monkeypatch.setattr(cuda, "mem_get_info", lambda device=None: (40.0e9, 50.8e9))

    def synchronize(self, device: Any = None) -> None:
        self.calls.append(f"synchronize {device}")
        time.sleep(self.sync_sleep)

    def reset(self, device: Any = None) -> None:
        self.calls.append(f"reset {device}")

    def memory_allocated(self, device: Any = None) -> float:
        self.calls.append(f"allocated {device}")
        return next(self.allocated)

    def max_memory_allocated(self, device: Any = None) -> float:
        self.calls.append(f"max {device}")
        return self.peak


class TestCpuProfile:
    @LINUX_PROC
    def test_allocation_shows_in_rss_delta_and_peak(self) -> None:
        # A fresh anonymous mapping, every page touched: new resident memory even late in a
        # long test session, where malloc may hand back pages that are already resident.
        rss_before = proc_status_gb("VmRSS")
        with gpu_profile("alloc", device="cpu", file=io.StringIO()) as prof:
            block = mmap.mmap(-1, 200_000_000)
            np.frombuffer(block, dtype=np.uint8)[:: mmap.PAGESIZE] = 1
        rss_after, hwm_after = proc_status_gb("VmRSS"), proc_status_gb("VmHWM")
        assert len(block) == 200_000_000
        assert prof.kind == "process_rss" and prof.device == "cpu"
        assert prof.delta_gb > 0.15
        assert prof.delta_gb == pytest.approx(rss_after - rss_before, abs=0.05)
        assert prof.peak_gb == pytest.approx(hwm_after, abs=0.05)
        assert prof.peak_gb >= rss_after - 0.01

    def test_seconds_within_perf_counter_bounds(self) -> None:
        outer_start = time.perf_counter()
        with gpu_profile("sleep", device="cpu", file=io.StringIO()) as prof:
            time.sleep(0.05)
        outer = time.perf_counter() - outer_start
        assert 0.05 <= prof.seconds <= outer

    def test_prints_one_line_to_stdout(self, capsys: pytest.CaptureFixture[str]) -> None:
        with gpu_profile("forward pass", device="cpu") as prof:
            pass
        out = capsys.readouterr().out
        assert out.count("\n") == 1
        match = LINE.match(out.rstrip("\n"))
        assert match is not None, out
        assert match["label"] == "forward pass"
        assert (match["peak_word"], match["delta_word"]) == ("peak RSS", "delta RSS")
        assert float(match["seconds"]) == pytest.approx(prof.seconds, abs=0.006)
        assert float(match["peak"]) == pytest.approx(prof.peak_gb, abs=0.06)
        assert out.rstrip("\n") == str(prof)

    def test_no_accelerator_falls_back_to_rss(self, monkeypatch: pytest.MonkeyPatch) -> None:
        no_accelerator(monkeypatch)
        out = io.StringIO()
        with gpu_profile("plain", file=out) as prof:
            pass
        assert prof.kind == "process_rss" and "| peak RSS " in out.getvalue()

    def test_times_a_tiny_model_forward(self) -> None:
        model = tiny_model("llama")
        out = io.StringIO()
        with gpu_profile("forward", device="cpu", file=out) as prof, torch.no_grad():
            logits = model(torch.tensor([[1, 2, 3]])).logits
        assert logits.shape[:2] == (1, 3)
        assert out.getvalue().startswith("[forward] ") and prof.seconds > 0

    def test_an_error_in_the_block_propagates_and_prints_nothing(self) -> None:
        out = io.StringIO()
        with (
            pytest.raises(RuntimeError, match="boom"),
            gpu_profile("x", device="cpu", file=out) as prof,
        ):
            raise RuntimeError("boom")
        assert out.getvalue() == "" and math.isnan(prof.seconds)

    def test_profile_text_formats(self) -> None:
        assert str(Profile("load", "cpu", "process_rss", 0.5, 1.25, 0.25)) == (
            "[load] 0.50s | peak RSS 1.2GB | delta RSS +0.25GB"
        )
        assert str(Profile("x", "cuda:0", "cuda_allocated", 1.0, 0.5, -2.0)) == (
            "[x] 1.00s | peak 0.50GB | delta -2.0GB"
        )
        assert "peak RSS n/a" in str(Profile("x", "cpu", "process_rss", 1.0, math.nan, 0.0))


class TestFakedCuda:
    def test_line_numbers_and_call_order(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        fake = FakeCuda(allocated=[2.0e9, 4.1e9], peak=12.3e9, sync_sleep=0.05)
        fake.install(monkeypatch)
        outer_start = time.perf_counter()
        with gpu_profile("forward pass") as prof:
            fake.calls.append("block")
        outer = time.perf_counter() - outer_start
        assert fake.calls == [
            "synchronize cuda",
            "reset cuda",
            "allocated cuda",
            "block",
            "synchronize cuda",
            "max cuda",
            "allocated cuda",
        ]
        # the exit synchronize (0.05 s) is timed, the entry one (0.05 s) is not
        assert 0.05 <= prof.seconds <= outer - 0.05
        assert (prof.device, prof.kind) == ("cuda", "cuda_allocated")
        assert prof.peak_gb == pytest.approx(12.3) and prof.delta_gb == pytest.approx(2.1)
        out = capsys.readouterr().out.rstrip("\n")
        assert re.fullmatch(r"\[forward pass\] 0\.\d\ds \| peak 12\.3GB \| delta \+2\.1GB", out)

    def test_explicit_index_is_passed_through(self, monkeypatch: pytest.MonkeyPatch) -> None:
        fake = FakeCuda(allocated=[1.0e9, 0.5e9], peak=1.5e9)
        fake.install(monkeypatch)
        with gpu_profile("free", device="cuda:0", file=io.StringIO()) as prof:
            pass
        assert all(call.endswith("cuda:0") for call in fake.calls)
        assert prof.delta_gb == pytest.approx(-0.5) and prof.device == "cuda:0"

    def test_memory_stats(self, monkeypatch: pytest.MonkeyPatch) -> None:
        FakeCuda(allocated=[5.2e9], peak=0.0).install(monkeypatch)
        stats = memory_stats()
        assert stats == pytest.approx(
            {"allocated": 5.2, "reserved": 8.0, "free": 40.0, "total": 50.8}
        )

    def test_device_beyond_the_count_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        FakeCuda(allocated=[], peak=0.0).install(monkeypatch)
        with pytest.raises(ValueError, match=r"'cuda:3'.*1 CUDA device"):
            memory_stats("cuda:3")


class TestFakedMps:
    def test_profile_and_stats(self, monkeypatch: pytest.MonkeyPatch) -> None:
        allocated: Iterator[int] = iter([1_000_000_000, 1_500_000_000, 2_000_000_000])
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
        monkeypatch.setattr(torch.mps, "synchronize", lambda: None)
        monkeypatch.setattr(torch.mps, "current_allocated_memory", lambda: next(allocated))
        monkeypatch.setattr(torch.mps, "driver_allocated_memory", lambda: 3_000_000_000)
        monkeypatch.setattr(torch.mps, "recommended_max_memory", lambda: 16_000_000_000)
        out = io.StringIO()
        with gpu_profile("mps", file=out) as prof:
            pass
        assert (prof.kind, prof.peak_gb, prof.delta_gb) == ("mps_allocated", 3.0, 0.5)
        assert out.getvalue().endswith("| driver 3.0GB | delta +0.50GB\n")
        stats = memory_stats()
        assert stats == pytest.approx(
            {"allocated": 2.0, "reserved": 3.0, "free": 13.0, "total": 16.0}
        )


class TestMemoryStats:
    def test_cpu_keys_and_sanity(self) -> None:
        stats = memory_stats("cpu")
        assert sorted(stats) == ["allocated", "free", "reserved", "total"]
        assert all(value > 0 for value in stats.values())
        assert stats["free"] <= stats["total"]
        assert stats["allocated"] == stats["reserved"]

    @LINUX_PROC
    def test_cpu_values_match_the_kernel(self) -> None:
        stats = memory_stats("cpu")
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 1e9
        assert stats["total"] == pytest.approx(total, rel=0.01)
        assert stats["allocated"] == pytest.approx(proc_status_gb("VmRSS"), abs=0.05)

    def test_default_without_accelerator_is_cpu(self, monkeypatch: pytest.MonkeyPatch) -> None:
        no_accelerator(monkeypatch)
        assert sorted(memory_stats()) == ["allocated", "free", "reserved", "total"]


class TestFindCudaTensors:
    def test_empty_without_cuda(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        keep = torch.zeros(10)
        assert find_cuda_tensors() == [] and keep.numel() == 10

    def test_scan_sizes_sorts_filters_and_skips_broken(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Every tensor pretends to be on CUDA, so the gc scan runs on CPU tensors."""

        class Broken(torch.Tensor):
            def numel(self) -> int:
                raise RuntimeError("cannot inspect")

        class NoClass:
            @property
            def __class__(self) -> type:
                raise RuntimeError("cannot inspect")

        big = torch.zeros(1000, 1000)  # 4.0 MB
        medium = torch.zeros(64, 300, 2304, dtype=torch.bfloat16)  # the seed's 88.47 MB
        broken = torch.Tensor._make_subclass(Broken, torch.zeros(3_000_000))
        odd = NoClass()
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.Tensor, "is_cuda", property(lambda self: True))
        found = find_cuda_tensors(min_mb=3.9)
        assert (torch.Size([64, 300, 2304]), torch.bfloat16, "cpu", 88.47) in found
        assert (torch.Size([1000, 1000]), torch.float32, "cpu", 4.0) in found
        sizes = [size for *_, size in found]
        assert sizes == sorted(sizes, reverse=True) and min(sizes) >= 3.9
        assert medium.nbytes / 1e6 == pytest.approx(88.47, abs=0.005)
        assert type(broken) is Broken and big.numel() and odd is not None

    @NEEDS_CUDA
    def test_finds_a_real_cuda_tensor(self) -> None:
        leak = torch.empty(64, 300, 2304, dtype=torch.bfloat16, device="cuda")
        found = find_cuda_tensors(min_mb=80)
        assert (leak.shape, torch.bfloat16, str(leak.device), 88.47) in found

    @pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, "1", True])
    def test_bad_min_mb(self, bad: Any) -> None:
        with pytest.raises(ValueError, match="min_mb"):
            find_cuda_tensors(min_mb=bad)


@NEEDS_CUDA
def test_real_cuda_profile_sees_an_allocation() -> None:
    out = io.StringIO()
    with gpu_profile("alloc", device="cuda", file=out) as prof:
        block = torch.ones(64, 300, 2304, dtype=torch.bfloat16, device="cuda")
    assert prof.delta_gb == pytest.approx(block.nbytes / 1e9, abs=0.01)
    assert prof.peak_gb >= prof.delta_gb and out.getvalue().startswith("[alloc] ")


class TestBandwidthReport:
    def test_seed_value(self) -> None:
        assert bandwidth_report(data_gb=4.6, elapsed=0.19) == "4.6GB in 0.19s = 24.2 GB/s"

    def test_small_and_large(self) -> None:
        assert bandwidth_report(0.0885, 0.001) == "0.0885GB in 0.001s = 88.5 GB/s"
        assert bandwidth_report(300, 2) == "300GB in 2s = 150 GB/s"

    @pytest.mark.parametrize(
        ("data_gb", "elapsed", "name"),
        [
            (4.6, 0, "elapsed"),
            (4.6, -0.1, "elapsed"),
            (4.6, math.nan, "elapsed"),
            (4.6, math.inf, "elapsed"),
            (-1.0, 0.19, "data_gb"),
            (math.nan, 0.19, "data_gb"),
            (math.inf, 0.19, "data_gb"),
            ("4.6", 0.19, "data_gb"),
        ],
    )
    def test_bad_inputs(self, data_gb: Any, elapsed: Any, name: str) -> None:
        with pytest.raises(ValueError, match=rf"bandwidth_report\.{name}=.*expected"):
            bandwidth_report(data_gb, elapsed)


class TestTensorSizeGb:
    def test_seed_value(self) -> None:
        size = tensor_size_gb((64, 300, 2304))
        assert size == pytest.approx(64 * 300 * 2304 * 2 / 1e9)
        assert abs(size - 0.089) < 0.001  # the seed prints 0.089; decimal GB gives 0.08847

    @pytest.mark.parametrize(
        "dtype", [torch.bfloat16, torch.float16, torch.float32, torch.float64, torch.int8]
    )
    def test_matches_nbytes(self, dtype: torch.dtype) -> None:
        shape = (3, 5, 7)
        expected = torch.empty(shape, dtype=dtype).nbytes / 1e9
        assert tensor_size_gb(shape, dtype) == pytest.approx(expected)

    def test_other_shape_types(self) -> None:
        assert tensor_size_gb(torch.Size([10, 10]), torch.float32) == pytest.approx(400 / 1e9)
        assert tensor_size_gb([np.int64(10), 10], torch.float32) == pytest.approx(400 / 1e9)
        assert tensor_size_gb((0, 5)) == 0.0
        assert tensor_size_gb(()) == pytest.approx(2 / 1e9)

    @pytest.mark.parametrize("shape", [(-1, 3), (2.5, 3), ("a",), (True, 2), (None,)])
    def test_bad_dimensions(self, shape: Any) -> None:
        with pytest.raises(ValueError, match=r"tensor_size_gb\.shape=.*whole number"):
            tensor_size_gb(shape)

    @pytest.mark.parametrize("shape", [5, "64", None])
    def test_bad_shape_types(self, shape: Any) -> None:
        with pytest.raises(TypeError, match=r"shape=.*tuple"):
            tensor_size_gb(shape)

    def test_bad_dtype(self) -> None:
        with pytest.raises(TypeError, match=r"torch\.dtype"):
            tensor_size_gb((2, 2), "bf16")


class TestBadInputs:
    @pytest.mark.parametrize(
        ("device", "match"),
        [
            ("gpu", "not a device"),
            (1.5, "not a device"),
            ("meta", "expected one of"),
        ],
    )
    def test_bad_device(self, device: Any, match: str) -> None:
        with pytest.raises(ValueError, match=match):
            memory_stats(device)
        with pytest.raises(ValueError, match=match), gpu_profile("x", device=device):
            pass

    def test_missing_accelerator_named(self, monkeypatch: pytest.MonkeyPatch) -> None:
        no_accelerator(monkeypatch)
        with pytest.raises(ValueError, match=r"device='cuda' but CUDA is not available"):
            memory_stats("cuda")
        with pytest.raises(ValueError, match=r"device='mps' but MPS is not available"):
            memory_stats("mps")

    def test_label_must_be_text(self) -> None:
        with pytest.raises(TypeError, match="label=3"), gpu_profile(3, device="cpu"):
            pass
