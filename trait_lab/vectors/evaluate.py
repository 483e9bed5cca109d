"""Steering evaluation of a trait's extracted vectors: does it steer, where, and how hard?

:func:`run_evaluation` (also ``trait-lab evaluate --trait T``) takes the best extracted vectors
(:func:`~trait_lab.vectors.selection.select_vectors`, extraction metrics, middle layers by
default), searches each one's coefficient in both directions on the trait's *search* questions
(:func:`~trait_lab.evaluation.search_coefficients`: batched, adaptive, coherence-gated), then
runs each direction's best coherent configuration on the held-out *report* questions. Everything
lands in ``experiments/<exp>/steering/<trait>/<variant>/<run>/``::

    judge.json                       the fitted offline judge (default: ProbeJudge)
    search/results.jsonl, rule.json  every searched configuration, the coherence rule
    report/results.jsonl, rule.json  the recommended configurations on held-out questions
    summary.json                     the recommendations (written last)

A kill at any point resumes with nothing recomputed; another judge or other inputs in the same
run folder raise instead of mixing. Afterwards ``select_vector(experiment, trait)`` returns the
steering-validated vector with its recommended coefficient.

Example:
    >>> summary = run_evaluation("default", "refusal")  # doctest: +SKIP
    >>> up = summary.recommended(+1)  # doctest: +SKIP
    >>> round(up.coefficient, 1), round(up.report_delta, 1), up.validated  # doctest: +SKIP
    (39.4, 31.9, True)
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from trait_lab.activations.norms import typical_norms
from trait_lab.core.atomic import atomic_write_json
from trait_lab.core.distributed import Ranks, current_ranks
from trait_lab.core.experiments import load_experiment_config
from trait_lab.core.paths import steering_dir
from trait_lab.core.progress import log_progress
from trait_lab.core.records import check_int
from trait_lab.core.types import VectorResult
from trait_lab.evaluation.batched import ConfigScore, score_configs, steered_answers
from trait_lab.evaluation.coherence import DEFAULT_THRESHOLD, CoherenceRule, answer_nll
from trait_lab.evaluation.judges import Judge, JudgeItem
from trait_lab.evaluation.probe_judge import ProbeJudge
from trait_lab.evaluation.results import ResultsLog, SteeringEntry, SteeringRunRecord
from trait_lab.evaluation.search import SearchSettings, evaluate_configs, search_coefficients
from trait_lab.evaluation.summary import (
    MIN_REPORT_DELTA,
    Recommendation,
    SteeringSummary,
    write_summary,
)
from trait_lab.generation.precision import Precision, at_precision, check_precision
from trait_lab.models.identity import model_identity
from trait_lab.models.loading import load_model
from trait_lab.prompts.formatting import format_prompt
from trait_lab.traits.dataset import TraitDataset, load_trait
from trait_lab.vectors.selection import load_selected, select_vectors

__all__ = ["evaluate_steering", "middle_layers", "run_evaluation"]

LOG = logging.getLogger(__name__)


def middle_layers(model: nn.Module) -> range:
    """The middle half of the layers, where steering usually works best.

    Example:
        >>> from trait_lab.testing import tiny_model
        >>> list(middle_layers(tiny_model()))
        [0, 1]
    """
    n = int(model_identity(model)["n_layers"])
    return range(n // 4, max(n // 4 + 1, (3 * n) // 4))


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _judge(model: nn.Module, tokenizer: Any, dataset: TraitDataset, folder: Path) -> Judge:
    """The run's offline ProbeJudge: loaded from ``judge.json``, or fitted and saved there."""
    path = folder / "judge.json"
    if path.is_file():
        judge = ProbeJudge.load(path, model, tokenizer)
        judge.check_reliable()
        return judge
    LOG.info("fitting the probe judge on %s's training pairs", dataset.name)
    judge = ProbeJudge.fit(model, tokenizer, dataset)
    judge.save(path)  # kept even when unreliable: the next run refuses without refitting
    LOG.info(
        "judge: layer %d, cross-validated accuracy %.2f, log loss %.3f",
        judge.layer,
        judge.state["cv_accuracy"],
        judge.state["cv_log_loss"],
    )
    judge.check_reliable()
    return judge


