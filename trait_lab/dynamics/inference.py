"""Inference: generate (or teacher-force) responses and write per-token projection records.

:func:`project_prompts` runs each prompt alone (no padding), captures the residual stream at
the needed layers in fp32 (prompt tokens included) and builds one
:class:`~trait_lab.dynamics.records.ProjectionRecord` per prompt. :func:`run_inference`
writes them to ``experiments/<exp>/inference/<variant>/projections/<prompt_set>/<i>.json``
(:func:`~trait_lab.core.paths.records_dir`), skipping prompts whose record already loads
(a :class:`~trait_lab.core.runs.ResumableRun`: a killed run resumes, a damaged record is
rewritten with a logged warning).

Before anything is written, :func:`run_inference` checks the names (folder names), the variant
(one of the experiment's ``config.json`` variants; without a ``model`` the config is required
and the variant's own model is loaded), the ``inputs.json`` it finds and every vector's width.
A run killed while calibrating resumes the calibration where it stopped, so its records equal
an uninterrupted run's.

A trait is either ``{layer: vector}`` (one vector per layer) or a
:class:`~trait_lab.core.types.ProjectionConfig` whose vectors all sit at one layer (residual
only); a config's vectors are loaded by ``vector_loader(trait, spec)`` —
:func:`run_inference` loads them from the experiment's extraction folder.

Example:
    >>> paths = run_inference("demo", "smoke", ["Hi!"], {"optimism": {9: v}})  # doctest: +SKIP
    >>> load_record(paths[0]).cleaned("optimism", 9, "top5")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from trait_lab.core.atomic import atomic_write_json
from trait_lab.core.distributed import Ranks, current_ranks
from trait_lab.core.paths import extraction_dir, record_path, records_dir, vector_path
from trait_lab.core.runs import ResumableRun
from trait_lab.core.types import ProjectionConfig, VectorSpec
from trait_lab.dynamics.calibration import (
    experiment_variant,
)
from trait_lab.dynamics.records import (
    Members,
    ProjectionRecord,
    build_record,
    load_record,
)
from trait_lab.dynamics.run_calibration import calibrate_from_run
from trait_lab.generation.backends import LocalBackend
from trait_lab.generation.configs import CaptureConfig, SamplingConfig
from trait_lab.generation.generator import HookedGenerator
from trait_lab.hooks.capture import MultiLayerCapture
from trait_lab.io.vectors import load_vector
from trait_lab.models.architectures import hidden_size, input_device
from trait_lab.prompts.formatting import PromptLike, encode_text, format_prompt, uses_chat_template

__all__ = [
    "TraitInput",
    "VectorLoader",
    "check_widths",
    "project_prompts",
    "records_dir",
    "run_inference",
]

INPUTS_NAME = "inputs.json"
TraitInput = ProjectionConfig | Mapping[int, torch.Tensor]
VectorLoader = Callable[[str, VectorSpec], torch.Tensor]


def resolve_traits(
    traits: Mapping[str, TraitInput], vector_loader: VectorLoader | None = None
) -> dict[str, Members]:
    """``{trait: {layer: [(normalized weight, vector), ...]}}`` from the accepted trait forms.

    Example:
        >>> resolve_traits({"t": {2: torch.ones(4)}})["t"][2][0][0]
        1.0
    """
    if not traits:
        raise ValueError(
            "traits is empty; pass {name: {layer: vector}} or {name: ProjectionConfig}"
        )
    out: dict[str, Members] = {}
    for name, trait in traits.items():
        if isinstance(trait, ProjectionConfig):
            out[name] = _resolve_config(name, trait, vector_loader)
        elif isinstance(trait, Mapping) and trait:
            out[name] = {int(layer): [(1.0, torch.as_tensor(v))] for layer, v in trait.items()}
        else:
            raise TypeError(
                f"trait {name!r} is {type(trait).__name__}; pass {{layer: vector}} or a "
                "ProjectionConfig"
            )
    return out


def _resolve_config(name: str, config: ProjectionConfig, loader: VectorLoader | None) -> Members:
    layers = sorted({v.layer for v in config.vectors})
    comps = sorted({v.component for v in config.vectors})
    if len(layers) != 1 or comps != ["residual"]:
        raise ValueError(
            f"trait {name!r}: an ensemble must use residual vectors at ONE layer (got layers "
            f"{layers}, components {comps}); split it into one trait per layer"
        )
    if loader is None:
        raise ValueError(
            f"trait {name!r} is a ProjectionConfig but no vector_loader was given; pass "
            "vector_loader=(trait, spec) -> tensor, use run_inference, or pass {layer: vector}"
        )
    weights = config.normalized_weights
    return {layers[0]: [(w, loader(name, s)) for w, s in zip(weights, config.vectors, strict=True)]}


def check_widths(traits: Mapping[str, Members], model: nn.Module) -> None:
    """Refuse a vector that is not ``[hidden_size]`` of ``model`` (before any forward).

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> check_widths({"t": {1: [(1.0, torch.ones(32))]}}, tiny_model())
    """
    width = hidden_size(model)
    for name, per_layer in traits.items():
        for layer, members in per_layer.items():
            for _, vector in members:
                if vector.numel() != width:
                    raise ValueError(
                        f"trait {name!r} layer {layer}: the vector has width {vector.numel()} "
                        f"(shape {tuple(vector.shape)}) but the model's hidden size is {width}; "
                        f"pass vectors extracted from this model (shape [{width}])"
                    )


def _capture(
    model: nn.Module,
    prompt_ids: list[int],
    response_ids: list[int] | None,
    layers: list[int],
    max_new_tokens: int,
    sampling: SamplingConfig | None,
) -> tuple[list[int], dict[int, torch.Tensor]]:
    """Response ids and ``{layer: [prompt + response tokens, hidden]}`` fp32 residuals."""
    device = input_device(model)
    if response_ids is not None:
        ids = torch.tensor([prompt_ids + response_ids], device=device)
        with (
            torch.no_grad(),
            MultiLayerCapture(model, layers, to_cpu=True, dtype=torch.float32) as c,
        ):
            model(input_ids=ids)
            return response_ids, {layer: c.get(layer)[0] for layer in layers}
    capture = CaptureConfig(layers, prompt=True, dtype=torch.float32)
    result = HookedGenerator(model).generate(
        torch.tensor([prompt_ids]),
        max_new_tokens=max_new_tokens,
        capture=capture,
        sampling=sampling,
    )[0]
    prompt_acts, new_acts = result.prompt_activations, result.activations
    acts = {
        layer: torch.cat([prompt_acts[layer]["residual"], new_acts[layer]["residual"]]).cpu()
        for layer in layers
    }
    return result.token_ids, acts


def project_prompts(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[PromptLike],
    traits: Mapping[str, TraitInput],
    calibration: Mapping[str, Any],
    *,
    responses: Sequence[str] | None = None,
    max_new_tokens: int = 48,
    layers: Sequence[int] | None = None,
    vector_loader: VectorLoader | None = None,
    sampling: SamplingConfig | None = None,
    progress: bool = False,
) -> list[ProjectionRecord]:
    """One :class:`ProjectionRecord` per prompt: generated (greedy by default) or teacher-forced.

    Args:
        prompts: user messages or conversations (rendered with :func:`format_prompt`).
        traits: ``{name: {layer: vector}}`` or ``{name: ProjectionConfig}`` (see module doc).
        calibration: a :func:`~trait_lab.dynamics.calibration.ensure_calibration` record.
        responses: given responses (tokenized on their own, no special tokens) to
            teacher-force instead of generating.
        layers: extra layers to record norms and dim values for (trait layers always are).
        progress: show a progress bar over the prompts.

    Example:
        >>> recs = project_prompts(model, tok, ["Hi"], {"t": {1: v}}, cal)  # doctest: +SKIP
        >>> recs[0].boundary == len(recs[0].prompt_tokens)  # doctest: +SKIP
        True
    """
    if responses is not None and len(responses) != len(prompts):
        raise ValueError(f"{len(responses)} responses for {len(prompts)} prompts; give one each")
    resolved = resolve_traits(traits, vector_loader)
    check_widths(resolved, model)
    needed = sorted({layer for per in resolved.values() for layer in per} | set(layers or ()))
    chat = uses_chat_template(tokenizer)
    records = []
    with tqdm(prompts, desc="projecting", unit="prompt", disable=not progress) as bar:
        for i, prompt in enumerate(bar):
            text = format_prompt(tokenizer, prompt)
            prompt_ids = encode_text(tokenizer, text, chat=chat)
            given = None
            if responses is not None:
                given = list(tokenizer(responses[i], add_special_tokens=False)["input_ids"])
            response_ids, acts = _capture(
                model, prompt_ids, given, needed, max_new_tokens, sampling
            )
            records.append(
                build_record(
                    prompt=text,
                    response=tokenizer.decode(response_ids, skip_special_tokens=True),
                    prompt_ids=prompt_ids,
                    response_ids=response_ids,
                    tokenizer=tokenizer,
                    activations=acts,
                    traits=resolved,
                    calibration=calibration,
                )
            )
    return records


def _extraction_loader(
    experiment: str, variant: str, root: str | os.PathLike[str] | None
) -> VectorLoader:
    def load(trait: str, spec: VectorSpec) -> torch.Tensor:
        folder = extraction_dir(experiment, trait, variant, root)
        vector = load_vector(vector_path(folder, spec.component, spec.method, spec.layer))
        assert isinstance(vector, torch.Tensor)
        return vector.float()

    return load


def run_inference(
    experiment: str,
    prompt_set_name: str,
    prompts: Sequence[PromptLike],
    traits: Mapping[str, TraitInput],
    variant: str = "instruct",
    root: str | os.PathLike[str] | None = None,
    model: nn.Module | None = None,
    tokenizer: Any = None,
    *,
    responses: Sequence[str] | None = None,
    max_new_tokens: int = 48,
    layers: Sequence[int] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    ranks: Ranks | None = None,
) -> list[Path]:
    """Write one record per prompt (``<i>.json``); prompts whose record loads are skipped.

    Under ``torchrun`` (``ranks``, default :func:`~trait_lab.core.distributed.current_ranks`)
    every rank calls this with the same arguments: the pending prompts are shared among the
    ranks (each writes its own records), the calibration is collected by all of them and
    merged exactly (:mod:`~trait_lab.dynamics.run_calibration`), and every rank returns once
    all records are written.

    The folder remembers what its records were made from (``inputs.json``: prompts, traits'
    vectors, responses, settings); a rerun with different inputs is refused unless
    ``overwrite=True``, which deletes the old records first.

    On a variant's first run the massive-dim calibration is collected passively from the
    prefill of these prompts (topped up with the neutral set); the records need its candidate
    dims, so this happens before the first record is written. Later runs reuse the file. Without
    ``model`` the variant's model (from the experiment's ``config.json``) is loaded.
    ``progress`` shows bars for the calibration and the records. Returns every record's path,
    in prompt order.

    Raises (before anything is written): ``ValueError`` for a name that cannot be a folder,
    a variant missing from the experiment's ``config.json``, a corrupt ``inputs.json`` or a
    vector whose width is not the model's hidden size; ``FileNotFoundError`` when ``model`` is
    not given and the experiment has no ``config.json`` (the variant's model is unknown).

    Example:
        >>> traits = {"t": {9: v}}  # doctest: +SKIP
        >>> run_inference("demo", "smoke", ["Hi"], traits, model=m, tokenizer=t)  # doctest: +SKIP
        [PosixPath('experiments/demo/inference/instruct/projections/smoke/0.json')]
    """
    folder = records_dir(experiment, variant, prompt_set_name, root)
    experiment_variant(experiment, variant, root)
    ranks = ranks or current_ranks()
    loader = _extraction_loader(experiment, variant, root)
    resolved = resolve_traits(traits, loader)
    fingerprint = _fingerprint(prompts, resolved, responses, max_new_tokens, layers)
    previous = ranks.on_main(lambda: _previous_fingerprint(folder, fingerprint, overwrite))
    paths = [record_path(folder, i) for i in range(len(prompts))]
    run = ResumableRun(f"inference into {folder}")

    def pending() -> list[int]:
        if previous not in (None, fingerprint):  # overwrite=True: every record is redone
            return list(range(len(paths)))
        return run.pending(range(len(paths)), lambda i: run.done(paths[i], load_record))

    todo: list[int] = ranks.on_main(pending)
    if todo and (model is None or tokenizer is None):
        root_name = None if root is None else os.fspath(root)
        backend = LocalBackend.from_experiment(
            experiment, variant, root=root_name, device=ranks.model_device()
        )
        model, tokenizer = backend.model, backend.tokenizer
    if todo and model is not None:
        check_widths(resolved, model)
    if previous != fingerprint:
        ranks.on_main(lambda: _write_inputs(folder, fingerprint, wipe=previous is not None))
    if not todo or model is None:
        return paths
    calibration = calibrate_from_run(
        model, tokenizer, experiment, variant, root, [prompts[i] for i in todo], progress, ranks
    )
    desc = f"inference {prompt_set_name}"
    mine = ranks.mine(todo)
    bar = tqdm(total=len(mine), desc=desc, unit="prompt", disable=not progress)
    with ranks.together(), bar:  # every rank's records are written, or every rank raises
        for i in mine:
            (record,) = project_prompts(
                model,
                tokenizer,
                [prompts[i]],
                traits,
                calibration,
                responses=None if responses is None else [responses[i]],
                max_new_tokens=max_new_tokens,
                layers=layers,
                vector_loader=loader,
            )
            run.save(paths[i], record.save)
            bar.update()
    return paths


def _fingerprint(
    prompts: Sequence[PromptLike],
    resolved: Mapping[str, Members],
    responses: Sequence[str] | None,
    max_new_tokens: int,
    layers: Sequence[int] | None,
) -> str:
    digest = hashlib.sha256()
    settings = [list(map(str, prompts)), responses, max_new_tokens, sorted(layers or ())]
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    for name, members in sorted(resolved.items()):
        digest.update(name.encode())
        for layer, entries in sorted(members.items()):
            digest.update(str(layer).encode())
            for weight, vector in entries:
                digest.update(repr(round(weight, 12)).encode())
                digest.update(
                    vector.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
                )
    return digest.hexdigest()


def _previous_fingerprint(folder: Path, fingerprint: str, overwrite: bool) -> str | None:
    """The fingerprint in ``folder/inputs.json`` (``None``: absent), checked against this run's.

    A different one needs ``overwrite=True``; so does a corrupt file (ValueError naming it and
    the fix), which then counts as different (``""``): its records are redone.
    """
    path = folder / INPUTS_NAME
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        data = f"not valid JSON ({exc})"
    previous = data.get("fingerprint") if isinstance(data, dict) else None
    if overwrite or previous == fingerprint:
        return previous if isinstance(previous, str) else ""
    if isinstance(previous, str):
        raise ValueError(
            f"{folder} holds records made from different prompts, traits or settings; "
            "pass overwrite=True to replace them, or use another prompt-set name"
        )
    raise ValueError(
        f'{path} is corrupt: expected {{"fingerprint": "<hex digest>"}}, got {data!r:.80}; '
        f"it records what the records in {folder} were made from, so they cannot be trusted: "
        "pass overwrite=True to delete them and rerun, or use another prompt-set name"
    )


def _write_inputs(folder: Path, fingerprint: str, wipe: bool) -> None:
    """Record ``fingerprint`` in ``inputs.json``; ``wipe`` first deletes the old records."""
    if wipe:
        for old in folder.glob("*.json"):
            old.unlink()
    atomic_write_json(folder / INPUTS_NAME, {"fingerprint": fingerprint})
