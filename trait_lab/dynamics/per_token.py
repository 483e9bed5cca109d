"""Research mode's per-token output: each prompt's values of the massive dims, token by token.

:func:`per_token_values` runs the prompts once more and keeps, for every prompt, token and layer,
the residual stream's values at the calibration's massive-dim candidates (plus the ``"top5"``
clean-option dims). :func:`~trait_lab.dynamics.calibration.calibrate` writes the result as
``per_token.json`` beside ``calibration.json``; :func:`load_per_token` reads it back.

Layout of ``per_token.json`` (:data:`PER_TOKEN_SCHEMA`)::

    {"schema": "trait_lab.massive_per_token", "schema_version": 1,
     "model": "<model id>", "prompt_source": "<prompt set name>",
     "layers": [0, 1, ...],   # the residual stream after each of these blocks
     "dims": [247, 507, ...], # sorted hidden dims
     "prompts": [{"prompt": "<text>", "input_ids": [...],   # its tokens, padding dropped
                  "values": [[[h_d for d in dims] for each token] for each layer]}]}

so ``prompts[p]["values"][i][t][j]`` is dim ``dims[j]`` of layer ``layers[i]``'s output at
token ``t`` of prompt ``p``.

Example:
    >>> PER_TOKEN_SCHEMA.stamp({})
    {'schema': 'trait_lab.massive_per_token', 'schema_version': 1}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from trait_lab.core.schema import Schema
from trait_lab.dynamics.massive import CalibrationError
from trait_lab.hooks.capture import MultiLayerCapture
from trait_lab.models.architectures import input_device, n_layers
from trait_lab.models.identity import model_name

__all__ = ["PER_TOKEN_NAME", "PER_TOKEN_SCHEMA", "load_per_token", "per_token_values"]

PER_TOKEN_NAME = "per_token.json"
"""The file name of the per-token output, beside its ``calibration.json``."""

PER_TOKEN_SCHEMA = Schema(
    "trait_lab.massive_per_token",
    1,
    remake="rerun research_calibration(..., per_token=True) or trait-lab calibrate --per-token",
    error=CalibrationError,
)
"""The format of ``per_token.json`` (layout in the module docstring)."""

_KEYS = ("model", "prompt_source", "layers", "dims", "prompts")


def per_token_values(
    model: nn.Module,
    batches: list[dict[str, Any]],
    prompts: list[str],
    dims: list[int],
    *,
    source: str,
    progress: bool = False,
) -> dict[str, Any]:
    """The per-token table of ``dims`` for ``prompts`` (tokenized as ``batches``), stamped.

    ``batches`` are the tokenizer outputs of consecutive slices of ``prompts`` (``input_ids``
    and, with padding, ``attention_mask``); masked tokens are dropped.

    Example:
        >>> per_token_values(model, batches, prompts, [507], source="neutral")  # doctest: +SKIP
    """
    rows: list[dict[str, Any]] = []
    device = input_device(model)
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
                values_i = values[i][:, keep].tolist()
                rows.append({"prompt": prompts[len(rows)], "input_ids": ids, "values": values_i})
            bar.update(len(mask))
    return PER_TOKEN_SCHEMA.stamp(
        {
            "model": model_name(model),
            "prompt_source": source,
            "layers": list(range(n_layers(model))),
            "dims": list(dims),
            "prompts": rows,
        }
    )


def _fail(path: Path, problem: str) -> CalibrationError:
    return CalibrationError(
        f"per-token file {path} is corrupt: {problem}. Delete it and {PER_TOKEN_SCHEMA.remake}."
    )


def _int_list(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(x, int) and not isinstance(x, bool) for x in value
    )


def load_per_token(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check ``per_token.json``; raises :class:`CalibrationError` naming the file.

    Example:
        >>> load_per_token("/nonexistent/per_token.json")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: no per-token file at /nonexistent/per_token.json; rerun ...
    """
    path = Path(path)
    table = PER_TOKEN_SCHEMA.read(
        path,
        missing=f"no per-token file at {path}; {PER_TOKEN_SCHEMA.remake}",
        corrupt=lambda problem: _fail(path, problem),
        source=f"per-token file {path}",
    )
    missing = [k for k in _KEYS if k not in table]
    if missing:
        raise _fail(path, f"missing keys {missing}")
    if not _int_list(table["layers"]) or not _int_list(table["dims"]):
        raise _fail(path, "layers and dims must be lists of ints")
    if not isinstance(table["prompts"], list):
        raise _fail(path, "prompts must be a list")
    for p, row in enumerate(table["prompts"]):
        if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
            raise _fail(path, f"prompts[{p}] needs 'prompt' (text), 'input_ids' and 'values'")
        if not _int_list(row.get("input_ids")):
            raise _fail(path, f"prompts[{p}]['input_ids'] must be a list of ints")
        want = (len(table["layers"]), len(row["input_ids"]), len(table["dims"]))
        try:
            shape: tuple[int, ...] | None = np.asarray(row.get("values"), np.float64).shape
        except (TypeError, ValueError):
            shape = None  # ragged or not numbers
        empty = 0 in want and shape is not None and 0 in shape  # JSON drops empty inner axes
        if shape != want and not empty:
            raise _fail(path, f"prompts[{p}]['values'] has shape {shape}, expected {want}")
    return table
