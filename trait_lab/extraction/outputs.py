"""Reading an extraction's outputs back: ``ExtractionSummary``, ``read_inputs``, ``read_log``.

The files are described in :mod:`trait_lab.extraction.pipeline`; their paths come from
:mod:`trait_lab.core.paths` (``extraction_dir`` and ``vector_path`` are re-exported here). A
damaged ``inputs.json`` or ``metrics.jsonl`` raises a ``ValueError`` that names the file and
the fix (rerun with ``overwrite=True``, or delete the folder), never a bare decoding error.

Example:
    >>> vector_path(Path("out"), "residual", "probe", 12).as_posix()
    'out/vectors/residual/probe/layer_12.safetensors'
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
from safetensors.torch import load_file

from trait_lab.core.atomic import atomic_write_json
from trait_lab.core.jsonl import read_jsonl
from trait_lab.core.paths import (
    activations_dir,
    activations_path,
    extraction_dir,
    metadata_path,
    vector_path,
    vectors_dir,
)
from trait_lab.io.tensor_files import safetensors_errors
from trait_lab.io.vectors import load_vector
from trait_lab.math.linalg import batch_cosine_similarity
from trait_lab.models.manifest import sha256_file

__all__ = [
    "INPUTS",
    "METRICS_LOG",
    "ExtractionSummary",
    "claim_folder",
    "commit_folder",
    "extraction_dir",
    "load_activations",
    "read_inputs",
    "read_log",
    "vector_loader",
    "vector_path",
]

INPUTS = "inputs.json"
METRICS_LOG = "metrics.jsonl"
METRIC_COLUMNS = (
    "component",
    "method",
    "layer",
    "val_accuracy",
    "val_effect_size",
    "val_polarity_correct",
    "train_accuracy",
    "n_train",
    "n_val",
)
"""The columns of ``metrics.csv`` (and of ``ExtractionSummary.metrics``)."""

Job = tuple[str, str, int]
"""``(component, method, layer)``: one vector of an extraction."""
Claim = Literal["resume", "fresh", "replace"]
"""What a folder holds for a run: its outputs (resume), none (fresh), others to replace."""


def _damaged(path: Path, problem: str) -> ValueError:
    return ValueError(
        f"{path} is damaged ({problem}). Rerun the extraction with overwrite=True (--overwrite "
        f"on the command line) to redo it, or delete the folder {path.parent}."
    )


def read_inputs(folder: str | Path) -> dict[str, Any] | None:
    """The ``inputs.json`` of an extraction folder (``None`` when there is none).

    Raises:
        ValueError: the file is not a JSON object with a ``hash`` (it names the file and fix).

    Example:
        >>> read_inputs("/nonexistent") is None
        True
    """
    path = Path(folder) / INPUTS
    if not path.exists():
        return None
    try:
        inputs = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError included
        raise _damaged(path, f"not readable JSON: {exc}") from None
    if not isinstance(inputs, dict) or not isinstance(inputs.get("hash"), str):
        raise _damaged(path, "not a JSON object with a 'hash'")
    return inputs


def read_log(folder: str | Path) -> dict[Job, dict[str, Any]]:
    """The rows of an extraction's ``metrics.jsonl`` by job (``{}`` when there is none).

    A row with ``"degenerate"`` records a layer where the method found no direction (see
    :class:`~trait_lab.extraction.methods.DegenerateLayerError`); it has no vector file.

    Raises:
        ValueError: a line is damaged or lacks component/method/layer (file and fix named).

    Example:
        >>> read_log("/nonexistent")
        {}
    """
    path = Path(folder) / METRICS_LOG
    try:
        rows = read_jsonl(path)
    except UnicodeDecodeError as exc:
        raise _damaged(path, f"not UTF-8 text: {exc}") from None
    except ValueError as exc:
        raise _damaged(path, str(exc).split("; the log is damaged")[0]) from None
    log: dict[Job, dict[str, Any]] = {}
    for i, row in enumerate(rows):
        try:
            layer = row["layer"]
            if isinstance(layer, bool) or not isinstance(layer, int):
                raise TypeError(f"layer {layer!r} is not an int")
            log[(str(row["component"]), str(row["method"]), layer)] = row
        except (KeyError, TypeError) as exc:
            raise _damaged(path, f"row {i + 1} lacks a component, method or layer: {exc}") from None
    return log


def _holds_outputs(out: Path) -> bool:
    """Whether ``out`` holds anything but an ``inputs.json`` (activations, vectors, logs)."""
    made = [activations_dir(out), vectors_dir(out), out / METRICS_LOG, out / "responses.json"]
    return any(path.is_file() or (path.is_dir() and any(path.rglob("*"))) for path in made)


def claim_folder(out: Path, hashes: tuple[str, ...], overwrite: bool) -> Claim:
    """What ``out`` holds for a run whose inputs hash is one of ``hashes``; writes nothing.

    Others' outputs are refused unless ``overwrite``. A lone ``inputs.json`` (a run that
    stopped before its first output) is replaced freely.

    Example:
        >>> claim_folder(Path("/nonexistent"), ("abc",), overwrite=False)
        'fresh'
    """
    try:
        previous = read_inputs(out)
    except ValueError:
        if not overwrite:
            raise
        return "replace"
    if previous is None:
        return "fresh"
    if previous["hash"] in hashes:
        return "resume"
    if not _holds_outputs(out):
        return "fresh"
    if not overwrite:
        raise ValueError(
            f"{out} holds outputs made from different inputs (trait data, settings or "
            "model changed). Pass overwrite=True (--overwrite on the command line) to "
            "replace them, or choose another experiment/variant folder."
        )
    return "replace"


def commit_folder(out: Path, inputs: dict[str, Any], claim: Claim) -> None:
    """Make ``out`` a run's folder: clear others' outputs (``"replace"``), write ``inputs``."""
    if claim == "replace":
        for folder in (activations_dir(out), vectors_dir(out)):
            shutil.rmtree(folder, ignore_errors=True)
        for name in (METRICS_LOG, "metrics.csv", "responses.json"):
            (out / name).unlink(missing_ok=True)
        metadata_path(out).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / INPUTS, inputs)


def load_activations(path: Path, shape: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``pos``/``neg`` of an activations file, if finite float16/float32 of ``shape``.

    Raises:
        ValueError: anything else (the extraction recomputes the file).
    """
    stored = load_file(str(path))
    pos, neg = stored.get("pos"), stored.get("neg")
    if pos is None or neg is None or tuple(pos.shape) != shape or neg.shape != pos.shape:
        raise ValueError(
            f"{path} does not hold pos/neg activations of {shape[0]} pairs x {shape[1]} "
            f"layers x {shape[2]} dims"
        )
    if pos.dtype not in (torch.float16, torch.float32) or neg.dtype != pos.dtype:
        raise ValueError(f"{path} holds {pos.dtype}/{neg.dtype}, not float16 or float32")
    if not (torch.isfinite(pos).all() and torch.isfinite(neg).all()):
        raise ValueError(f"{path} holds NaN or infinite activations")
    return pos, neg


