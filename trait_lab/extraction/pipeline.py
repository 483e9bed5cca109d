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

Every file is written atomically and the metrics log is append-only, so a killed run resumes
where it stopped, and re-running with the same inputs does nothing.

Example:
    >>> summary = run_extraction("default", "optimism", methods=["mean_diff"])  # doctest: +SKIP
    >>> summary.best("mean_diff")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from trait_lab.activations.capture import capture_at_position
from trait_lab.core.atomic import atomic_write, atomic_write_json, atomic_write_text
from trait_lab.core.experiments import load_experiment_config
from trait_lab.core.types import ActivationMetadata, save_json
from trait_lab.extraction.methods import METHODS, get_method
from trait_lab.extraction.outputs import INPUTS, ExtractionSummary, extraction_dir, vector_path
from trait_lab.generation.backends import GenerationConfig, LocalBackend
from trait_lab.io.vectors import save_vector
from trait_lab.math.linalg import batch_cosine_similarity
from trait_lab.math.metrics import accuracy, effect_size, polarity_correct
from trait_lab.models.identity import model_identity
from trait_lab.models.loading import load_model
from trait_lab.traits.dataset import TraitDataset, load_trait
from trait_lab.traits.format import Pole

logger = logging.getLogger("trait_lab.extraction.pipeline")

METRICS_LOG = "metrics.jsonl"
_FP16_MAX = 60000.0


@dataclass(frozen=True)
class ExtractionSettings:
    """What an extraction run does; part of the inputs hash."""

    methods: tuple[str, ...] = METHODS
    components: tuple[str, ...] = ("residual",)
    layers: tuple[int, ...] | None = None
    position: str | None = None
    val_fraction: float = 0.2
    seed: int = 0
    batch_size: int = 8
    generate_responses: bool = False
    max_new_tokens: int = 32

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"unknown methods {unknown or '[]'}; choose from {', '.join(METHODS)}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")