def _rule(log: ResultsLog) -> CoherenceRule | None:
    """The coherence rule a log's baseline set (``None`` before the baseline exists)."""
    path = log.folder / "rule.json"
    if log.baseline is None or not path.is_file():
        return None
    return CoherenceRule(**json.loads(path.read_text()))


def _baseline(
    model: nn.Module,
    tokenizer: Any,
    judge: Judge,
    items: Sequence[JudgeItem],
    log: ResultsLog,
    threshold: float,
    max_new_tokens: int,
    ranks: Ranks,
) -> CoherenceRule:
    """Answer unsteered, anchor the coherence rule on those answers, log the baseline."""
    rule = _rule(log)
    if rule is not None:
        return rule
    questions = [item.question for item in items]
    LOG.info("unsteered baseline on %d questions (%s)", len(questions), log.folder.name)
    answers = steered_answers(
        model, tokenizer, questions, [{}], {}, max_new_tokens=max_new_tokens, ranks=ranks
    )

    def judged() -> tuple[CoherenceRule, ConfigScore]:  # rank 0 judges, every rank logs
        nlls = answer_nll(model, tokenizer, questions, [a.text for a in answers[0]])
        rule = CoherenceRule.from_baseline(nlls, [a.token_ids for a in answers[0]], threshold)
        atomic_write_json(log.folder / "rule.json", asdict(rule))
        return rule, score_configs(model, tokenizer, judge, items, answers, rule)[0]

    rule, score = ranks.on_main(judged)
    log.add_baseline(score.summary, score.details)
    return rule


def _open_log(folder: Path, record: SteeringRunRecord, ranks: Ranks) -> ResultsLog:
    """The run's log on every rank: rank 0 opens (or creates) and writes it, the others read
    it once rank 0 has, and hold it in memory (every rank computes the same additions)."""
    made: list[ResultsLog] = []
    ranks.on_main(lambda: made.append(ResultsLog(folder, record)))
    with ranks.together():  # rank 0 appends only once every rank has read the file
        log = made[0] if made else ResultsLog(folder, record, writes=False)
    return log


def _fitted_judge(
    model: nn.Module, tokenizer: Any, dataset: TraitDataset, folder: Path, ranks: Ranks
) -> Judge:
    """The offline judge on every rank: rank 0 fits and saves it, the others load it."""
    made: list[Judge] = []
    ranks.on_main(lambda: made.append(_judge(model, tokenizer, dataset, folder)))
    return made[0] if made else _judge(model, tokenizer, dataset, folder)


def _items(dataset: TraitDataset, questions: Sequence[str]) -> list[JudgeItem]:
    definition = dataset.definition.positive or dataset.definition.summary
    return [JudgeItem(q, "", dataset.name, definition) for q in questions]


def _recommend(
    direction: int,
    entry: SteeringEntry,
    report: SteeringEntry,
    candidates: dict[tuple[str, str, int], VectorResult],
) -> Recommendation:
    spot = (entry.component, entry.method)
    paths = tuple(str(candidates[(*spot, layer)].path) for layer in entry.layers)
    delta = float(report.delta or 0.0)
    return Recommendation(
        direction=direction,
        layers=entry.layers,
        coefficients=entry.coefficients,
        fraction=entry.fraction,
        component=entry.component,
        method=entry.method,
        position=candidates[(*spot, entry.layers[0])].position,
        vector_paths=paths,
        search_key=entry.key,
        search_delta=float(entry.delta or 0.0),
        search_coherence=entry.coherence_mean,
        report_trait=report.trait_mean,
        report_delta=delta,
        report_coherence=report.coherence_mean,
        report_n=report.n,
        validated=bool(report.coherent and delta * direction >= MIN_REPORT_DELTA),
    )


