"""Running a calibration: explicit (neutral prompts), research mode, and "find or rebuild".

:func:`calibrate` runs prompts through a :class:`~trait_lab.dynamics.massive.MassiveDimCollector`
and writes ``calibration.json`` only once the run is complete (the old file stays otherwise);
:func:`ensure_calibration` returns an experiment variant's calibration, rebuilding it (with a
logged warning saying why) when it is missing, corrupt or made for another model — a bad file
is never used — or, with ``overwrite=True``, whenever asked (``trait-lab calibrate
--overwrite``: from the 50 curated neutral prompts instead of whatever the first inference run
saw); :func:`passive_collector` is what an inference run wraps itself in so that the first run
calibrates for free; :func:`research_calibration` calibrates on a named prompt set, with
per-token output on request (:mod:`trait_lab.dynamics.per_token`).

Every calibration records where its prompts came from: ``prompt_source`` (``"neutral"``,
``"inference"``, a prompt set's name or ``"custom"``) and, for explicit runs, ``n_prompts``.

Before anything is written, the experiment and variant names are checked as folder names
(:func:`~trait_lab.core.paths.check_name`) and, when the experiment has a ``config.json``, the
variant must be one of its model variants (:func:`experiment_variant`); the model is passed in,
so an experiment without a config is allowed (its folder names only where the files go).

Example:
    >>> from trait_lab.core.paths import calibration_path
    >>> calibration_path("demo", "instruct", root="/tmp/x").name
    'calibration.json'
"""

from __future__ import annotations

import functools
import logging
import os
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Literal, overload

import torch
from torch import nn
from tqdm.auto import tqdm

from trait_lab.core.atomic import atomic_write_json
from trait_lab.core.distributed import Ranks, current_ranks
from trait_lab.core.experiments import load_experiment_config
from trait_lab.core.paths import calibration_path, config_path, research_dir
from trait_lab.core.types import ModelVariant
from trait_lab.dynamics.cleaning import dims_to_clean
from trait_lab.dynamics.massive import (
    NEUTRAL_PROMPTS,
    STATE_NAME,
    CalibrationError,
    MassiveDimCollector,
    load_calibration,
)
from trait_lab.dynamics.per_token import PER_TOKEN_NAME, per_token_values
from trait_lab.models.architectures import hidden_size, input_device, n_layers
from trait_lab.models.identity import model_name
from trait_lab.prompts.prompt_sets import load_prompt_set

__all__ = [
    "calibrate",
    "ensure_calibration",
    "experiment_variant",
    "passive_collector",
    "research_calibration",
]

logger = logging.getLogger(__name__)


def experiment_variant(
    experiment: str,
    variant: str,
    root: str | os.PathLike[str] | None = None,
    *,
    required: bool = False,
) -> ModelVariant | None:
    """The experiment's model variant ``variant``, checked before anything is written.

    Both names are checked as folder names first (``ValueError`` naming the value). With a
    ``config.json`` the variant must be one of its variants (``ValueError`` listing them); a
    malformed config raises. Without one: ``FileNotFoundError`` (listing the experiments) when
    ``required`` — the caller must load the variant's model — else ``None``.

    Example:
        >>> experiment_variant("demo", "instruct", root="/nonexistent") is None
        True
    """
    calibration_path(experiment, variant, root)  # check_name on both names
    if not required and not config_path(experiment, root).is_file():
        return None
    return load_experiment_config(experiment, root).variant(variant)


def _batches(tokenizer: Any, prompts: list[str], batch_size: int) -> list[dict[str, Any]]:
    return [
        dict(tokenizer(prompts[i : i + batch_size], return_tensors="pt", padding=True))
        for i in range(0, len(prompts), batch_size)
    ]


def _checked(prompts: Any, batch_size: Any, source: str | None) -> tuple[list[str], str]:
    """The prompts as a list and the name of their source, or a ``ValueError`` / ``TypeError``."""
    if isinstance(prompts, str):
        raise TypeError("prompts is one string; pass a list of prompts (e.g. NEUTRAL_PROMPTS)")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("prompts is empty; pass at least one prompt (e.g. NEUTRAL_PROMPTS)")
    not_text = next((i for i, p in enumerate(prompts) if not isinstance(p, str)), None)
    if not_text is not None:
        bad = prompts[not_text]
        raise TypeError(
            f"prompts[{not_text}] is {bad!r} ({type(bad).__name__}); pass one string per prompt"
        )
    blank = [i for i, p in enumerate(prompts) if not p.strip()]
    if blank:
        raise ValueError(f"prompts {blank} are blank; drop them or give them text")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if source is None:
        source = "neutral" if tuple(prompts) == NEUTRAL_PROMPTS else "custom"
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"source must name the prompts (e.g. 'neutral'), got {source!r}")
    return prompts, source