def _hash_inputs(trait: TraitDataset, settings: ExtractionSettings, model_id: dict) -> str:
    content = {
        "kind": trait.kind,
        "position": trait.recommended_position,
        "pairs": [asdict(p) for p in trait.pairs],
    }
    payload = json.dumps(
        {"trait": content, "settings": asdict(settings), "model": model_id}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _read_log(path: Path) -> dict[tuple[str, str, int], dict[str, Any]]:
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    if not path.exists():
        return rows
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            if i == len(lines) - 1:  # a write cut short by a kill: drop it, redo that row
                logger.warning("dropping a truncated last line in %s", path)
                atomic_write_text(path, "".join(kept + "\n" for kept in lines[:i]))
                continue
            raise ValueError(
                f"{path} line {i + 1} is not valid JSON; delete the file to redo"
            ) from exc
        rows[(row["component"], row["method"], int(row["layer"]))] = row
    return rows


def _append(path: Path, row: dict[str, Any]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(row) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def _storage(t: torch.Tensor) -> torch.Tensor:
    return t.half() if float(t.abs().max()) < _FP16_MAX else t.float()


def _activations(
    out_dir: Path, component: str, capture: Callable[[Pole, str], torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:

    path = out_dir / "activations" / f"{component}.safetensors"
    if path.exists():
        stored = load_file(str(path))
        return stored["pos"], stored["neg"]
    pos = _storage(capture("positive", component))
    neg = _storage(capture("negative", component))
    atomic_write(path, lambda tmp: save_file({"pos": pos, "neg": neg}, str(tmp)))
    return pos, neg


def _generated(
    out: Path, model: Any, tokenizer: Any, dataset: TraitDataset, settings: ExtractionSettings
) -> dict[Pole, list[str]] | None:
    """Responses generated under each pole's system prompt, cached in ``responses.json``."""
    if not settings.generate_responses:
        return None
    path = out / "responses.json"
    if path.exists():
        return json.loads(path.read_text())

    backend = LocalBackend.from_model(model, tokenizer)
    config = GenerationConfig(
        max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size
    )
    poles: tuple[Pole, Pole] = ("positive", "negative")
    responses = {pole: backend.generate(dataset.prompts(pole), config) for pole in poles}
    for pole, texts in responses.items():
        empty = [dataset.pairs[i].id for i, text in enumerate(texts) if not text.strip()]
        if empty:
            raise ValueError(
                f"the model gave empty {pole} responses for pairs {empty[:5]}; raise "
                "max_new_tokens, or extract at the prompt (generate_responses=False)"
            )
    atomic_write_json(path, responses)
    return responses


def _score(vector: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> dict[str, Any]:
    p = batch_cosine_similarity(pos, vector)
    n = batch_cosine_similarity(neg, vector)
    return {
        "accuracy": accuracy(p, n),
        "effect_size": effect_size(p, n, signed=True),
        "polarity_correct": bool(polarity_correct(p, n)),
    }


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
    """Run (or resume) extraction of one trait into ``out_dir``; see the module docstring."""
    settings = settings or ExtractionSettings()
    dataset = trait if isinstance(trait, TraitDataset) else load_trait(trait)
    out = Path(out_dir)
    digest = _hash_inputs(dataset, settings, model_identity(model))
    inputs_path = out / INPUTS
    if inputs_path.exists():
        previous = json.loads(inputs_path.read_text()).get("hash")
        if previous != digest and not overwrite:
            raise ValueError(
                f"{out} holds outputs made from different inputs (trait data, settings or "
                "model changed). Pass overwrite=True (--overwrite on the command line) to "
                "replace them, or choose another experiment/variant folder."
            )
        if previous != digest:
            _clear(out)
    out.mkdir(parents=True, exist_ok=True)
    n_layers = int(model.config.num_hidden_layers)
    layers = list(range(n_layers)) if settings.layers is None else list(settings.layers)
    if settings.generate_responses and dataset.kind != "system_prompt":
        raise ValueError(
            f"generate_responses=True needs a system_prompt trait; {dataset.name!r} is a "
            f"{dataset.kind!r} trait whose pairs already carry their responses"
        )
    default_position = "response[:]" if settings.generate_responses else None
    position = settings.position or default_position or dataset.recommended_position
    train_pairs, val_pairs = dataset.split(settings.val_fraction, settings.seed)
    if len(val_pairs) < 2:
        raise ValueError(
            f"trait {dataset.name!r} has {len(dataset.pairs)} pairs, so val_fraction="
            f"{settings.val_fraction} holds out {len(val_pairs)}; effect sizes need at least 2 "
            "validation pairs. Add pairs (20 or more is a good start) or raise val_fraction."
        )
    for name in settings.methods:
        needed = get_method(name).min_per_class
        if len(train_pairs) < needed:
            raise ValueError(
                f"method {name!r} needs at least {needed} training pairs, but trait "
                f"{dataset.name!r} leaves {len(train_pairs)} for training; add pairs or drop "
                "the method"
            )
    atomic_write_json(
        inputs_path,
        {
            "hash": digest,
            "trait": dataset.name,
            "settings": asdict(settings),
            "position": position,
            "model": model_identity(model),
            "pair_ids": [p.id for p in dataset.pairs],
            "split": {"train": [p.id for p in train_pairs], "val": [p.id for p in val_pairs]},
        },
    )
    index = {pair.id: i for i, pair in enumerate(dataset.pairs)}
    train = torch.tensor([index[p.id] for p in train_pairs])
    val = torch.tensor([index[p.id] for p in val_pairs])

    generated = _generated(out, model, tokenizer, dataset, settings)

    def capture(pole: Pole, component: str) -> torch.Tensor:
        responses = generated[pole] if generated else dataset.responses(pole)
        acts = capture_at_position(
            model,
            tokenizer,
            dataset.prompts(pole),
            layers,
            position,
            pool="mean",
            responses=responses,
            component=component,
            batch_size=settings.batch_size,
        )
        assert isinstance(acts, torch.Tensor)
        return acts if acts.dim() == 3 else acts.unsqueeze(1)

    done = _read_log(out / METRICS_LOG)
    summary = ExtractionSummary(out, pd.DataFrame())
    jobs = [
        (c, m, layer) for c in settings.components for m in settings.methods for layer in layers
    ]
    bar = _progress(len(jobs), progress, f"extracting {dataset.name}")
    for component in settings.components:
        pos_all, neg_all = _activations(out, component, capture)
        for method_name in settings.methods:
            method = get_method(method_name)
            for li, layer in enumerate(layers):
                key = (component, method_name, layer)
                path = vector_path(out, component, method_name, layer)
                if key in done and path.exists():
                    summary.skipped += 1
                    bar(1)
                    continue
                pos, neg = pos_all[:, li].float(), neg_all[:, li].float()
                # a different random direction per layer, so the baseline averages to chance
                options = (
                    {"seed": settings.seed * 1000 + layer}
                    if method_name == "random_baseline"
                    else {}
                )
                result = method.extract(pos[train], neg[train], **options)
                scores = _score(result.vector, pos[val], neg[val])
                train_scores = _score(result.vector, pos[train], neg[train])
                save_vector(
                    result.vector,
                    path,
                    trait=dataset.name,
                    method=method_name,
                    layer=layer,
                    component=component,
                    position=position,
                )
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
                _append(out / METRICS_LOG, row)
                done[key] = row
                summary.computed += 1
                bar(1)
    rows = [done[(c, m, layer)] for c, m, layer in jobs]
    table = pd.DataFrame([{k: v for k, v in r.items() if k != "diagnostics"} for r in rows])
    atomic_write_text(out / "metrics.csv", table.to_csv(index=False))
    _write_metadata(out, model, layers, settings, position, len(dataset.pairs))
    summary.metrics = table
    return summary


def _write_metadata(
    out: Path,
    model: Any,
    layers: Sequence[int],
    settings: ExtractionSettings,
    position: str,
    n_pairs: int,
) -> None:

    path = out / "activations" / f"{settings.components[0]}.safetensors"
    stored = load_file(str(path))
    both = torch.cat([stored["pos"], stored["neg"]]).float()
    norms = {layer: float(both[:, i].norm(dim=-1).mean()) for i, layer in enumerate(layers)}
    meta = ActivationMetadata(
        model=model_identity(model)["name_or_path"] or model_identity(model)["model_type"],
        n_layers=int(model.config.num_hidden_layers),
        hidden_dim=int(model.config.hidden_size),
        captured_layers=tuple(layers),
        components=tuple(settings.components),
        position=position,
        n_samples=2 * n_pairs,
        activation_norms=norms,
        dtype=str(stored["pos"].dtype).replace("torch.", ""),
    )
    save_json(meta, out / "metadata.json")


def _clear(out: Path) -> None:

    for name in ("activations", "vectors"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (METRICS_LOG, "metrics.csv", "metadata.json"):
        (out / name).unlink(missing_ok=True)


def _progress(total: int, enabled: bool, desc: str) -> Callable[[int], None]:
    if not enabled:
        return lambda n: None

    bar = tqdm(total=total, desc=desc)
    return lambda n: bar.update(n)


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
