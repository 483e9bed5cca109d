"""The extraction pipeline: trait pairs → activations → vectors per method and layer → metrics.

For one experiment, trait and model variant it captures the contrastive examples at a position
(DSL) for every chosen layer and component, splits pairs into train/validation, extracts a
vector per method and layer on train, scores it on validation (accuracy, effect size,
polarity, on cosine scores) and writes, under
``experiments/<exp>/extraction/<trait>/<variant>/``:

* ``inputs.json`` — what the outputs were made from (trait content hash, settings, model);
* ``activations/<component>.safetensors`` — ``pos``/``neg`` ``[n, layers, hidden]`` (fp16
  unless a value would overflow it) plus the pair ids;
* ``vectors/<component>/<method>/layer_<L>.safetensors`` — unit vectors with metadata;
* ``metrics.jsonl`` — one row per (component, method, layer), appended as each finishes;
* ``metrics.csv``, ``metadata.json`` (``ActivationMetadata``) — written at the end.

Paths come from :mod:`trait_lab.core.paths`. Every file is written atomically and the metrics
log is append-only. Nothing is written until the settings are checked against the model and
the first component's activations are captured (so a bad layer, component or position leaves
the folder as it was), and one run at a time holds the folder's lock (``.extraction.lock``; a
second run waits, saying for whom, then reuses the first one's results). A
:class:`~trait_lab.core.runs.ResumableRun` skips every vector whose metrics row is logged and
whose file is verified (it loads, is a finite unit ``[hidden]`` vector, and has the sha256 its
row records), so a killed run resumes where it stopped, a damaged file is recomputed (with a
logged warning and a note in the summary), and re-running with the same inputs does nothing.
A layer where a method finds no direction (:class:`DegenerateLayerError`, e.g. both poles'
activations identical) is logged as degenerate and skipped, not fatal. The steps:
:func:`~trait_lab.extraction.plan.plan_extraction` checks the settings, ``claim_folder`` checks
``inputs.json`` against them, ``_activations`` captures (or reloads) each component,
``commit_folder`` claims the folder, ``_extract_one`` computes, scores and saves one vector,
``_finish`` writes the tables. Generated responses (``generate_responses=True``) come from
any :class:`~trait_lab.generation.protocol.Backend` (``backend=``, e.g. ``VLLMBackend``;
default the model itself), whose identity enters the inputs hash; capture is always on
the model.

Example:
    >>> summary = run_extraction("default", "optimism", methods=["mean_diff"])  # doctest: +SKIP
    >>> summary.best("mean_diff")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm

from trait_lab.core.atomic import atomic_write_json, atomic_write_text
from trait_lab.core.distributed import Ranks, current_ranks
from trait_lab.core.experiments import load_experiment_config
from trait_lab.core.jsonl import append_jsonl
from trait_lab.core.locks import hold_lock
from trait_lab.core.paths import activations_path, metadata_path
from trait_lab.core.runs import ResumableRun
from trait_lab.core.types import ActivationMetadata, save_json
from trait_lab.extraction.methods import DegenerateLayerError, get_method
from trait_lab.extraction.outputs import (
    INPUTS,
    METRIC_COLUMNS,
    METRICS_LOG,
    ExtractionSummary,
    Job,
    claim_folder,
    extraction_dir,
    read_inputs,
    read_log,
    vector_loader,
    vector_path,
)
from trait_lab.extraction.plan import ExtractionSettings, check_backend, plan_extraction
from trait_lab.extraction.units import (
    UNUSABLE,
    Acts,
    Work,
    capture_activations,
    generate_responses,
    noting,
)
from trait_lab.generation.protocol import Backend, backend_identity
from trait_lab.io.vectors import save_vector
from trait_lab.math.linalg import batch_cosine_similarity
from trait_lab.math.metrics import accuracy, effect_size, polarity_correct
from trait_lab.models.loading import load_model
from trait_lab.models.manifest import sha256_file
from trait_lab.traits.dataset import TraitDataset, load_trait

__all__ = ["METRICS_LOG", "ExtractionSettings", "extract_trait", "run_extraction"]

logger = logging.getLogger("trait_lab.extraction.pipeline")

LOCK = ".extraction.lock"


def _score(vector: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> dict[str, Any]:
    p = batch_cosine_similarity(pos, vector)
    n = batch_cosine_similarity(neg, vector)
    return {
        "accuracy": accuracy(p, n),
        "effect_size": effect_size(p, n, signed=True),
        "polarity_correct": bool(polarity_correct(p, n)),
    }


def _extract_one(
    work: Work, job: Job, acts: Acts, log: Callable[[Job, dict[str, Any]], None]
) -> dict[str, Any]:
    """Extract, score and save one vector, ``log`` its metrics row, and return the row.

    A :class:`DegenerateLayerError` (no direction at this layer) is logged as a row with
    ``"degenerate"`` (its reason) and no vector file.
    """
    out, plan, run = work.out, work.plan, work.run
    component, method_name, layer = job
    li = plan.layers.index(layer)
    pos, neg = acts[0][:, li].float(), acts[1][:, li].float()
    train, val = torch.tensor(plan.train), torch.tensor(plan.val)
    # a different random direction per layer, so the baseline averages to chance
    seed = plan.settings.seed * 1000 + layer
    options = {"seed": seed} if method_name == "random_baseline" else {}
    try:
        result = get_method(method_name).extract(pos[train], neg[train], **options)
    except DegenerateLayerError as exc:
        logger.warning(
            "%s: skipping %s at layer %d (%s): %s", out, method_name, layer, component, exc
        )
        row = {"component": component, "method": method_name, "layer": layer}
        row["degenerate"] = str(exc)
        log(job, row)
        return row
    scores = _score(result.vector, pos[val], neg[val])
    train_scores = _score(result.vector, pos[train], neg[train])

    def save(path: Path) -> None:
        save_vector(
            result.vector,
            path,
            trait=plan.dataset.name,
            method=method_name,
            layer=layer,
            component=component,
            position=plan.position,
        )

    path = run.save(vector_path(out, *job), save)
    row = {
        "component": component,
        "method": method_name,
        "layer": layer,
        "val_accuracy": scores["accuracy"],
        "val_effect_size": scores["effect_size"],
        "val_polarity_correct": scores["polarity_correct"],
        "train_accuracy": train_scores["accuracy"],
        "n_train": len(train),
        "n_val": len(val),
        "diagnostics": result.diagnostics,
        "sha256": sha256_file(path),
    }
    log(job, row)
    return row


def extract_trait(
    model: Any,
    tokenizer: Any,
    trait: str | Path | TraitDataset,
    out_dir: str | Path,
    settings: ExtractionSettings | None = None,
    *,
    overwrite: bool = False,
    progress: bool = False,
    lock_timeout: float | None = None,
    ranks: Ranks | None = None,
    backend: Backend | None = None,
) -> ExtractionSummary:
    """Run (or resume) extraction of one trait into ``out_dir``; see the module docstring.

    With ``generate_responses``, ``backend`` (e.g. a ``VLLMBackend`` on the same weights)
    generates the responses, in the same batches; ``None`` generates them with the model
    (``LocalBackend``). Activations are always captured on the model. The backend's identity
    (:func:`~trait_lab.generation.protocol.backend_identity`) enters the inputs hash.

    While another run of the same folder holds its lock, this one logs whom it waits for and
    waits (up to ``lock_timeout`` seconds when given, then
    :class:`~trait_lab.core.locks.LockTimeoutError`). Under ``torchrun`` (``ranks``, default
    :func:`~trait_lab.core.distributed.current_ranks`) every rank calls this with the same
    arguments: batches and vectors are shared among the ranks, rank 0 holds the lock, merges
    and writes the usual outputs, and every rank returns the same summary.

    Example:
        >>> summary = extract_trait(model, tokenizer, "optimism", "out")  # doctest: +SKIP
        >>> summary.best("probe")["layer"]  # doctest: +SKIP
    """
    dataset = trait if isinstance(trait, TraitDataset) else load_trait(trait)
    by = None if backend is None else backend_identity(backend)
    plan = plan_extraction(model, dataset, settings or ExtractionSettings(), by)
    ranks = ranks or current_ranks()
    out = Path(out_dir)
    hashes = (plan.inputs()["hash"], plan.legacy_hash)
    # refuse others' outputs before taking the lock
    ranks.on_main(lambda: claim_folder(out, hashes, overwrite))
    holder = f"run of this extraction ({dataset.name})"
    lock = hold_lock(out / LOCK, holder, lock_timeout) if ranks.main else nullcontext()
    with lock:
        claim = ranks.on_main(lambda: claim_folder(out, hashes, overwrite))
        run = ResumableRun(f"extraction of {dataset.name}", errors=UNUSABLE)
        work = Work(
            out, plan, model, tokenizer, ranks, run, claim, claim == "resume", backend=backend
        )
        return _extract(work, progress)


def _rows(work: Work, read: bool) -> dict[Job, dict[str, Any]]:
    """The logged rows (when ``read``), with the rows of jobs the ranks left in units (rank 0).

    A job's row left by a rank (``rows/<component>-<method>-<layer>.json``) is appended to the
    log, in the plan's order: after a sharded run, and on resuming one a kill stopped.
    """
    if not read:
        return {}
    rows = read_log(work.out)
    for job in work.plan.jobs:
        left = work.run.load(_row_path(work, job), _read_row) if job not in rows else None
        if left is not None:
            append_jsonl(work.out / METRICS_LOG, left)
            rows[job] = left
    return rows


def _row_path(work: Work, job: Job) -> Path:
    return work.units / "rows" / f"{job[0]}-{job[1]}-{job[2]}.json"


def _read_row(path: Path) -> dict[str, Any]:
    row = json.loads(path.read_text())
    if not isinstance(row, dict):
        raise ValueError(f"{path} does not hold a metrics row")
    return row


def _extract(work: Work, progress: bool) -> ExtractionSummary:
    """The run itself (rank 0 holds the folder's lock); ``work.claim`` says what ``out`` holds."""
    out, plan, ranks, run = work.out, work.plan, work.ranks, work.run
    hidden = int(plan.model_id["hidden"])
    rows = ranks.on_main(lambda: _rows(work, work.claim == "resume"))

    def done(job: Job) -> bool:  # logged AND (degenerate, or its file verifies)
        row = rows.get(job)
        if row is None:
            return False
        path = vector_path(out, *job)
        return "degenerate" in row or run.done(path, noting(work.notes, vector_loader(hidden, row)))

    def log(job: Job, row: dict[str, Any]) -> None:  # alone: the log; sharded: a unit file
        if ranks.sharded:
            work.unit_run.save(_row_path(work, job), lambda p: atomic_write_json(p, row))
        else:
            append_jsonl(out / METRICS_LOG, row)

    todo: list[Job] = ranks.on_main(lambda: run.pending(plan.jobs, done))
    name = plan.dataset.name
    responses = generate_responses(work)
    with tqdm(
        total=len(plan.jobs), initial=run.skipped, desc=f"extracting {name}", disable=not progress
    ) as bar:
        for component in plan.settings.components:
            acts = capture_activations(work, component, responses)
            jobs = ranks.mine([job for job in todo if job[0] == component])
            with ranks.together():  # a failure stops every rank (the finished vectors stay)
                for job in jobs:
                    rows[job] = _extract_one(work, job, acts, log)
                    bar.update()
    if ranks.sharded:
        rows = ranks.on_main(lambda: _rows(work, True))  # the ranks' rows, in plan order
    computed = sum(ranks.gather(run.computed))
    summary = ranks.on_main(lambda: _finish(work, rows, computed))
    work.clean()
    return summary


def _finish(work: Work, rows: dict[Job, dict[str, Any]], computed: int) -> ExtractionSummary:
    """Write ``metrics.csv`` and ``metadata.json``; the summary of the run (rank 0)."""
    out, model, plan, notes = work.out, work.model, work.plan, work.notes
    inputs = plan.inputs()
    if (read_inputs(out) or {}).get("hash") != inputs["hash"]:  # written by an older trait_lab
        atomic_write_json(out / INPUTS, inputs)
    done = [rows[job] for job in plan.jobs]
    degenerate = {
        job: str(rows[job]["degenerate"]) for job in plan.jobs if "degenerate" in rows[job]
    }
    table = pd.DataFrame([r for r in done if "degenerate" not in r], columns=list(METRIC_COLUMNS))
    atomic_write_text(out / "metrics.csv", table.to_csv(index=False))
    for (component, method, layer), reason in degenerate.items():
        notes.append(f"{method} at layer {layer} ({component}) skipped as degenerate: {reason}")
    if degenerate:
        logger.warning(
            "%s: %d of %d vectors skipped as degenerate (no direction at that layer): %s",
            out,
            len(degenerate),
            len(plan.jobs),
            ", ".join(f"{m}@{layer}" for _, m, layer in degenerate),
        )
    stored = load_file(str(activations_path(out, plan.settings.components[0])))
    both = torch.cat([stored["pos"], stored["neg"]]).float()
    norms = {layer: float(both[:, i].norm(dim=-1).mean()) for i, layer in enumerate(plan.layers)}
    meta = ActivationMetadata(
        model=plan.model_id["name_or_path"] or plan.model_id["model_type"],
        n_layers=int(model.config.num_hidden_layers),
        hidden_dim=int(model.config.hidden_size),
        captured_layers=plan.layers,
        components=tuple(plan.settings.components),
        position=plan.position,
        n_samples=2 * len(plan.dataset.pairs),
        activation_norms=norms,
        dtype=str(stored["pos"].dtype).replace("torch.", ""),
    )
    save_json(meta, metadata_path(out))
    return ExtractionSummary(
        out, table, computed=computed, skipped=work.run.skipped, notes=notes, degenerate=degenerate
    )


def run_extraction(
    experiment: str,
    trait: str | Path,
    variant: str | None = None,
    *,
    root: str | None = None,
    model: Any = None,
    tokenizer: Any = None,
    overwrite: bool = False,
    progress: bool = False,
    ranks: Ranks | None = None,
    backend: Backend | None = None,
    **settings: Any,
) -> ExtractionSummary:
    """Extract a trait for an experiment's model variant into its extraction folder.

    ``model``/``tokenizer`` may be passed when already loaded (they must be the variant's).
    Keyword ``settings`` are ``ExtractionSettings`` fields (lists are accepted). Every name
    and setting is checked before the model is loaded. Under ``torchrun`` each rank loads the
    model (on ``cuda:<local rank>`` with NCCL) and the work is shared (:func:`extract_trait`).
    ``backend`` generates the responses (``generate_responses=True``; see :func:`extract_trait`).
    """

    config = load_experiment_config(experiment, root)
    chosen = config.variant(variant)
    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()
    }
    checked = ExtractionSettings(**fields)
    check_backend(checked, None if backend is None else backend_identity(backend))
    dataset = load_trait(trait)
    out = extraction_dir(experiment, dataset.name, chosen.name, root)
    ranks = ranks or current_ranks()
    if model is None or tokenizer is None:
        model, tokenizer = load_model(chosen.model, device=ranks.model_device())
    return extract_trait(
        model,
        tokenizer,
        dataset,
        out,
        checked,
        overwrite=overwrite,
        progress=progress,
        ranks=ranks,
        backend=backend,
    )