def evaluate_steering(
    model: nn.Module,
    tokenizer: Any,
    dataset: TraitDataset,
    candidates: Sequence[VectorResult],
    folder: str | Path,
    *,
    judge: Judge | None = None,
    layer_sets: Sequence[tuple[int, ...]] | None = None,
    settings: SearchSettings | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    max_questions: int | None = None,
    names: tuple[str, str, str] | None = None,
    progress: bool = False,
    ranks: Ranks | None = None,
) -> SteeringSummary:
    """Search, then report, for ``candidates`` (extracted vectors) of ``dataset`` in ``folder``.

    ``layer_sets`` (default: each candidate alone) may steer several candidate layers of one
    method together, each with its own norm-scaled magnitude. ``max_questions`` keeps the
    first N search and N report questions (a quick look; the full sets give firmer numbers).
    ``names`` are the experiment, variant and run recorded in the summary (default:
    ``("custom", "custom", <folder name>)``). ``progress`` prints one line per stage and search
    round, with the seconds elapsed (the number of rounds is not known in advance). Under
    ``torchrun`` (``ranks``, default :func:`~trait_lab.core.distributed.current_ranks`) every
    rank calls this with the same arguments: each round's generation batches are shared, rank 0
    judges the answers and hands every rank the scores, so all take the same search path, and
    rank 0 alone writes.
    """
    ranks = ranks or current_ranks()
    if progress and ranks.main:
        with log_progress(__name__, "trait_lab.evaluation.search"):
            return evaluate_steering(
                model,
                tokenizer,
                dataset,
                candidates,
                folder,
                judge=judge,
                layer_sets=layer_sets,
                settings=settings,
                threshold=threshold,
                max_questions=max_questions,
                names=names,
                ranks=ranks,
            )
    settings = settings or SearchSettings()
    search_q, report_q = dataset.steering_split()
    if max_questions is not None:
        if isinstance(max_questions, bool) or not isinstance(max_questions, int):
            raise TypeError(f"max_questions={max_questions!r} must be an int or None")
        if max_questions < 2:
            raise ValueError(f"max_questions={max_questions!r}: use at least 2 questions")
        search_q, report_q = search_q[:max_questions], report_q[:max_questions]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if judge is not None and not isinstance(judge, Judge):
        raise TypeError(
            f"judge={judge!r} is not a judge: pass ProbeJudge, LocalLogprobJudge, OpenAIJudge or "
            "any object with identity, score_trait and score_coherence (trait_lab.evaluation."
            "Judge), or None for the offline probe judge"
        )
    judge = judge or _fitted_judge(model, tokenizer, dataset, folder, ranks)
    by_key = {(c.component, c.method, c.layer): c for c in candidates}
    if not by_key:
        raise ValueError(f"no candidate vectors for {dataset.name!r}; extract the trait first")
    layers = sorted({c.layer for c in candidates})
    prompts = [format_prompt(tokenizer, q) for q in search_q]
    norms = typical_norms(model, prompts, layers, tokenizer=tokenizer)
    inputs = {
        "model": model_identity(model),
        "trait": dataset.name,
        "questions": [search_q, report_q],
        "vectors": {"/".join(map(str, k)): _file_digest(str(c.path)) for k, c in by_key.items()},
        "layer_sets": [list(s) for s in layer_sets or []],
        "settings": asdict(settings),
        "threshold": threshold,
    }
    experiment, variant, run = names or ("custom", "custom", folder.name)
    record = SteeringRunRecord(experiment, dataset.name, variant, _digest(inputs), judge.identity)
    search_log = _open_log(folder / "search", record, ranks)
    gen = settings.max_new_tokens
    search_items = _items(dataset, search_q)
    rule = _baseline(model, tokenizer, judge, search_items, search_log, threshold, gen, ranks)
    for component, method in sorted({(c, m) for c, m, _ in by_key}):
        vectors = {
            layer: load_selected(v)
            for (c, m, layer), v in by_key.items()
            if (c, m) == (component, method)
        }
        sets = [s for s in layer_sets or [(layer,) for layer in sorted(vectors)]]
        sets = [s for s in sets if all(layer in vectors for layer in s)]
        search_coefficients(
            model,
            tokenizer,
            judge,
            _items(dataset, search_q),
            vectors,
            norms,
            rule,
            search_log,
            layer_sets=sets,
            settings=settings,
            component=component,
            method=method,
            ranks=ranks,
        )
    found = search_log.results()
    best = {d: found.best(d) for d in settings.directions}
    LOG.info("report: the recommended configurations on %d held-out questions", len(report_q))
    report_log = _open_log(folder / "report", record, ranks)
    report_items = _items(dataset, report_q)
    report_rule = _baseline(
        model, tokenizer, judge, report_items, report_log, threshold, gen, ranks
    )
    recommendations = []
    for direction, entry in best.items():
        if entry is None:
            continue
        spot = (entry.component, entry.method)
        vectors = {layer: load_selected(by_key[(*spot, layer)]) for layer in entry.layers}
        config = dict(zip(entry.layers, entry.coefficients, strict=True))
        (report,) = evaluate_configs(
            model,
            tokenizer,
            judge,
            report_items,
            vectors,
            report_rule,
            report_log,
            [config],
            fractions=[entry.fraction],
            max_new_tokens=gen,
            batch_rows=settings.batch_rows,
            component=entry.component,
            method=entry.method,
            ranks=ranks,
        )
        recommendations.append(_recommend(direction, entry, report, by_key))
    assert found.baseline is not None and report_log.baseline is not None
    summary = SteeringSummary(
        experiment,
        dataset.name,
        variant,
        run,
        judge.identity,
        found.baseline,
        report_log.baseline,
        recommendations,
    )
    ranks.on_main(lambda: write_summary(folder, summary))  # a failure raises on every rank
    return summary


