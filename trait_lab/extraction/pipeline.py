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
``_finish`` writes the tables.

Example:
    >>> summary = run_extraction("default", "optimism", methods=["mean_diff"])  # doctest: +SKIP
    >>> summary.best("mean_diff")  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from trait_lab.activations.capture import capture_at_position
from trait_lab.core.atomic import atomic_write, atomic_write_json, atomic_write_text
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
    Claim,
    ExtractionSummary,
    Job,
    claim_folder,
    commit_folder,
    extraction_dir,
    load_activations,
    read_inputs,
    read_log,
    vector_loader,
    vector_path,
)
from trait_lab.extraction.plan import ExtractionPlan, ExtractionSettings, plan_extraction
from trait_lab.generation.backends import GenerationConfig, LocalBackend
from trait_lab.io.vectors import save_vector
from trait_lab.math.linalg import batch_cosine_similarity
from trait_lab.math.metrics import accuracy, effect_size, polarity_correct
from trait_lab.models.loading import load_model
from trait_lab.models.manifest import sha256_file
from trait_lab.traits.dataset import TraitDataset, load_trait
from trait_lab.traits.format import Pole

__all__ = ["METRICS_LOG", "ExtractionSettings", "extract_trait", "run_extraction"]

logger = logging.getLogger("trait_lab.extraction.pipeline")

LOCK = ".extraction.lock"
_FP16_MAX = 60000.0
#: what loading a damaged output raises: the unit is recomputed
_UNUSABLE = (OSError, ValueError, SafetensorError)

_Acts = tuple[torch.Tensor, torch.Tensor]
_Capture = Callable[[Pole, str], torch.Tensor]
_POLES: tuple[Pole, Pole] = ("positive", "negative")


def _storage(t: torch.Tensor) -> torch.Tensor:
    return t.half() if float(t.abs().max()) < _FP16_MAX else t.float()


def _noting(notes: list[str], load: Callable[[Path], Any]) -> Callable[[Path], Any]:
    """``load``, noting in ``notes`` each file it finds unusable (the run recomputes it)."""

    def checked(path: Path) -> Any:
        try:
            return load(path)
        except _UNUSABLE as exc:
            notes.append(f"recomputed {path}: {exc}")
            raise

    return checked


def _activations(
    out: Path,
    plan: ExtractionPlan,
    component: str,
    capture: _Capture,
    run: ResumableRun | None,
    notes: list[str],
) -> tuple[_Acts, bool]:
    """``pos``/``neg`` ``[pairs, layers, hidden]`` of one component and whether it was captured.

    Reloaded (when ``run`` is given) only if the file holds finite fp16/fp32 activations of
    the plan's shape; otherwise captured, and not yet written (the caller writes it).
    """
    shape = (len(plan.dataset.pairs), len(plan.layers), int(plan.model_id["hidden"]))
    load = functools.partial(load_activations, shape=shape)
    path = activations_path(out, component)
    stored = None if run is None else run.load(path, _noting(notes, load))
    if stored is not None:
        return stored, False
    pos = _storage(capture("positive", component))
    neg = _storage(capture("negative", component))
    return (pos, neg), True


def _save_activations(path: Path, acts: _Acts) -> None:
    atomic_write(path, lambda tmp: save_file({"pos": acts[0], "neg": acts[1]}, str(tmp)))


def _generated(
    out: Path, model: Any, tokenizer: Any, plan: ExtractionPlan, run: ResumableRun | None
) -> tuple[dict[Pole, list[str]] | None, bool]:
    """Responses generated under each pole's system prompt (cached in ``responses.json``
    when ``run`` is given), and whether they were generated now (the caller saves them)."""
    settings, dataset = plan.settings, plan.dataset
    if not settings.generate_responses:
        return None, False

    def load(p: Path) -> dict[Pole, list[str]]:
        cached = json.loads(p.read_text())
        if not all(len(cached.get(pole, ())) == len(dataset.pairs) for pole in _POLES):
            raise ValueError(f"{p} does not hold {len(dataset.pairs)} responses per pole")
        return cached

    cached = None if run is None else run.load(out / "responses.json", load)
    if cached is not None:
        return cached, False
    backend = LocalBackend.from_model(model, tokenizer)
    config = GenerationConfig(
        max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size
    )
    responses = {pole: backend.generate(dataset.prompts(pole), config) for pole in _POLES}
    for pole, texts in responses.items():
        empty = [dataset.pairs[i].id for i, text in enumerate(texts) if not text.strip()]
        if empty:
            raise ValueError(
                f"the model gave empty {pole} responses for pairs {empty[:5]}; raise "
                "max_new_tokens, or extract at the prompt (generate_responses=False)"
            )
    return responses, True


def _capturer(
    model: Any, tokenizer: Any, plan: ExtractionPlan, generated: dict[Pole, list[str]] | None
) -> _Capture:
    """``capture(pole, component)``: ``[pairs, layers, hidden]`` mean-pooled at the position."""
    dataset = plan.dataset

    def capture(pole: Pole, component: str) -> torch.Tensor:
        responses = generated[pole] if generated else dataset.responses(pole)
        acts = capture_at_position(
            model,
            tokenizer,
            dataset.prompts(pole),
            list(plan.layers),
            plan.position,
            pool="mean",
            responses=responses,
            component=component,
            batch_size=plan.settings.batch_size,
        )
        assert isinstance(acts, torch.Tensor)
        return acts if acts.dim() == 3 else acts.unsqueeze(1)

    return capture


