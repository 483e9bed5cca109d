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
log is append-only; a :class:`~trait_lab.core.runs.ResumableRun` skips every vector whose
metrics row is logged and whose file loads, so a killed run resumes where it stopped, a
damaged file is recomputed (with a logged warning), and re-running with the same inputs does
nothing. The steps: :func:`~trait_lab.extraction.plan.plan_extraction` checks the settings,
``_claim`` checks ``inputs.json`` against them, ``_activations`` captures (or reloads) each
component, ``_extract_one`` computes, scores and saves one vector, ``_finish`` writes the
tables.

Example:
    >>> summary = run_extraction("default", "optimism", methods=["mean_diff"])  # doctest: +SKIP
    >>> summary.best("mean_diff")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import shutil
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
from trait_lab.core.jsonl import append_jsonl, read_jsonl
from trait_lab.core.paths import activations_dir, activations_path, metadata_path, vectors_dir
from trait_lab.core.runs import ResumableRun
from trait_lab.core.types import ActivationMetadata, save_json
from trait_lab.extraction.methods import get_method
from trait_lab.extraction.outputs import INPUTS, ExtractionSummary, extraction_dir, vector_path
from trait_lab.extraction.plan import ExtractionPlan, ExtractionSettings, plan_extraction
from trait_lab.generation.backends import GenerationConfig, LocalBackend
from trait_lab.io.vectors import load_vector, save_vector
from trait_lab.math.linalg import batch_cosine_similarity
from trait_lab.math.metrics import accuracy, effect_size, polarity_correct
from trait_lab.models.loading import load_model
from trait_lab.traits.dataset import TraitDataset, load_trait
from trait_lab.traits.format import Pole

__all__ = ["METRICS_LOG", "ExtractionSettings", "extract_trait", "run_extraction"]

logger = logging.getLogger("trait_lab.extraction.pipeline")

METRICS_LOG = "metrics.jsonl"
_FP16_MAX = 60000.0
#: what loading a damaged output raises: the unit is recomputed
_UNUSABLE = (OSError, ValueError, SafetensorError)

_Job = tuple[str, str, int]  # (component, method, layer)
_Capture = Callable[[Pole, str], torch.Tensor]
_POLES: tuple[Pole, Pole] = ("positive", "negative")


def _read_log(path: Path) -> dict[_Job, dict[str, Any]]:
    return {(r["component"], r["method"], int(r["layer"])): r for r in read_jsonl(path)}


def _storage(t: torch.Tensor) -> torch.Tensor:
    return t.half() if float(t.abs().max()) < _FP16_MAX else t.float()


