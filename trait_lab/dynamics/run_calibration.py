"""A variant's first calibration, from an inference run's own prompts, with any number of ranks.

Records carry the massive dims' values, so the calibration must exist before the first record
is written. On a variant's first run :func:`calibrate_from_run` watches the prefill of the run's
prompts, topped up with the neutral prompt set until it has its ~5000 tokens (or the set runs
out), and finalizes ``calibration.json``; later runs find the file and skip all of this.

Alone, one process feeds the texts in order to a
:class:`~trait_lab.dynamics.massive.MassiveDimCollector`, whose saved state lets a killed run
resume. Under ``torchrun`` the same texts are shared among the ranks: rank 0 decides how many
tokens each text counts (the collector's own rule), each rank measures its texts
(:meth:`~trait_lab.dynamics.massive.MassiveDimCollector.measure`) and writes one file per text
to ``massive_activations/.units-<inputs>/``, and rank 0 merges them in text order — the same
additions in the same order, so the calibration equals one process's bit for bit. A killed
sharded run resumes from those files with any number of ranks (also one).

Example:
    >>> calibrate_from_run(model, tok, "demo", "instruct", None, ["Hi"])  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from trait_lab.core.atomic import atomic_write
from trait_lab.core.distributed import Ranks
from trait_lab.core.paths import calibration_path
from trait_lab.core.runs import ResumableRun
from trait_lab.dynamics.calibration import ensure_calibration, passive_collector
from trait_lab.dynamics.massive import NEUTRAL_PROMPTS, MassiveDimCollector, Stats
from trait_lab.models.architectures import input_device
from trait_lab.prompts.formatting import PromptLike, encode_text, format_prompt, uses_chat_template

__all__ = ["calibrate_from_run"]

_Budgets = list[tuple[int, int]]  # (text index, tokens it counts)


def calibrate_from_run(
    model: nn.Module,
    tokenizer: Any,
    experiment: str,
    variant: str,
    root: str | os.PathLike[str] | None,
    prompts: Sequence[PromptLike],
    progress: bool = False,
    ranks: Ranks | None = None,
) -> dict[str, Any]:
    """The variant's calibration; on its first run, collected from these prompts (module doc).

    Every rank of a ``torchrun`` job calls this with the same arguments and gets the record.
    """
    ranks = ranks or Ranks()
    chat = uses_chat_template(tokenizer)
    texts = [format_prompt(tokenizer, p) for p in [*prompts, *NEUTRAL_PROMPTS]]
    inputs = hashlib.sha256(json.dumps([chat, texts]).encode()).hexdigest()[:16]
    ids = [encode_text(tokenizer, text, chat=chat) for text in texts]
    units = calibration_path(experiment, variant, root).with_name(f".units-{inputs}")
    collector: Any = None

    def plan() -> _Budgets | None:  # rank 0: None (calibrated, or one process) or the units
        nonlocal collector
        collector = passive_collector(model, experiment, variant, root, inputs=inputs)
        if not isinstance(collector, MassiveDimCollector):
            return None
        if not ranks.sharded and not units.exists():  # alone and no sharded run to resume
            _alone(model, ids, collector, progress)
            return None
        return _budgets(collector, [len(x) for x in ids])

    budgets = ranks.on_main(plan)
    if budgets is not None:
        _sharded(model, ids, budgets, units, ranks, progress, collector)
    ranks.barrier()
    return ensure_calibration(model, tokenizer, experiment, variant, root)


def _budgets(collector: MassiveDimCollector, lengths: list[int]) -> _Budgets:
    """Which texts the collector still needs and how many tokens each counts (its own rule:
    texts in order, after the ones it has seen, until ``max_tokens``)."""
    seen, out = collector.tokens_seen, []
    for k in range(collector.forwards_seen, len(lengths)):
        if seen >= collector.max_tokens:
            break
        take = min(lengths[k], collector.max_tokens - seen)
        out.append((k, take))
        seen += take
    return out


def _alone(
    model: nn.Module, ids: list[list[int]], collector: MassiveDimCollector, progress: bool
) -> None:
    """One process: feed the texts in order to the collector (it saves a resumable state)."""
    device = input_device(model)
    bar = tqdm(
        total=collector.max_tokens,
        initial=collector.tokens_seen,
        desc="calibrating",
        unit="token",
        disable=not progress,
    )
    with bar, collector, torch.no_grad():
        for text_ids in ids[collector.forwards_seen :]:  # a resumed state counted the rest
            if collector.done:
                break
            model(input_ids=torch.tensor([text_ids], device=device))
            bar.update(collector.tokens_seen - bar.n)


def _save(path: Path, stats: dict[int, Stats], tokens: int) -> None:
    tensors = {"tokens": torch.tensor(tokens, dtype=torch.int64)}
    for layer, (mx, sm, nrm) in stats.items():
        tensors[f"{layer}.max_abs"] = torch.from_numpy(mx)
        tensors[f"{layer}.sum_abs"] = torch.from_numpy(sm)
        tensors[f"{layer}.sum_norm"] = torch.tensor(nrm, dtype=torch.float64)
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp)))


def _load(path: Path, layers: list[int]) -> tuple[dict[int, Stats], int]:
    stored = load_file(str(path))
    try:
        stats = {
            layer: (
                stored[f"{layer}.max_abs"].numpy(),
                stored[f"{layer}.sum_abs"].numpy(),
                float(stored[f"{layer}.sum_norm"]),
            )
            for layer in layers
        }
        return stats, int(stored["tokens"])
    except KeyError as exc:
        raise ValueError(f"{path} lacks the statistics of layer {exc}") from None


def _sharded(
    model: nn.Module,
    ids: list[list[int]],
    budgets: _Budgets,
    units: Path,
    ranks: Ranks,
    progress: bool,
    collector: MassiveDimCollector | None,
) -> None:
    """Ranks measure their texts into unit files; rank 0 merges them in order and finalizes."""
    probe = collector or MassiveDimCollector(model, units / "unused.json")
    run = ResumableRun(f"calibration units in {units}")
    layers = probe.layers

    def path(k: int) -> Path:
        return units / f"{k:06d}.safetensors"

    def done(k: int) -> bool:
        return run.done(path(k), lambda p: _load(p, layers))

    pending = ranks.on_main(lambda: [(k, n) for k, n in budgets if not done(k)])
    device = input_device(model)
    with ranks.together(), torch.no_grad():  # a failure on any rank stops every rank
        for k, take in tqdm(ranks.mine(pending), desc="calibrating", disable=not progress):
            forward = functools.partial(model, input_ids=torch.tensor([ids[k]], device=device))
            stats, tokens = probe.measure(forward, take)
            run.save(path(k), functools.partial(_save, stats=stats, tokens=tokens))

    def merge() -> None:
        assert collector is not None
        with collector:  # finalizes when full, or on exit with what the texts gave
            for k, _ in budgets:
                collector.merge(*_load(path(k), layers))
        shutil.rmtree(units, ignore_errors=True)

    ranks.on_main(merge)