def vector_loader(hidden: int, row: dict[str, Any]) -> Callable[[Path], torch.Tensor]:
    """A loader of the vector a metrics ``row`` logged: a finite unit float32 ``[hidden]``
    vector whose file has the sha256 the row records (rows of older runs record none).

    The loader raises ``ValueError`` for any other file (the extraction recomputes it).
    """

    def load(path: Path) -> torch.Tensor:
        expected = row.get("sha256")
        if expected is not None and sha256_file(path) != expected:
            raise ValueError(f"{path} is not the file its {METRICS_LOG} row logged (sha256)")
        vector = load_vector(path)
        assert isinstance(vector, torch.Tensor)
        if tuple(vector.shape) != (hidden,) or vector.dtype != torch.float32:
            raise ValueError(
                f"{path} holds a {vector.dtype} vector of shape {tuple(vector.shape)}, not a "
                f"float32 vector of shape ({hidden},)"
            )
        if not torch.isfinite(vector).all() or abs(float(vector.norm()) - 1.0) > 1e-3:
            raise ValueError(f"{path} does not hold a finite unit vector")
        return vector

    return load


@dataclass
class ExtractionSummary:
    """Where the outputs are and the metrics table."""

    out_dir: Path
    metrics: pd.DataFrame
    computed: int = 0
    skipped: int = 0
    notes: list[str] = field(default_factory=list)
    degenerate: dict[Job, str] = field(default_factory=dict)
    """Jobs skipped because the method found no direction at that layer, with the reason."""

    def best(self, method: str | None = None, component: str = "residual") -> pd.Series:
        """The row with the largest validation effect size among polarity-correct rows."""
        rows = self.metrics[self.metrics["component"] == component]
        if method is not None:
            rows = rows[rows["method"] == method]
        rows = rows[rows["val_polarity_correct"]]
        if rows.empty:
            raise ValueError(f"no polarity-correct rows for method={method!r}, {component!r}")
        return rows.loc[rows["val_effect_size"].idxmax()]

    def vector_path(self, method: str, layer: int, component: str = "residual") -> Path:
        return vector_path(self.out_dir, component, method, layer)

    def best_by_method(self, component: str = "residual") -> pd.DataFrame:
        """One row per method: its best layer by validation effect size, with its metrics.

        When the random baseline ran, ``random_baseline_accuracy`` gives its held-out accuracy
        at the same layer (the random baseline's own row shows the best of its per-layer
        random directions, which is above chance by selection alone).
        """
        rows = self.metrics[self.metrics["component"] == component]
        best = rows.loc[rows.groupby("method")["val_effect_size"].idxmax()]
        columns = ["method", "layer", "val_accuracy", "val_effect_size", "val_polarity_correct"]
        table = best[columns].sort_values("val_effect_size", ascending=False)
        random = rows[rows["method"] == "random_baseline"].set_index("layer")["val_accuracy"]
        if not random.empty:
            # a random direction at the same layer: the chance level to compare against
            table["random_baseline_accuracy"] = table["layer"].map(random)
        return table.reset_index(drop=True)

    def validation_scores(
        self, method: str, layer: int, component: str = "residual"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cosine scores of the validation pairs' positive and negative examples on a vector."""

        inputs = read_inputs(self.out_dir)
        if inputs is None:
            raise FileNotFoundError(f"no {INPUTS} in {self.out_dir}; run the extraction first")
        layers = inputs["settings"]["layers"] or list(range(inputs["model"]["n_layers"]))
        path = activations_path(self.out_dir, component)
        with safetensors_errors(path, "Re-create it: rerun `trait-lab extract` for this trait."):
            acts = load_file(str(path))
        val = torch.tensor([inputs["pair_ids"].index(pid) for pid in inputs["split"]["val"]])
        vector = load_vector(self.vector_path(method, layer, component))
        assert isinstance(vector, torch.Tensor)
        li = list(layers).index(layer)
        pos, neg = acts["pos"][val, li].float(), acts["neg"][val, li].float()
        return batch_cosine_similarity(pos, vector), batch_cosine_similarity(neg, vector)