@overload
def calibrate(
    model: nn.Module,
    tokenizer: Any,
    prompts: list[str] | tuple[str, ...],
    out_path: str | os.PathLike[str],
    per_token: Literal[False] = ...,
    batch_size: int = ...,
    *,
    progress: bool = ...,
    source: str | None = ...,
    ranks: Ranks | None = ...,
) -> dict[str, Any]: ...
@overload
def calibrate(
    model: nn.Module,
    tokenizer: Any,
    prompts: list[str] | tuple[str, ...],
    out_path: str | os.PathLike[str],
    per_token: Literal[True],
    batch_size: int = ...,
    *,
    progress: bool = ...,
    source: str | None = ...,
    ranks: Ranks | None = ...,
) -> tuple[dict[str, Any], dict[str, Any]]: ...
def calibrate(
    model: nn.Module,
    tokenizer: Any,
    prompts: list[str] | tuple[str, ...],
    out_path: str | os.PathLike[str],
    per_token: bool = False,
    batch_size: int = 8,
    *,
    progress: bool = False,
    source: str | None = None,
    ranks: Ranks | None = None,
) -> dict[str, Any] | tuple[dict[str, Any], dict[str, Any]]:
    """Explicit calibration on ``prompts`` (every token counts); writes and returns the record.

    Starts fresh (any saved collector state at ``out_path`` is discarded) and replaces the file
    at ``out_path`` atomically once every pass has run: if a pass fails, the old file is left as
    it was and no collector state stays behind. The record notes ``prompt_source`` (``source``;
    by default ``"neutral"`` for :data:`NEUTRAL_PROMPTS`, else ``"custom"``) and ``n_prompts``.
    ``per_token=True`` (research mode) runs a second pass and also returns the per-token table
    of the massive dims (the candidates plus the ``"top5"`` clean-option dims), written to
    ``per_token.json`` beside ``out_path`` (layout: :mod:`trait_lab.dynamics.per_token`).
    ``tokenizer(texts, return_tensors="pt", padding=True)`` must return ids and a mask.
    ``progress`` shows a bar per pass. Under ``torchrun`` (``ranks``, default
    :func:`~trait_lab.core.distributed.current_ranks`) the batches are shared among the ranks
    and merged exactly; rank 0 writes the files (and computes the per-token table alone).

    Example:
        >>> calibrate(model, tokenizer, NEUTRAL_PROMPTS, "calibration.json")  # doctest: +SKIP
    """
    prompts, source = _checked(prompts, batch_size, source)
    ranks = ranks or current_ranks()
    out_path = Path(out_path)
    batches = _batches(tokenizer, prompts, batch_size)
    state = out_path.with_name(STATE_NAME)
    ranks.on_main(lambda: state.unlink(missing_ok=True))
    table: dict[str, Any] | None = None
    try:
        record = _collect(model, batches, out_path, progress, ranks)
        record.update(prompt_source=source, n_prompts=len(prompts))
        if per_token:  # research output: rank 0 alone
            dims = sorted(set(record["candidates"]) | set(dims_to_clean(record, "top5")))
            table = ranks.on_main(
                lambda: per_token_values(
                    model, batches, prompts, dims, source=source, progress=progress
                )
            )
    finally:
        if ranks.main:
            state.unlink(missing_ok=True)  # the collector saves it after every forward

    def write() -> None:
        if table is not None:
            atomic_write_json(out_path.with_name(PER_TOKEN_NAME), table, indent=None)
        atomic_write_json(out_path, record)

    ranks.on_main(write)  # a failure raises on every rank
    return record if table is None else (record, table)


def _collect(
    model: nn.Module, batches: list[dict[str, Any]], out_path: Path, progress: bool, ranks: Ranks
) -> dict[str, Any]:
    """The calibration record of one pass over ``batches`` (nothing is written but the state).

    Under ``torchrun`` each rank measures its share of the batches
    (:meth:`MassiveDimCollector.measure`) and rank 0 merges them in batch order: the same
    additions in the same order as one process, so the same record, bit for bit.
    """
    device = input_device(model)
    collector = MassiveDimCollector(model, out_path, max_tokens=2**62)
    mine = ranks.mine(range(len(batches)))
    total = sum(len(batches[i]["input_ids"]) for i in mine)
    bar = tqdm(total=total, desc="calibrating", unit="prompt", disable=not progress)
    measured = {}
    with bar, torch.no_grad():
        if not ranks.sharded:
            collector.attach()
        try:
            for i in mine:
                inputs = {k: v.to(device) for k, v in batches[i].items()}
                if ranks.sharded:
                    forward = functools.partial(model, **inputs)
                    measured[i] = collector.measure(forward, collector.max_tokens)
                else:
                    model(**inputs)
                bar.update(len(batches[i]["input_ids"]))
        finally:
            collector.remove()
    if not ranks.sharded:
        return collector.calibration()
    shares = ranks.gather(measured)

    def merge() -> dict[str, Any]:
        for i in range(len(batches)):
            collector.merge(*shares[i % ranks.world][i])
        return collector.calibration()

    return ranks.on_main(merge)


