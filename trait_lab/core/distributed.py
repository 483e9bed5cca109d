"""Data-parallel runs under ``torchrun``: which rank this process is, and how ranks agree.

``torchrun --nproc_per_node=N -m trait_lab extract …`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and ``MASTER_ADDR``/``MASTER_PORT`` in their environment.
:func:`current_ranks` reads them and joins the default process group once (``gloo`` on CPU,
``nccl`` when CUDA is available, or ``TRAIT_LAB_DIST_BACKEND``); without them it returns the
single-process :class:`Ranks` (rank 0 of 1), on which every method is a no-op, so one code path
serves both. Work is split by :meth:`Ranks.mine` (round-robin over the units still pending, so a
rerun with another N resumes from what is done); data moves between ranks only through files,
which must therefore sit on a file system every rank sees (a shared folder on a cluster).

Example:
    >>> ranks = Ranks()  # one process
    >>> ranks.mine(["a", "b", "c"]), ranks.main
    (['a', 'b', 'c'], True)
    >>> Ranks(rank=1, world=2).mine(["a", "b", "c"])
    ['b']
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = ["BACKEND_ENV", "RankFailedError", "Ranks", "current_ranks"]

T = TypeVar("T")

BACKEND_ENV = "TRAIT_LAB_DIST_BACKEND"
"""Overrides the process-group backend (``gloo`` or ``nccl``)."""

_TIMEOUT = datetime.timedelta(minutes=60)  # a rank may wait this long for a slow one


class RankFailedError(RuntimeError):
    """Another rank of a ``torchrun`` job failed; this one stops too (its message names it)."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in a data-parallel job: ``rank`` of ``world`` (``0`` of ``1`` alone).

    Example:
        >>> Ranks(rank=0, world=3).mine(range(7))
        [0, 3, 6]
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this is rank 0, the one that merges shards and writes the usual outputs."""
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        """Whether the work is split over more than one process."""
        return self.world > 1

    def mine(self, units: Sequence[T]) -> list[T]:
        """This rank's share of ``units``: every ``world``-th one, starting at ``rank``.

        Example:
            >>> Ranks(rank=1, world=2).mine([10, 11, 12, 13])
            [11, 13]
        """
        every: list[T] = list(units)
        return every[self.rank :: self.world]

    def barrier(self) -> None:
        """Wait until every rank gets here (nothing alone)."""
        if self.sharded:
            dist.barrier()

    def agree(self, error: BaseException | None) -> None:
        """Every rank says whether its step failed; all raise if any did.

        A rank whose own step failed re-raises its ``error``; the others raise
        :class:`RankFailedError` naming the failed rank and its message, so no rank waits
        forever at the next barrier for one that stopped.

        Example:
            >>> Ranks().agree(None)  # alone: re-raises ``error`` if given, else nothing
        """
        messages = self.gather(None if error is None else f"{type(error).__name__}: {error}")
        if error is not None:
            raise error
        failed = [(rank, text) for rank, text in enumerate(messages) if text is not None]
        if failed:
            rank, text = failed[0]
            raise RankFailedError(
                f"rank {rank} of {self.world} failed, so rank {self.rank} stops too: {text}"
            )

    @contextlib.contextmanager
    def together(self) -> Iterator[None]:
        """A block every rank runs on its own share; if it fails on any rank, all raise.

        Use it (not a bare :meth:`barrier`) after per-rank work: a rank whose block failed
        re-raises its error, the others raise :class:`RankFailedError` with its message
        (:meth:`agree`), instead of losing the connection at the next collective.

        Example:
            >>> with Ranks().together():
            ...     done = sum(Ranks().mine([1, 2, 3]))
        """
        error: Exception | None = None
        try:
            yield
        except Exception as exc:  # told to every rank, then re-raised here
            error = exc
        self.agree(error)

    def on_main(self, step: Callable[[], T]) -> T:
        """Run ``step`` on rank 0 only and hand its result (picklable) to every rank.

        A failure on rank 0 raises there and, as :class:`RankFailedError`, on every other rank.

        Example:
            >>> Ranks().on_main(lambda: 41 + 1)
            42
        """
        result: Any = None
        with self.together():  # rank 0's failure is handed to the others, re-raised there
            if self.main:
                result = step()
        if self.sharded:
            box = [result]
            dist.broadcast_object_list(box, src=0)
            result = box[0]
        return result

    def gather(self, value: T) -> list[T]:
        """Every rank's ``value`` (picklable), in rank order, on every rank.

        Example:
            >>> Ranks().gather(3)
            [3]
        """
        if not self.sharded:
            return [value]
        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, value)
        return gathered

    def device(self) -> torch.device:
        """The device this rank computes on: ``cuda:<local rank>`` when CUDA is used, else CPU.

        Example:
            >>> Ranks().device().type in ("cpu", "cuda")
            True
        """
        if self.sharded and _backend() == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")

    def model_device(self) -> str | None:
        """The ``device=`` to load this rank's model with: its own device under ``torchrun``,
        ``None`` (the loader's default) alone.

        Example:
            >>> Ranks().model_device() is None
            True
        """
        return str(self.device()) if self.sharded else None


def _int_env(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(
            f"the environment variable {name}={text!r} is not a whole number; it is set by "
            "torchrun (launch with `torchrun --nproc_per_node=N -m trait_lab …`) — unset it "
            "to run in one process"
        ) from None


def _backend() -> str:
    chosen = os.environ.get(BACKEND_ENV)
    if chosen is None:
        return "nccl" if torch.cuda.is_available() else "gloo"
    if chosen not in ("gloo", "nccl"):
        raise ValueError(f"{BACKEND_ENV}={chosen!r}: choose 'gloo' (CPU) or 'nccl' (GPUs)")
    return chosen


def current_ranks(env: Mapping[str, str] | None = None) -> Ranks:
    """The :class:`Ranks` of this process, joining the process group on first use.

    Reads ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` (set by ``torchrun``); without
    ``WORLD_SIZE`` (or with 1) this is a single-process run and nothing is initialized.

    Example:
        >>> current_ranks({})
        Ranks(rank=0, world=1, local_rank=0)
    """
    env = os.environ if env is None else env
    world = _int_env(env, "WORLD_SIZE", 1)
    rank = _int_env(env, "RANK", 0)
    local = _int_env(env, "LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(
            f"RANK={rank} and WORLD_SIZE={world} do not make a job (need 0 <= RANK < WORLD_SIZE);"
            " launch with torchrun, or unset both to run in one process"
        )
    if world == 1:
        return Ranks()
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in env]
    if missing:
        raise ValueError(
            f"WORLD_SIZE={world} but {', '.join(missing)} is not set: launch with "
            "`torchrun --nproc_per_node=N -m trait_lab …` (it sets them), or unset WORLD_SIZE"
        )
    if not dist.is_initialized():
        backend = _backend()
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=_TIMEOUT)
    return Ranks(rank=rank, world=world, local_rank=local)
