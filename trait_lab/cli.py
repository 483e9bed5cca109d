"""Command line: ``python -m trait_lab extract --trait optimism``, ``… calibrate [--prompt-set S]``.

Example:
    >>> main(["extract", "--help"])  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import sys

from trait_lab.methods import METHODS


def _extract(args: argparse.Namespace) -> int:
    from trait_lab.extraction import run_extraction

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
        progress=True,
    )
    print(f"outputs in {summary.out_dir} ({summary.computed} computed, {summary.skipped} reused)")
    for row in summary.best_by_method().itertuples():
        print(
            f"{row.method:16s} best layer {row.layer:2d}: held-out accuracy "
            f"{row.val_accuracy:.2f}, effect size {row.val_effect_size:.2f}"
        )
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from trait_lab.calibration import ensure_calibration, research_calibration
    from trait_lab.experiments import load_experiment_config
    from trait_lab.models import load_model

    variant = load_experiment_config(args.experiment).variant(args.variant)
    model, tokenizer = load_model(variant.model)
    if args.prompt_set is None:
        record = ensure_calibration(model, tokenizer, args.experiment, variant.name)
        where = "the variant's calibration"
    else:
        record, folder = research_calibration(
            model, tokenizer, args.experiment, variant.name, args.prompt_set
        )
        where = str(folder)
    print(f"{where}: {record['tokens_seen']} tokens, candidate dims {record['candidates']}")
    for row in record["layers"]:
        dims = ", ".join(
            f"{d} ({m:.0f}, {r:.0f}x)"
            for d, m, r in zip(
                row["top_dims"][:3], row["top_max_abs"][:3], row["top_ratio"][:3], strict=True
            )
        )
        print(f"  layer {row['layer']:2d}: {dims}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the subcommand."""
    parser = argparse.ArgumentParser(prog="python -m trait_lab")
    sub = parser.add_subparsers(dest="command", required=True)
    extract = sub.add_parser("extract", help="extract a trait's vectors for an experiment")
    extract.add_argument("--experiment", default="default")
    extract.add_argument("--trait", required=True, help="a starter trait name or a trait folder")
    extract.add_argument("--variant", default=None)
    extract.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    extract.add_argument("--components", nargs="+", default=["residual"])
    extract.add_argument("--layers", nargs="+", type=int, default=None)
    extract.add_argument("--position", default=None)
    extract.add_argument("--generate-responses", action="store_true")
    extract.add_argument("--overwrite", action="store_true")
    extract.set_defaults(run=_extract)
    calibrate = sub.add_parser(
        "calibrate", help="find massive dims: the variant's calibration, or a named prompt set"
    )
    calibrate.add_argument("--experiment", default="default")
    calibrate.add_argument("--variant", default=None)
    calibrate.add_argument(
        "--prompt-set", default=None, help="research mode: a built-in set name or a .txt file"
    )
    calibrate.set_defaults(run=_calibrate)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.run(args))
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
