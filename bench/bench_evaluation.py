"""Steering evaluation on the default model: batched search speed, offline judges' quality.

1. **Batched search** — the same steering configurations × questions generated as rows of one
   batch (what the coefficient search does), vs one configuration per call (questions batched:
   what a library with one coefficient per model call can do), vs one row at a time.
2. **Offline judges** — on each starter trait's held-out pairs (the extraction's validation
   split, never used to fit the probe judge), both poles' answers are scored by the
   ``ProbeJudge`` (fitted on the training split) and by the ``LocalLogprobJudge`` (the default
   model asked for a 0–100 number); AUROC says how well each separates the poles, items/s how
   fast it is, and for the logprob judge the share of items where at least
   ``MIN_NUMBER_MASS`` of its probability lands on a number (below that it gives no score).

Run: ``python bench/bench_evaluation.py [--configs 8 --questions 8 --tokens 24]``.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from _timing import interleaved, table
from sklearn.metrics import roc_auc_score

from trait_lab.evaluation.batched import steered_answers
from trait_lab.evaluation.judges import JudgeItem, LocalLogprobJudge, run_sync, trait_prompt
from trait_lab.evaluation.probe_judge import ProbeJudge, labelled_answers
from trait_lab.evaluation.scoring import MIN_NUMBER_MASS, expected_score
from trait_lab.models.loading import load_model
from trait_lab.traits.dataset import list_traits, load_trait


def batched_search(model, tokenizer, args) -> None:
    questions = list(load_trait("optimism").steering_questions[: args.questions])
    rng = torch.Generator().manual_seed(0)
    vector = torch.randn(model.config.hidden_size, generator=rng)
    vectors = {12: vector / vector.norm()}
    configs = [{12: c} for c in torch.linspace(-40, 40, args.configs).tolist()]
    n = args.tokens

    def one_batch() -> None:
        steered_answers(model, tokenizer, questions, configs, vectors, max_new_tokens=n)

    def per_config() -> None:
        for config in configs:
            steered_answers(model, tokenizer, questions, [config], vectors, max_new_tokens=n)

    def per_row() -> None:
        for config in configs:
            for q in questions:
                steered_answers(model, tokenizer, [q], [config], vectors, max_new_tokens=n)

    cases = {"one batch": one_batch, "one call per configuration": per_config}
    cases["one call per row"] = per_row
    times = interleaved(cases, args.repeats, warmup=0)
    rows = len(configs) * len(questions)
    print(f"\n## batched search — {len(configs)} configurations x {len(questions)} questions")
    print(f"({rows} rows), {n} new tokens, median of {args.repeats}\n")
    print(table(times, "one batch"))
    for name in ("one call per configuration", "one call per row"):
        print(f"\none batch is {times[name] / times['one batch']:.2f}x faster than {name}")


def judge_quality(model, tokenizer, args) -> None:
    logprob = LocalLogprobJudge(model, tokenizer, min_mass=1e-12)
    print("\n## offline judges — held-out pairs of each starter trait\n")
    print(
        "| trait | items (probe / logprob) | probe AUROC | probe items/s | logprob AUROC "
        "| logprob items/s | logprob coverage |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in list_traits():
        dataset = load_trait(name)
        train, val = dataset.split()
        probe = ProbeJudge.fit(model, tokenizer, dataset, train)
        texts, labels = labelled_answers(model, tokenizer, dataset, val[: args.pairs])
        definition = dataset.definition.positive or dataset.definition.summary
        items = [JudgeItem(q, a, name, definition) for q, a in texts]
        start = time.perf_counter()
        probe_scores = run_sync(probe.score_trait(items))
        probe_rate = len(items) / (time.perf_counter() - start)
        half = len(items) // 2  # the same pairs' two poles, for the slow logprob judge
        keep = list(range(min(half, args.logprob_pairs)))
        keep += [half + i for i in keep]
        start = time.perf_counter()
        probs = [logprob.number_probs(trait_prompt(items[i])) for i in keep]
        logprob_rate = len(keep) / (time.perf_counter() - start)
        logprob_scores = [expected_score(p, 1e-12) for p in probs]
        covered = sum(sum(p.values()) >= MIN_NUMBER_MASS for p in probs) / len(probs)
        print(
            f"| {name} | {len(items)} / {len(keep)} | {_auroc(labels, probe_scores)} | "
            f"{probe_rate:.1f} | {_auroc([labels[i] for i in keep], logprob_scores)} | "
            f"{logprob_rate:.2f} | {covered:.0%} |"
        )


def _auroc(labels: list[int], scores: list[float | None]) -> str:
    pairs = [(y, s) for y, s in zip(labels, scores, strict=True) if s is not None]
    if len({y for y, _ in pairs}) < 2:
        return "n/a"
    return f"{roc_auc_score([y for y, _ in pairs], [s for _, s in pairs]):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", type=int, default=8)
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=13, help="held-out pairs per trait")
    parser.add_argument(
        "--logprob-pairs", type=int, default=5, help="of them, judged by the slow logprob judge"
    )
    parser.add_argument("--skip", choices=["search", "judges"], default=None)
    args = parser.parse_args()
    model, tokenizer = load_model()
    print(
        f"# evaluation bench — {platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, default model fp32"
    )
    if args.skip != "search":
        batched_search(model, tokenizer, args)
    if args.skip != "judges":
        judge_quality(model, tokenizer, args)


if __name__ == "__main__":
    main()
