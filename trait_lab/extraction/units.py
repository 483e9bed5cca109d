"""An extraction's work in units: batches of responses and activations, shared among ranks.

Generating responses and capturing activations are split into units of one batch of one pole
(``batch_size`` pairs, the batches a single process runs, in the same order, so every unit's
numbers are the same wherever it runs). Each unit's result is written atomically to its own
file under ``<out>/.shards/<inputs hash>/`` by the rank that computed it (:class:`Work`,
:func:`run_units`); rank 0 then merges the units, in order, into the usual outputs
(``responses.json``, ``activations/<component>.safetensors``). A killed run leaves the finished
units on disk and a rerun — with any number of processes — computes only the missing ones.
The folder is claimed (``inputs.json``) only once every rank's first unit has succeeded, so a
setting the model cannot run fails before anything but those units is written.

Example:
    >>> from trait_lab.core.distributed import Ranks
    >>> batches(5, 2)
    [range(0, 2), range(2, 4), range(4, 5)]
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from trait_lab.activations.capture import capture_at_position
from trait_lab.core.atomic import atomic_write, atomic_write_json
from trait_lab.core.distributed import Ranks
from trait_lab.core.paths import activations_path
from trait_lab.core.runs import ResumableRun
from trait_lab.extraction.outputs import Claim, commit_folder, load_activations
from trait_lab.extraction.plan import ExtractionPlan
from trait_lab.generation.backends import GenerationConfig, LocalBackend
from trait_lab.generation.protocol import Backend
from trait_lab.traits.format import Pole

__all__ = [
    "SHARDS",
    "UNUSABLE",
    "Acts",
    "Work",
    "batches",
    "capture_activations",
    "generate_responses",
    "load_tensor",
    "noting",
    "run_units",
    "save_tensor",
    "storage",
]

logger = logging.getLogger(__name__)

SHARDS = ".shards"
"""The folder (inside an extraction folder) that holds the units of unfinished runs."""
UNUSABLE = (OSError, ValueError, SafetensorError)
"""What loading a damaged output raises: the unit is recomputed."""
Acts = tuple[torch.Tensor, torch.Tensor]
"""``pos``/``neg`` activations ``[pairs, layers, hidden]`` of one component."""
Responses = dict[Pole, list[str]] | None
POLES: tuple[Pole, Pole] = ("positive", "negative")
FP16_MAX = 60000.0

K = TypeVar("K")


def batches(n: int, size: int) -> list[range]:
    """The index ranges of ``n`` items in batches of ``size`` (the last may be shorter).

    Example:
        >>> batches(4, 4)
        [range(0, 4)]
    """
    return [range(first, min(first + size, n)) for first in range(0, n, size)]


def save_tensor(path: Path, tensor: torch.Tensor) -> None:
    """Write one unit's tensor atomically (safetensors, key ``"value"``)."""
    value = tensor.contiguous()
    atomic_write(path, lambda tmp: save_file({"value": value}, str(tmp)))


def _save_json(path: Path, value: Any) -> None:
    atomic_write_json(path, value)


def load_tensor(path: Path) -> torch.Tensor:
    """Read a unit's tensor back (``ValueError`` for anything but a finite one)."""
    value = load_file(str(path)).get("value")
    if value is None or not torch.isfinite(value).all():
        raise ValueError(f"{path} does not hold a finite tensor under 'value'")
    return value


