"""The one command line: ``trait-lab …`` (also ``python -m trait_lab …``).

* ``trait-lab extract --trait optimism`` — extract a trait's vectors for an experiment
  (``--generate-responses --backend vllm`` generates the responses with vLLM);
* ``trait-lab evaluate --trait optimism`` — does the trait's vector steer, where, how hard;
* ``trait-lab infer --prompt-set neutral --traits optimism`` — per-token projection records;
* ``trait-lab calibrate [--overwrite] [--prompt-set S [--per-token]]`` — find massive dims;
* ``trait-lab model fetch | info`` — prepare the embedded default model, list the cache.

``extract`` and ``infer`` also run data-parallel under ``torchrun`` (``torchrun
--nproc_per_node=2 -m trait_lab extract …``): every rank runs the same command, the work is
shared, rank 0 writes the usual outputs and prints the summary.

Example:
    >>> main(["model", "--help"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from trait_lab.cli_types import PROG, folder_name, percent, position, whole
from trait_lab.core.distributed import current_ranks
from trait_lab.core.experiments import load_experiment_config
from trait_lab.core.paths import check_name, experiments_root
from trait_lab.core.types import COMPONENTS, ProjectionConfig
from trait_lab.dynamics.calibration import ensure_calibration, research_calibration
from trait_lab.dynamics.inference import run_inference
from trait_lab.dynamics.massive import NEUTRAL_PROMPTS
from trait_lab.dynamics.per_token import PER_TOKEN_NAME
from trait_lab.evaluation.openai_judge import OpenAIJudge
from trait_lab.evaluation.search import SearchSettings
from trait_lab.extraction.methods import METHODS
from trait_lab.extraction.pipeline import run_extraction
from trait_lab.generation.precision import PRECISIONS
from trait_lab.generation.vllm import VLLMBackend
from trait_lab.models.cache import (
    DEFAULT_DIST,
    ChecksumError,
    ModelNotFoundError,
    cache_entries,
    cache_root,
    installed_default_gguf,
)
from trait_lab.models.loading import DEFAULT_MODEL, fetch_default_model, load_model
from trait_lab.prompts.prompt_sets import load_prompt_set
from trait_lab.serve.cli import add_serve_parser
from trait_lab.vectors.evaluate import run_evaluation
from trait_lab.vectors.selection import select_vectors


def _vllm(args: argparse.Namespace, sharded: bool) -> VLLMBackend | None:
    """``--backend vllm``: vLLM on ``--vllm-model`` (default: the variant's model) generates."""
    if args.backend != "vllm":
        if args.vllm_model is not None:
            raise ValueError("--vllm-model needs --backend vllm: add it, or drop --vllm-model")
        return None
    if not args.generate_responses or sharded:
        fix = "run it without torchrun" if sharded else "add --generate-responses"
        raise ValueError(
            f"--backend vllm generates the responses, in one process (vLLM schedules the GPU "
            f"itself): {fix}"
        )
    model = args.vllm_model or load_experiment_config(args.experiment).variant(args.variant).model
    if model is None:
        raise ValueError(
            f"--backend vllm needs a model vLLM can load, but this variant uses the embedded "
            f"{DEFAULT_MODEL} (a GGUF without a Hugging Face id): pass --vllm-model "
            "HuggingFaceTB/SmolLM2-135M-Instruct (its unquantized weights) or another id/folder"
        )
    return VLLMBackend(model)


def _extract(args: argparse.Namespace) -> int:
    ranks = current_ranks()
    backend = _vllm(args, ranks.sharded)  # fails (vLLM missing, bad flags) before the model loads
    if ranks.main:  # what is reused and what is computed
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    summary = run_extraction(
        args.experiment,
        args.trait,
        args.variant,
        methods=args.methods,
        components=args.components,
        layers=args.layers,
        position=args.position,
        generate_responses=args.generate_responses,
        overwrite=args.overwrite,
        progress=ranks.main,
        ranks=ranks,
        backend=backend,
    )
    if not ranks.main:
        return 0
    print(f"outputs in {summary.out_dir} ({summary.computed} computed, {summary.skipped} reused)")
    for note in summary.notes:  # degenerate layers, damaged files that were recomputed
        print(f"note: {note}")
    for row in summary.best_by_method().itertuples():
        print(
            f"{row.method:16s} best layer {row.layer:2d}: held-out accuracy "
            f"{row.val_accuracy:.2f}, effect size {row.val_effect_size:.2f}"
        )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    ranks = current_ranks()
    if ranks.main:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    settings = SearchSettings(
        start=args.start,
        fractions=tuple(args.fractions) if args.fractions else None,
        max_new_tokens=args.max_new_tokens,
        max_rounds=args.max_rounds,
    )
    judge = None
    if args.judge_url or args.judge_model:
        if not (args.judge_url and args.judge_model):
            raise ValueError("an LLM judge needs both --judge-url and --judge-model")
        cache = experiments_root() / ".judge_cache"
        judge = OpenAIJudge(args.judge_model, args.judge_url, cache_dir=cache)
    summary = run_evaluation(
        args.experiment,
        args.trait,
        args.variant,
        run=args.run_name,
        candidates=args.candidates,
        layers=args.layers,
        methods=args.methods,
        settings=settings,
        threshold=args.threshold,
        max_questions=args.questions,
        judge=judge,
        ranks=ranks,
        precision=args.precision,
    )
    if not ranks.main:
        return 0
    base = summary.report_baseline
    print(f"{summary.trait}: unsteered trait score {base.trait_mean:.1f} on the report questions")
    for direction in (1, -1):
        rec = summary.recommended(direction)
        if rec is None:
            print(f"  {direction:+d}: no coherent configuration moved the trait this way")
            continue
        state = "validated" if rec.validated else "NOT confirmed on the held-out questions"
        print(
            f"  {direction:+d}: {rec.search_key} (fraction {rec.fraction or 0:+.3f}): report "
            f"delta {rec.report_delta:+.1f}, coherence {rec.report_coherence:.0f} — {state}"
        )
    return 0


def _trait_config(args: argparse.Namespace, trait: str, variant: str) -> ProjectionConfig:
    """The vector a trait is projected on: ``--layer``/``--method``, else the best extracted."""
    if args.layer is not None and args.method is not None:
        return ProjectionConfig.single(args.layer, "residual", method=args.method)
    (best,) = select_vectors(
        args.experiment,
        trait,
        variant,
        n=1,
        methods=None if args.method is None else [args.method],
        layers=None if args.layer is None else [args.layer],
        source="extraction",
    )
    return ProjectionConfig.single(best.layer, best.component, method=best.method)


def _infer(args: argparse.Namespace) -> int:
    ranks = current_ranks()
    variant = load_experiment_config(args.experiment).variant(args.variant).name
    prompts = load_prompt_set(args.prompt_set)
    name = check_name(PROG, "prompt set", Path(args.prompt_set).stem)
    traits = {trait: _trait_config(args, trait, variant) for trait in args.traits}
    paths = run_inference(
        args.experiment,
        name,
        prompts,
        traits,
        variant,
        max_new_tokens=args.max_new_tokens,
        overwrite=args.overwrite,
        progress=ranks.main,
        ranks=ranks,
    )
    if ranks.main:
        described = ", ".join(
            f"{t} (L{c.vectors[0].layer} {c.vectors[0].method})" for t, c in traits.items()
        )
        print(f"{len(paths)} records in {paths[0].parent if paths else '-'}: {described}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    if args.per_token and args.prompt_set is None:
        raise ValueError(
            "--per-token is research mode and needs a prompt set: add --prompt-set S "
            "(e.g. --prompt-set neutral, or the path of a .txt file with one prompt a line)"
        )
    variant = load_experiment_config(args.experiment).variant(args.variant)
    if args.prompt_set is not None:
        load_prompt_set(args.prompt_set)  # an unknown set fails before the model loads
    ranks = current_ranks()  # under torchrun the ranks share the batches (calibrate)
    model, tokenizer = load_model(variant.model, device=ranks.model_device())
    if args.prompt_set is None:
        record = ensure_calibration(
            model, tokenizer, args.experiment, variant.name, overwrite=args.overwrite
        )
        where, note = "the variant's calibration", ""
        if record.get("prompt_source") != "neutral":
            note = (
                f"pass --overwrite to rebuild it from the {len(NEUTRAL_PROMPTS)} curated neutral "
                "prompts"
            )
    else:
        record, folder = research_calibration(
            model,
            tokenizer,
            args.experiment,
            variant.name,
            args.prompt_set,
            per_token=args.per_token,
        )
        where = str(folder)
        note = f"per-token values: {folder / PER_TOKEN_NAME}" if args.per_token else ""
    if not ranks.main:
        return 0
    source = " ".join(str(record[k]) for k in ("n_prompts", "prompt_source") if k in record)
    print(
        f"{where}: {record['tokens_seen']} tokens (prompts: {source or 'not recorded'}), "
        f"candidate dims {record['candidates']}"
    )
    for row in record["layers"]:
        dims = ", ".join(
            f"{d} ({m:.0f}, {r:.0f}x)"
            for d, m, r in zip(
                row["top_dims"][:3], row["top_max_abs"][:3], row["top_ratio"][:3], strict=True
            )
        )
        print(f"  layer {row['layer']:2d}: {dims}")
    if note:
        print(note)
    return 0


def _fmt_bytes(n: int) -> str:
    return f"{n / 1e6:.0f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _model_fetch(args: argparse.Namespace) -> int:
    root = cache_root(args.cache_dir)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    try:
        folder = fetch_default_model(root, local_files_only=args.offline)
        prepared = time.perf_counter() - start
        start = time.perf_counter()
        load_model(cache_dir=root, local_files_only=True)
    except (ModelNotFoundError, ChecksumError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    loaded = time.perf_counter() - start
    print(f"{DEFAULT_MODEL} ready in {folder}")
    print(f"prepared in {prepared:.1f} s; loads in {loaded:.1f} s")
    return 0


def _model_info(args: argparse.Namespace) -> int:
    root = cache_root(args.cache_dir)
    print(f"cache: {root}")
    entries = cache_entries(root)
    for entry in entries:
        status = "ok" if entry["problem"] is None else f"INVALID: {entry['problem']}"
        desc = ", ".join(x for x in (entry["source"], _fmt_bytes(entry["bytes"]), status) if x)
        print(f"  {entry['kind']:5} {entry['path']}  ({desc})")
    if not entries:
        print(f"  (empty; run `{PROG} model fetch`)")
    print(f"installed {DEFAULT_DIST} wheel: {installed_default_gguf() or 'no'}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Trait vectors for language models.")
    sub = parser.add_subparsers(dest="command", required=True)
    extract = sub.add_parser("extract", help="extract a trait's vectors for an experiment")
    extract.add_argument("--experiment", type=folder_name("experiment"), default="default")
    extract.add_argument("--trait", required=True, help="a starter trait name or a trait folder")
    extract.add_argument("--variant", default=None)
    extract.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    extract.add_argument("--components", nargs="+", default=["residual"], choices=COMPONENTS)
    extract.add_argument("--layers", nargs="+", type=whole(0), default=None)
    extract.add_argument("--position", type=position, default=None, help="e.g. 'response[:]'")
    extract.add_argument("--generate-responses", action="store_true")
    extract.add_argument("--backend", choices=("local", "vllm"), default="local", help="generates")
    extract.add_argument("--vllm-model", default=None, help="HF id or folder (default: variant's)")
    extract.add_argument("--overwrite", action="store_true")
    extract.set_defaults(run=_extract)
    evaluate = sub.add_parser(
        "evaluate", help="search steering coefficients for a trait's extracted vectors"
    )
    evaluate.add_argument("--experiment", type=folder_name("experiment"), default="default")
    evaluate.add_argument("--trait", required=True, help="a starter trait name or a trait folder")
    evaluate.add_argument("--variant", default=None)
    evaluate.add_argument(
        "--run", dest="run_name", type=folder_name("run"), default="default", help="run folder"
    )
    evaluate.add_argument("--candidates", type=whole(1), default=2, help="vectors to try")
    evaluate.add_argument("--layers", nargs="+", type=whole(0), default=None)
    evaluate.add_argument("--methods", nargs="+", default=None, choices=METHODS)
    evaluate.add_argument("--start", type=float, default=0.02, help="first fraction of the norm")
    evaluate.add_argument("--fractions", nargs="+", type=float, default=None, help="a grid")
    evaluate.add_argument("--max-rounds", type=whole(1), default=10)
    evaluate.add_argument("--max-new-tokens", type=whole(1), default=48)
    evaluate.add_argument("--threshold", type=percent, default=70.0, help="coherence needed")
    evaluate.add_argument("--questions", type=whole(2), default=None, help="use the first N")
    evaluate.add_argument(
        "--precision", choices=PRECISIONS, default="fp32", help="bf16: faster, not exact"
    )
    evaluate.add_argument(
        "--judge-url", default=None, help="an OpenAI-compatible server (default: offline probe)"
    )
    evaluate.add_argument("--judge-model", default=None, help="the judge model's name there")
    evaluate.set_defaults(run=_evaluate)
    infer = sub.add_parser(
        "infer", help="generate answers to a prompt set and record per-token trait projections"
    )
    infer.add_argument("--experiment", type=folder_name("experiment"), default="default")
    infer.add_argument("--variant", default=None)
    infer.add_argument(
        "--prompt-set", required=True, help="a built-in set name or a .txt file (one a line)"
    )
    infer.add_argument("--traits", nargs="+", required=True, help="extracted trait names")
    infer.add_argument("--layer", type=whole(0), default=None, help="default: the best layer")
    infer.add_argument("--method", default=None, choices=METHODS, help="default: the best")
    infer.add_argument("--max-new-tokens", type=whole(1), default=48)
    infer.add_argument("--overwrite", action="store_true")
    infer.set_defaults(run=_infer)
    calibrate = sub.add_parser(
        "calibrate", help="find massive dims: the variant's calibration, or a named prompt set"
    )
    calibrate.add_argument("--experiment", type=folder_name("experiment"), default="default")
    calibrate.add_argument("--variant", default=None)
    calibrate.add_argument(
        "--prompt-set", default=None, help="research mode: a built-in set name or a .txt file"
    )
    calibrate.add_argument(
        "--overwrite",
        action="store_true",
        help="rebuild the variant's calibration from the curated neutral prompts even when one "
        "exists (research mode always recomputes)",
    )
    calibrate.add_argument(
        "--per-token",
        action="store_true",
        help="research mode (with --prompt-set): also write per_token.json, every prompt's "
        "values of the massive dims per token and layer",
    )
    calibrate.set_defaults(run=_calibrate)
    model = sub.add_parser("model", help="prepare the default model or list the model cache")
    model_sub = model.add_subparsers(dest="action", required=True)
    fetch = model_sub.add_parser("fetch", help="prepare the default model (fetch, convert, verify)")
    fetch.add_argument("--offline", action="store_true", help="never download")
    fetch.set_defaults(run=_model_fetch)
    info = model_sub.add_parser("info", help="list what is cached")
    info.set_defaults(run=_model_info)
    for command in (fetch, info):
        command.add_argument("--cache-dir", help="cache folder (default $TRAIT_LAB_CACHE)")
    add_serve_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the subcommand; returns the exit code."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.run(args))
    except (ValueError, FileNotFoundError, OSError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