def _activations(
    out: Path, plan: ExtractionPlan, component: str, capture: _Capture, run: ResumableRun
) -> tuple[torch.Tensor, torch.Tensor]:
    """``pos``/``neg`` ``[pairs, layers, hidden]`` of one component: reloaded, or captured."""
    shape = (len(plan.dataset.pairs), len(plan.layers))

    def load(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
        stored = load_file(str(path))
        pos, neg = stored.get("pos"), stored.get("neg")
        if pos is None or neg is None or pos.shape[:2] != shape or neg.shape != pos.shape:
            raise ValueError(
                f"{path} does not hold pos/neg activations of {shape[0]} pairs x {shape[1]} layers"
            )
        return pos, neg

    path = activations_path(out, component)
    stored = run.load(path, load)
    if stored is not None:
        return stored
    pos = _storage(capture("positive", component))
    neg = _storage(capture("negative", component))
    atomic_write(path, lambda tmp: save_file({"pos": pos, "neg": neg}, str(tmp)))
    return pos, neg


def _generated(
    out: Path, model: Any, tokenizer: Any, plan: ExtractionPlan, run: ResumableRun
) -> dict[Pole, list[str]] | None:
    """Responses generated under each pole's system prompt, cached in ``responses.json``."""
    settings, dataset = plan.settings, plan.dataset
    if not settings.generate_responses:
        return None
    path = out / "responses.json"

    def load(p: Path) -> dict[Pole, list[str]]:
        cached = json.loads(p.read_text())
        if not all(len(cached.get(pole, ())) == len(dataset.pairs) for pole in _POLES):
            raise ValueError(f"{p} does not hold {len(dataset.pairs)} responses per pole")
        return cached

    cached = run.load(path, load)
    if cached is not None:
        return cached
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
    atomic_write_json(path, responses)
    return responses


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
    out: Path,
    plan: ExtractionPlan,
    job: _Job,
    acts: tuple[torch.Tensor, torch.Tensor],
    run: ResumableRun,
) -> dict[str, Any]:
    """Extract, score and save one vector, append its metrics row, and return the row."""
    component, method_name, layer = job
    li = plan.layers.index(layer)
    pos, neg = acts[0][:, li].float(), acts[1][:, li].float()
    train, val = torch.tensor(plan.train), torch.tensor(plan.val)
    # a different random direction per layer, so the baseline averages to chance
    seed = plan.settings.seed * 1000 + layer
    options = {"seed": seed} if method_name == "random_baseline" else {}
    result = get_method(method_name).extract(pos[train], neg[train], **options)
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

    run.save(vector_path(out, *job), save)
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
) -> ExtractionSummary:
    """Run (or resume) extraction of one trait into ``out_dir``; see the module docstring.

    Example:
        >>> summary = extract_trait(model, tokenizer, "optimism", "out")  # doctest: +SKIP
        >>> summary.best("probe")["layer"]  # doctest: +SKIP
    """
    dataset = trait if isinstance(trait, TraitDataset) else load_trait(trait)
    plan = plan_extraction(model, dataset, settings or ExtractionSettings())
    out = Path(out_dir)
    _claim(out, plan, overwrite)
    run = ResumableRun(f"extraction of {dataset.name}", errors=_UNUSABLE)
    capture = _capturer(model, tokenizer, plan, _generated(out, model, tokenizer, plan, run))
    rows = _read_log(out / METRICS_LOG)
    # a vector is done when its metrics row is logged AND its file loads
    todo = run.pending(
        plan.jobs, lambda job: job in rows and run.done(vector_path(out, *job), load_vector)
    )
    desc = f"extracting {dataset.name}"
    with tqdm(total=len(plan.jobs), initial=run.skipped, desc=desc, disable=not progress) as bar:
        for component in plan.settings.components:
            acts = _activations(out, plan, component, capture, run)
            for job in (job for job in todo if job[0] == component):
                rows[job] = _extract_one(out, plan, job, acts, run)
                bar.update()
    return _finish(out, model, plan, rows, run)


def _claim(out: Path, plan: ExtractionPlan, overwrite: bool) -> None:
    """Make ``out`` hold this plan's outputs: refuse (or, with ``overwrite``, clear) others."""
    inputs = plan.inputs()
    path = out / INPUTS
    if path.exists():
        previous = json.loads(path.read_text()).get("hash")
        if previous != inputs["hash"] and not overwrite:
            raise ValueError(
                f"{out} holds outputs made from different inputs (trait data, settings or "
                "model changed). Pass overwrite=True (--overwrite on the command line) to "
                "replace them, or choose another experiment/variant folder."
            )
        if previous != inputs["hash"]:
            for folder in (activations_dir(out), vectors_dir(out)):
                shutil.rmtree(folder, ignore_errors=True)
            for name in (METRICS_LOG, "metrics.csv"):
                (out / name).unlink(missing_ok=True)
            metadata_path(out).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, inputs)


def _finish(
    out: Path, model: Any, plan: ExtractionPlan, rows: dict[_Job, dict[str, Any]], run: ResumableRun
) -> ExtractionSummary:
    """Write ``metrics.csv`` and ``metadata.json``; the summary of the run."""
    done = [rows[job] for job in plan.jobs]
    table = pd.DataFrame([{k: v for k, v in r.items() if k != "diagnostics"} for r in done])
    atomic_write_text(out / "metrics.csv", table.to_csv(index=False))
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
    return ExtractionSummary(out, table, computed=run.computed, skipped=run.skipped)


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
    Keyword ``settings`` are ``ExtractionSettings`` fields (lists are accepted).
    """

    config = load_experiment_config(experiment, root)
    chosen = config.variant(variant)
    if model is None or tokenizer is None:
        model, tokenizer = load_model(chosen.model)
    fields: dict[str, Any] = {
        k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()
    }
    dataset = load_trait(trait)
    out = extraction_dir(experiment, dataset.name, chosen.name, root)
    return extract_trait(
        model,
        tokenizer,
        dataset,
        out,
        ExtractionSettings(**fields),
        overwrite=overwrite,
        progress=progress,
    )