def run_evaluation(
    experiment: str,
    trait: str | Path,
    variant: str | None = None,
    *,
    run: str = "default",
    root: str | None = None,
    model: Any = None,
    tokenizer: Any = None,
    candidates: int = 2,
    layers: Sequence[int] | None = None,
    methods: list[str] | None = None,
    ranks: Ranks | None = None,
    precision: Precision = "fp32",
    **options: Any,
) -> SteeringSummary:
    """Evaluate a trait's extracted vectors for an experiment's variant (module docstring).

    ``candidates`` best extraction results (within ``layers``, default the middle half) are
    searched; further ``options`` go to :func:`evaluate_steering` (judge, layer_sets,
    settings, threshold). ``precision="bf16"`` generates with a bfloat16 copy of the model
    (``generation.precision``; faster on CPUs with native bf16); its dtype is part of the
    run's fingerprint, so its logs never mix with an fp32 run's (use another ``run`` name).
    """
    check_precision(precision)
    chosen = load_experiment_config(experiment, root).variant(variant)
    dataset = load_trait(trait)
    dataset.steering_split()  # a trait without report questions fails before any work
    candidates = check_int("run_evaluation", "candidates", candidates, minimum=1)
    folder = steering_dir(experiment, dataset.name, chosen.name, run, root)
    ranks = ranks or current_ranks()
    if model is None or tokenizer is None:
        model, tokenizer = load_model(chosen.model, device=ranks.model_device())
    model = at_precision(model, precision)
    picked = select_vectors(
        experiment,
        dataset.name,
        chosen.name,
        n=candidates,
        methods=methods,
        layers=list(layers) if layers is not None else list(middle_layers(model)),
        root=root,
        source="extraction",
    )
    names = (experiment, chosen.name, run)
    return evaluate_steering(
        model, tokenizer, dataset, picked, folder, names=names, ranks=ranks, **options
    )