@dataclass
class Work:
    """One run of an extraction folder: who computes, what is done, where the units go.

    ``committed`` says whether the folder has been claimed (``inputs.json`` written); the first
    :func:`run_units` call claims it once every rank's first unit has succeeded. ``backend``
    generates the responses (``None``: a ``LocalBackend`` on ``model``).
    """

    out: Path
    plan: ExtractionPlan
    model: Any
    tokenizer: Any
    ranks: Ranks
    run: ResumableRun
    claim: Claim
    committed: bool = False
    notes: list[str] = field(default_factory=list)
    backend: Backend | None = None
    #: counts the units (batches, rows); ``run`` counts the vectors
    unit_run: ResumableRun = field(default_factory=lambda: ResumableRun("extraction units"))

    @property
    def units(self) -> Path:
        """This run's unit folder, named by its inputs (another run's units are never read)."""
        return self.out / SHARDS / str(self.plan.inputs()["hash"])[:16]

    def commit(self) -> None:
        """Claim the folder (rank 0 clears others' outputs and writes ``inputs.json``), once."""
        if self.committed:
            return

        def claim() -> None:
            commit_folder(self.out, self.plan.inputs(), self.claim)
            for other in (self.out / SHARDS).glob("*"):  # units of runs with other inputs
                if other != self.units:
                    shutil.rmtree(other, ignore_errors=True)

        self.ranks.on_main(claim)  # a failure raises on every rank
        self.committed = True

    def clean(self) -> None:
        """Delete this run's units (rank 0, once every output they made is written)."""
        if self.ranks.main:
            shutil.rmtree(self.units, ignore_errors=True)
            if (self.out / SHARDS).is_dir() and not any((self.out / SHARDS).iterdir()):
                (self.out / SHARDS).rmdir()


def run_units(
    work: Work,
    units: Sequence[K],
    path: Callable[[K], Path],
    compute: Callable[[K], Any],
    save: Callable[[Path, Any], None],
    load: Callable[[Path], Any],
    *,
    desc: str = "",
    progress: bool = False,
) -> None:
    """Compute this rank's share of the ``units`` whose file does not load yet, and save each.

    Rank 0 decides which units are pending (so every rank splits the same list), each rank
    takes every N-th one (:meth:`Ranks.mine`) and writes each unit's file with
    ``save(path, value)`` (atomically); at the end the ranks agree that all succeeded, so a
    rank that failed stops every rank (the finished units stay for a rerun). Before the
    folder is claimed, every rank computes its first unit, the ranks agree that all succeeded
    (else all raise), the folder is claimed, and only then is anything written.
    """
    run, ranks = work.unit_run, work.ranks
    pending: list[int] = ranks.on_main(
        lambda: [i for i, unit in enumerate(units) if not run.done(path(unit), load)]
    )
    if ranks.main:
        run.skipped += len(units) - len(pending)
        logger.info(
            "%s: %d of %d %s done, %d to compute on %d process(es)",
            work.out,
            len(units) - len(pending),
            len(units),
            desc or "units",
            len(pending),
            ranks.world,
        )
    mine = [units[i] for i in ranks.mine(pending)]
    computed: list[tuple[K, Any]] = []
    if not work.committed:
        with ranks.together():  # every rank learns of a failure before anything is written
            computed = [(mine[0], compute(mine[0]))] if mine else []
        work.commit()

    def write(unit: K, value: Any) -> None:
        run.save(path(unit), lambda p: save(p, value))

    with ranks.together(), tqdm(total=len(mine), desc=desc, disable=not progress) as bar:
        for unit, value in computed:  # a failure stops every rank; the finished units stay
            write(unit, value)
            bar.update()
        for unit in mine[len(computed) :]:
            write(unit, compute(unit))
            bar.update()


def storage(t: torch.Tensor) -> torch.Tensor:
    return t.half() if float(t.abs().max()) < FP16_MAX else t.float()


def noting(notes: list[str], load: Callable[[Path], Any]) -> Callable[[Path], Any]:
    """``load``, noting in ``notes`` each file it finds unusable (the run recomputes it)."""

    def checked(path: Path) -> Any:
        try:
            return load(path)
        except UNUSABLE as exc:
            notes.append(f"recomputed {path}: {exc}")
            raise

    return checked