def _usable(path: Path, model: nn.Module, action: str) -> dict[str, Any] | None:
    """The valid calibration at ``path`` made for ``model``, else ``None`` (warning if bad)."""
    if not path.exists():
        return None
    try:
        record = load_calibration(path)
        made = (record["model"], record["n_layers"], record["hidden_size"])
        here = (model_name(model), n_layers(model), hidden_size(model))
        if made != here:
            raise CalibrationError(f"{path} was made for (model, layers, width) {made}, not {here}")
    except CalibrationError as exc:
        logger.warning("%s massive-activation calibration: %s", action, exc)
        return None
    return record


def ensure_calibration(
    model: nn.Module,
    tokenizer: Any,
    experiment: str,
    variant: str,
    root: str | os.PathLike[str] | None = None,
    prompts: list[str] | tuple[str, ...] = NEUTRAL_PROMPTS,
    *,
    overwrite: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """The variant's calibration: loaded when valid, else built from ``prompts``.

    A corrupt file, or one made for another model id, width or layer count, is never used: a
    warning says why and the file is rebuilt from ``prompts`` (by default the 50 curated
    neutral prompts). ``overwrite=True`` rebuilds it even when it is valid — e.g. one the first
    inference run collected from its own prompts (``prompt_source`` ``"inference"``); the old
    file stays until the new one is complete. ``progress`` shows a bar.

    Example:
        >>> ensure_calibration(model, tokenizer, "demo", "instruct")  # doctest: +SKIP
        >>> ensure_calibration(model, tok, "demo", "instruct", overwrite=True)  # doctest: +SKIP
    """
    path = calibration_path(experiment, variant, root)
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be True or False, got {overwrite!r}")
    experiment_variant(experiment, variant, root)
    if overwrite:
        logger.info("rebuilding massive-activation calibration %s (overwrite=True)", path)
    else:
        record = _usable(path, model, "rebuilding")
        if record is not None:
            return record
    return calibrate(model, tokenizer, prompts, path, progress=progress)


def passive_collector(
    model: nn.Module,
    experiment: str,
    variant: str,
    root: str | os.PathLike[str] | None = None,
    max_tokens: int = 5000,
    *,
    inputs: str | None = None,
) -> AbstractContextManager[Any]:
    """Wrap the first inference run of a variant: a collector, or a no-op once calibrated.

    Returns a :class:`MassiveDimCollector` (resuming any saved state; its calibration records
    ``prompt_source`` ``"inference"``) when the variant has no usable ``calibration.json``, else
    ``contextlib.nullcontext()`` so later runs skip. ``inputs`` names the sequence of inputs the
    caller will feed (see :class:`MassiveDimCollector`): a saved state resumes only under the
    same name, and the caller skips the first ``collector.forwards_seen`` of them.

    Example:
        >>> with passive_collector(model, "demo", "instruct"):  # doctest: +SKIP
        ...     run_inference(model, prompts)
    """
    path = calibration_path(experiment, variant, root)
    experiment_variant(experiment, variant, root)
    if _usable(path, model, "recollecting") is not None:
        return nullcontext()
    return MassiveDimCollector(
        model, path, max_tokens=max_tokens, prompt_source="inference", inputs=inputs
    )


def research_calibration(
    model: nn.Module,
    tokenizer: Any,
    experiment: str,
    variant: str,
    prompt_set: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    batch_size: int = 8,
    *,
    per_token: bool = False,
    progress: bool = False,
) -> tuple[dict[str, Any], Path]:
    """Research mode: calibrate on a named prompt set, with per-token output on request.

    Writes ``calibration.json`` (``prompt_source`` = the set's name) under
    ``.../massive_activations/research/<set>/`` (:func:`~trait_lab.core.paths.research_dir`;
    the variant's own calibration is untouched) and returns the record and that folder.
    ``per_token=True`` also writes ``per_token.json`` there (every prompt's values of the
    massive dims, token by token, per layer: :mod:`trait_lab.dynamics.per_token`); without it,
    an older ``per_token.json`` in the folder is deleted, as it no longer matches.

    Example:
        >>> research_calibration(model, tok, "default", "instruct", "borderline")  # doctest: +SKIP
        >>> research_calibration(  # doctest: +SKIP
        ...     model, tok, "default", "instruct", "borderline", per_token=True)
    """
    experiment_variant(experiment, variant, root)
    name = Path(str(prompt_set)).stem
    folder = research_dir(experiment, variant, name, root)
    prompts = load_prompt_set(prompt_set)
    path = folder / "calibration.json"
    if per_token:
        record, _ = calibrate(
            model, tokenizer, prompts, path, True, batch_size, progress=progress, source=name
        )
    else:
        record = calibrate(
            model, tokenizer, prompts, path, False, batch_size, progress=progress, source=name
        )
        (folder / PER_TOKEN_NAME).unlink(missing_ok=True)
    return record, folder
