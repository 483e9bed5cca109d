"""Command line: ``python -m trait_lab extract --trait optimism`` (more subcommands to come).

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
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.run(args))
    except (ValueError, FileNotFoundError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