def capture_activations(work: Work, component: str, responses: Responses) -> Acts:
    """``pos``/``neg`` ``[pairs, layers, hidden]`` of one component, on every rank.

    Reloaded if a resumed folder's file holds finite fp16/fp32 activations of the plan's shape;
    otherwise captured batch by batch (:func:`~trait_lab.extraction.units.run_units`) and
    merged and written by rank 0.
    """
    plan, out = work.plan, work.out
    shape = (len(plan.dataset.pairs), len(plan.layers), int(plan.model_id["hidden"]))
    load = functools.partial(load_activations, shape=shape)
    path = activations_path(out, component)
    resume = work.claim == "resume"
    if work.ranks.on_main(lambda: resume and work.run.done(path, noting(work.notes, load))):
        return load(path)
    spans = batches(len(plan.dataset.pairs), plan.settings.batch_size)
    units = [(pole, b) for pole in POLES for b in range(len(spans))]

    def capture(unit: tuple[Pole, int]) -> torch.Tensor:
        pole, b = unit
        prompts = plan.dataset.prompts(pole)
        given = responses[pole] if responses else plan.dataset.responses(pole)
        chunk = None if given is None else [given[i] for i in spans[b]]
        acts = capture_at_position(
            work.model,
            work.tokenizer,
            [prompts[i] for i in spans[b]],
            list(plan.layers),
            plan.position,
            pool="mean",
            responses=chunk,
            component=component,
            batch_size=plan.settings.batch_size,
        )
        assert isinstance(acts, torch.Tensor)
        return acts if acts.dim() == 3 else acts.unsqueeze(1)

    def unit_path(unit: tuple[Pole, int]) -> Path:
        return work.units / component / f"{unit[0]}-{unit[1]:05d}.safetensors"

    run_units(
        work, units, unit_path, capture, save_tensor, load_tensor, desc=f"{component} batches"
    )

    def merge() -> None:
        acts = [
            torch.cat([load_tensor(unit_path((p, b))) for b in range(len(spans))]) for p in POLES
        ]
        pos, neg = (storage(a) for a in acts)
        atomic_write(path, lambda tmp: save_file({"pos": pos, "neg": neg}, str(tmp)))

    work.ranks.on_main(merge)
    return load(path)


def generate_responses(work: Work) -> Responses:
    """Responses generated under each pole's system prompt, or ``None`` (the trait's own).

    Generated batch by batch (units, shared among ranks) by ``work.backend`` (default: a
    ``LocalBackend`` on the model), which gets each batch's conversations and formats them
    itself, unless a resumed folder's ``responses.json`` holds them; rank 0 merges and
    writes ``responses.json``.
    """
    plan, out = work.plan, work.out
    settings, dataset = plan.settings, plan.dataset
    if not settings.generate_responses:
        return None
    path = out / "responses.json"

    def load(p: Path) -> dict[Pole, list[str]]:
        cached = json.loads(p.read_text())
        if not all(len(cached.get(pole, ())) == len(dataset.pairs) for pole in POLES):
            raise ValueError(f"{p} does not hold {len(dataset.pairs)} responses per pole")
        return cached

    resume = work.claim == "resume"
    if work.ranks.on_main(lambda: resume and work.run.done(path, load)):
        return load(path)
    backend = work.backend or LocalBackend.from_model(work.model, work.tokenizer)
    config = GenerationConfig(
        max_new_tokens=settings.max_new_tokens, batch_size=settings.batch_size
    )
    spans = batches(len(dataset.pairs), settings.batch_size)
    units = [(pole, b) for pole in POLES for b in range(len(spans))]

    def generate(unit: tuple[Pole, int]) -> list[str]:
        prompts = dataset.prompts(unit[0])
        return backend.generate([prompts[i] for i in spans[unit[1]]], config)

    def unit_path(unit: tuple[Pole, int]) -> Path:
        return work.units / "responses" / f"{unit[0]}-{unit[1]:05d}.json"

    def read(p: Path) -> list[str]:
        texts = json.loads(p.read_text())
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise ValueError(f"{p} does not hold a list of responses")
        return texts

    run_units(work, units, unit_path, generate, _save_json, read, desc="response batches")

    def merge() -> None:
        merged = {p: [t for b in range(len(spans)) for t in read(unit_path((p, b)))] for p in POLES}
        for pole, texts in merged.items():
            empty = [dataset.pairs[i].id for i, text in enumerate(texts) if not text.strip()]
            if empty:
                raise ValueError(
                    f"the model gave empty {pole} responses for pairs {empty[:5]}; raise "
                    "max_new_tokens, or extract at the prompt (generate_responses=False)"
                )
        atomic_write_json(path, merged)

    work.ranks.on_main(merge)
    return load(path)
