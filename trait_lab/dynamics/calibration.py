"""Running a calibration: explicit (neutral prompts), research mode, and "find or rebuild".

:func:`calibrate` runs prompts through a :class:`~trait_lab.dynamics.massive.MassiveDimCollector`;
:func:`ensure_calibration` returns an experiment variant's calibration, rebuilding it (with a
logged warning saying why) when it is missing, corrupt or made for another model — a bad file
is never used; :func:`passive_collector` is what an inference run wraps itself in so that the
first run calibrates for free.

Example:
    >>> from trait_lab.core.paths import calibration_path
    >>> calibration_path("demo", "instruct", root="/tmp/x").name
    'calibration.json'
"""

from __future__ import annotations

import logging
import os
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, Literal, overload

import torch
from torch import nn
from tqdm.auto import tqdm

from trait_lab.core.atomic import atomic_write_json
from trait_lab.core.paths import calibration_path, research_dir
from trait_lab.dynamics.cleaning import dims_to_clean
from trait_lab.dynamics.massive import (
    NEUTRAL_PROMPTS,
    STATE_NAME,
    CalibrationError,
    MassiveDimCollector,
    load_calibration,
)
from trait_lab.hooks.capture import MultiLayerCapture
from trait_lab.models.architectures import hidden_size, n_layers
from trait_lab.models.identity import model_name
from trait_lab.prompts.prompt_sets import load_prompt_set

__all__ = ["calibrate", "ensure_calibration", "passive_collector"]

logger = logging.getLogger(__name__)


def _batches(tokenizer: Any, prompts: list[str], batch_size: int) -> list[dict[str, Any]]:
    return [
        dict(tokenizer(prompts[i : i + batch_size], return_tensors="pt", padding=True))
        for i in range(0, len(prompts), batch_size)
    ]


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
) -> tuple[dict[str, Any], list[dict[str, Any]]]: ...
def calibrate(
    model: nn.Module,
    tokenizer: Any,
    prompts: list[str] | tuple[str, ...],
    out_path: str | os.PathLike[str],
    per_token: bool = False,
    batch_size: int = 8,
    *,
    progress: bool = False,
) -> dict[str, Any] | tuple[dict[str, Any], list[dict[str, Any]]]:
    """Explicit calibration on ``prompts`` (every token counts); writes and returns the record.

    Starts fresh (any saved collector state at ``out_path`` is discarded). ``per_token=True``
    (research mode) runs a second pass and also returns, per prompt, ``{"prompt", "input_ids",
    "dims", "values"}`` where ``values[layer][token][i]`` is dim ``dims[i]`` (the candidates,
    plus the ``"top5"`` clean-option dims) at that token; it is also written to ``per_token.json``.
    ``tokenizer(texts, return_tensors="pt", padding=True)`` must return ids and a mask.
    ``progress`` shows a bar per pass.

    Example:
        >>> calibrate(model, tokenizer, NEUTRAL_PROMPTS, "calibration.json")  # doctest: +SKIP
    """
    prompts = list(prompts)
    if not prompts:
        raise ValueError("prompts is empty; pass at least one prompt (e.g. NEUTRAL_PROMPTS)")
    out_path = Path(out_path)
    out_path.with_name(STATE_NAME).unlink(missing_ok=True)
    batches = _batches(tokenizer, prompts, batch_size)
    device = next(model.parameters()).device
    collector = MassiveDimCollector(model, out_path, max_tokens=2**62)
    bar = tqdm(total=len(prompts), desc="calibrating", unit="prompt", disable=not progress)
    with bar, torch.no_grad(), collector:
        for batch in batches:
            model(**{k: v.to(device) for k, v in batch.items()})
            bar.update(len(batch["input_ids"]))
    record = load_calibration(out_path)
    if not per_token:
        return record

    dims = sorted(set(record["candidates"]) | set(dims_to_clean(record, "top5")))
    rows = _per_token(model, batches, prompts, dims, progress)
    atomic_write_json(out_path.with_name("per_token.json"), rows, indent=None)
    return record, rows


def _per_token(
    model: nn.Module,
    batches: list[dict[str, Any]],
    prompts: list[str],
    dims: list[int],
    progress: bool,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    device = next(model.parameters()).device
    bar = tqdm(total=len(prompts), desc="per-token values", unit="prompt", disable=not progress)
    capture = MultiLayerCapture(model, to_cpu=True, dtype=torch.float32)
    with bar, torch.no_grad(), capture as cap:
        for batch in batches:
            cap.clear()
            model(**{k: v.to(device) for k, v in batch.items()})
            values = torch.stack([h[..., dims] for h in cap.get_all().values()], 1)
            mask = batch.get("attention_mask", torch.ones_like(batch["input_ids"])).bool()
            for i, keep in enumerate(mask):
                ids = batch["input_ids"][i][keep].tolist()
                row = {"prompt": prompts[len(rows)], "input_ids": ids, "dims": dims}
                rows.append({**row, "values": values[i][:, keep].tolist()})
            bar.update(len(mask))
    return rows


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
    progress: bool = False,
) -> dict[str, Any]:
    """The variant's calibration: loaded when valid, else built from ``prompts``.

    A corrupt file, or one made for another model id, width or layer count, is never used: a
    warning says why and the file is rebuilt from the neutral prompts (``progress`` shows a bar).

    Example:
        >>> ensure_calibration(model, tokenizer, "demo", "instruct")  # doctest: +SKIP
    """
    path = calibration_path(experiment, variant, root)
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
) -> AbstractContextManager[Any]:
    """Wrap the first inference run of a variant: a collector, or a no-op once calibrated.

    Returns a :class:`MassiveDimCollector` (resuming any saved state) when the variant has no
    usable ``calibration.json``, else ``contextlib.nullcontext()`` so later runs skip.

    Example:
        >>> with passive_collector(model, "demo", "instruct"):  # doctest: +SKIP
        ...     run_inference(model, prompts)
    """
    path = calibration_path(experiment, variant, root)
    if _usable(path, model, "recollecting") is not None:
        return nullcontext()
    return MassiveDimCollector(model, path, max_tokens=max_tokens)


def research_calibration(
    model: nn.Module,
    tokenizer: Any,
    experiment: str,
    variant: str,
    prompt_set: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    batch_size: int = 8,
    *,
    progress: bool = False,
) -> tuple[dict[str, Any], Path]:
    """Research mode: calibrate on a named prompt set with per-token output.

    Writes ``calibration.json`` and ``per_token.json`` under
    ``.../massive_activations/research/<set>/`` (:func:`~trait_lab.core.paths.research_dir`;
    the variant's own calibration is untouched) and returns the record and that folder.

    Example:
        >>> research_calibration(model, tok, "default", "instruct", "borderline")  # doctest: +SKIP
    """
    prompts = load_prompt_set(prompt_set)
    folder = research_dir(experiment, variant, Path(str(prompt_set)).stem, root)
    record, _ = calibrate(
        model,
        tokenizer,
        prompts,
        folder / "calibration.json",
        per_token=True,
        batch_size=batch_size,
        progress=progress,
    )
    return record, folder