def _score(vector: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> dict[str, Any]:
    p = batch_cosine_similarity(pos, vector)
    n = batch_cosine_similarity(neg, vector)
    return {
        "accuracy": accuracy(p, n),
        "effect_size": effect_size(p, n, signed=True),
        "polarity_correct": bool(polarity_correct(p, n)),
    }


def _extract_one(
    out: Path, plan: ExtractionPlan, job: Job, acts: _Acts, run: ResumableRun
) -> dict[str, Any]:
    """Extract, score and save one vector, append its metrics row, and return the row.

    A :class:`DegenerateLayerError` (no direction at this layer) is logged as a row with
    ``"degenerate"`` (its reason) and no vector file.
    """
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
        append_jsonl(out / METRICS_LOG, row)
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
    append_jsonl(out / METRICS_LOG, row)
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
) -> ExtractionSummary:
    """Run (or resume) extraction of one trait into ``out_dir``; see the module docstring.

    While another run of the same folder holds its lock, this one logs whom it waits for and
    waits (up to ``lock_timeout`` seconds when given, then
    :class:`~trait_lab.core.locks.LockTimeoutError`).

    Example:
        >>> summary = extract_trait(model, tokenizer, "optimism", "out")  # doctest: +SKIP
        >>> summary.best("probe")["layer"]  # doctest: +SKIP
    """
    dataset = trait if isinstance(trait, TraitDataset) else load_trait(trait)
    plan = plan_extraction(model, dataset, settings or ExtractionSettings())
    out = Path(out_dir)
    hashes = (plan.inputs()["hash"], plan.legacy_hash)
    claim_folder(out, hashes, overwrite)  # refuse others' outputs before taking the lock
    with hold_lock(out / LOCK, f"run of this extraction ({dataset.name})", lock_timeout):
        claim = claim_folder(out, hashes, overwrite)
        return _extract(out, model, tokenizer, plan, claim, progress)


def _extract(
    out: Path, model: Any, tokenizer: Any, plan: ExtractionPlan, claim: Claim, progress: bool
) -> ExtractionSummary:
    """The run itself, under the folder's lock; ``claim`` says what ``out`` holds now."""
    name = plan.dataset.name
    notes: list[str] = []
    run = ResumableRun(f"extraction of {name}", errors=_UNUSABLE)
    resume = run if claim == "resume" else None
    generated, new_responses = _generated(out, model, tokenizer, plan, resume)
    capture = _capturer(model, tokenizer, plan, generated)
    rows = read_log(out) if resume else {}
    hidden = int(plan.model_id["hidden"])

    def done(job: Job) -> bool:  # logged AND (degenerate, or its file verifies)
        row = rows.get(job)
        if row is None:
            return False
        path = vector_path(out, *job)
        return "degenerate" in row or run.done(path, _noting(notes, vector_loader(hidden, row)))

    todo = run.pending(plan.jobs, done) if resume else plan.jobs
    claimed = resume is not None
    with tqdm(
        total=len(plan.jobs), initial=run.skipped, desc=f"extracting {name}", disable=not progress
    ) as bar:
        for component in plan.settings.components:
            acts, captured = _activations(out, plan, component, capture, resume, notes)
            if not claimed:  # the first capture succeeded: every setting works on this model
                commit_folder(out, plan.inputs(), claim)
                claimed = True
            if new_responses:
                atomic_write_json(out / "responses.json", generated)
                new_responses = False
            if captured:
                _save_activations(activations_path(out, component), acts)
            for job in (job for job in todo if job[0] == component):
                rows[job] = _extract_one(out, plan, job, acts, run)
                bar.update()
    return _finish(out, model, plan, rows, run, notes)


def _finish(
    out: Path,
    model: Any,
    plan: ExtractionPlan,
    rows: dict[Job, dict[str, Any]],
    run: ResumableRun,
    notes: list[str],
) -> ExtractionSummary:
    """Write ``metrics.csv`` and ``metadata.json``; the summary of the run."""
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
        out, table, computed=run.computed, skipped=run.skipped, notes=notes, degenerate=degenerate
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
    **settings: Any,
) -> ExtractionSummary:
    """Extract a trait for an experiment's model variant into its extraction folder.

    ``model``/``tokenizer`` may be passed when already loaded (they must be the variant's).
    Keyword ``settings`` are ``ExtractionSettings`` fields (lists are accepted). Every name
    and setting is checked before the model is loaded.
    """

    config = load_experiment_config(experiment, root)
    chosen = config.variant(variant)
    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()
    }
    checked = ExtractionSettings(**fields)
    dataset = load_trait(trait)
    out = extraction_dir(experiment, dataset.name, chosen.name, root)
    if model is None or tokenizer is None:
        model, tokenizer = load_model(chosen.model)
    return extract_trait(
        model, tokenizer, dataset, out, checked, overwrite=overwrite, progress=progress
    )
