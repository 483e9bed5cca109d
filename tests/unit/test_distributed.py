"""Ranks of a data-parallel job: sharing, agreeing and failing, on real 2-process gloo groups.

Each multi-rank case spawns two processes (``torch.multiprocessing``, gloo on localhost) that run
a tiny random model; what each rank returns or raises comes back through a queue. The
single-process results are the reference.
"""

from __future__ import annotations

import json
import logging
import socket
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

import trait_lab.extraction.pipeline as pipeline
import trait_lab.extraction.units as units
from tests.helpers import make_tokenizer
from trait_lab.core.distributed import RankFailedError, Ranks, current_ranks
from trait_lab.dynamics.calibration import calibrate
from trait_lab.dynamics.massive import NEUTRAL_PROMPTS
from trait_lab.evaluation.search import SearchSettings
from trait_lab.extraction.pipeline import ExtractionSettings, extract_trait
from trait_lab.extraction.units import SHARDS, batches
from trait_lab.testing import tiny_model, tiny_tokenizer
from trait_lab.traits.dataset import load_trait
from trait_lab.vectors.evaluate import evaluate_steering
from trait_lab.vectors.selection import select_vectors

TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} "
    "{% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
SETTINGS = ExtractionSettings(methods=("mean_diff", "probe"), layers=(0, 2), batch_size=4)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(rank: int, world: int, port: int, job: Any, args: tuple, queue: Any) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(  # a rank left waiting fails in minutes, not the default 30
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=timedelta(minutes=5),
    )
    try:
        queue.put((rank, "ok", job(Ranks(rank=rank, world=world), *args)))
    except Exception as exc:
        queue.put((rank, type(exc).__name__, f"{exc}\n{traceback.format_exc()}"))
    finally:
        dist.destroy_process_group()


def spawn(job: Any, *args: Any, world: int = 2) -> dict[int, tuple[str, Any]]:
    """Run ``job(ranks, *args)`` on ``world`` gloo ranks; ``{rank: (status, result)}``."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [
        ctx.Process(target=_worker, args=(rank, world, port, job, args, queue))
        for rank in range(world)
    ]
    for p in procs:
        p.start()
    reports = (queue.get(timeout=900) for _ in procs)  # a rank that never reports fails the test
    results = {rank: (status, value) for rank, status, value in reports}
    for p in procs:
        p.join(timeout=60)
    return results


def _tiny() -> tuple[Any, Any]:
    torch.manual_seed(0)
    tokenizer = make_tokenizer()
    tokenizer.chat_template = TEMPLATE
    return tiny_model(), tokenizer


def _extract(ranks: Ranks, out: str) -> dict[str, Any]:
    model, tokenizer = _tiny()
    summary = extract_trait(model, tokenizer, "refusal", out, SETTINGS, ranks=ranks)
    return {"computed": summary.computed, "metrics": summary.metrics.to_dict()}


def _extract_failing(ranks: Ranks, out: str) -> Any:
    """Rank 1 fails on its third batch (after two are written); rank 0 runs normally."""
    calls = []
    real = units.capture_at_position

    def capture(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if ranks.rank == 1 and len(calls) == 3:
            raise RuntimeError("rank 1 dies")
        return real(*args, **kwargs)

    units.capture_at_position = capture
    try:
        return _extract(ranks, out)
    finally:
        units.capture_at_position = real


def _extract_vector_failing(ranks: Ranks, out: str) -> Any:
    """Rank 0's probe fails on a vector of its share (after the activations are merged)."""
    real = pipeline.get_method

    class Failing:
        def extract(self, *args: Any, **kwargs: Any) -> Any:
            raise ValueError("rank 0's probe fails")

    def method(name: str) -> Any:
        return Failing() if ranks.rank == 0 and name == "probe" else real(name)

    pipeline.get_method = method
    try:
        return _extract(ranks, out)
    finally:
        pipeline.get_method = real


def _calibrate(ranks: Ranks, out: str) -> dict[str, Any]:
    model, tokenizer = _tiny()
    return calibrate(model, tokenizer, list(NEUTRAL_PROMPTS[:13]), out, batch_size=3, ranks=ranks)


def _evaluate(ranks: Ranks, root: str, folder: str) -> list[str]:
    """The steering evaluation of a tiny model's refusal vectors; every log line, in order."""
    model, tokenizer = tiny_model(), tiny_tokenizer()
    tokenizer.chat_template = TEMPLATE
    candidates = select_vectors("demo", "refusal", root=root, n=2, min_accuracy=0.0)
    settings = SearchSettings(start=0.5, max_rounds=3, max_new_tokens=4, batch_rows=7)
    summary = evaluate_steering(
        model,
        tokenizer,
        load_trait("refusal"),
        candidates,
        folder,
        settings=settings,
        threshold=0.0,
        names=("demo", "instruct", "default"),
        ranks=ranks,
    )
    return [repr(summary.recommendations), repr(summary.search_baseline)]


def _collectives(ranks: Ranks) -> dict[str, Any]:
    """Gather, share and split; then a failure on rank 0, then one on rank 1 (caught)."""
    out: dict[str, Any] = {
        "shared": (ranks.gather(ranks.rank * 10), ranks.on_main(lambda: "from 0")),
        "mine": ranks.mine(range(5)),
    }

    def fails() -> None:
        raise ValueError("bad setting 42")

    for name, step in (
        ("main fails", lambda: ranks.on_main(fails)),
        ("rank 1 fails", lambda: ranks.agree(ValueError("rank one broke") if ranks.rank else None)),
    ):
        try:
            step()
            out[name] = None
        except (ValueError, RankFailedError) as exc:
            out[name] = (type(exc).__name__, str(exc))
    return out


def _outputs(folder: Path) -> dict[str, Any]:
    """What an extraction wrote, comparable across runs (vector tensors, log rows, tables)."""
    out: dict[str, Any] = {}
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if not path.is_file() or name.startswith(".extraction.lock"):
            continue
        if path.suffix == ".safetensors":
            out[name] = {k: v.tolist() for k, v in load_file(str(path)).items()}
        elif path.name == "metrics.jsonl":
            rows = [json.loads(line) for line in path.read_text().splitlines()]
            out[name] = [{k: v for k, v in r.items() if k != "sha256"} for r in rows]
        else:
            out[name] = path.read_bytes()
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def _no_created(data: bytes) -> list[Any]:
    rows = [json.loads(line) for line in data.decode().splitlines()]
    rows[0]["run"].pop("created")
    return rows


class TestRanksAlone:
    def test_one_process_is_rank_0_of_1(self) -> None:
        assert current_ranks({}) == Ranks()
        assert Ranks().on_main(lambda: 7) == 7 and Ranks().gather("x") == ["x"]

    def test_mine_is_round_robin_and_covers_every_unit_once(self) -> None:
        units = list(range(11))
        shares = [Ranks(rank=r, world=3).mine(units) for r in range(3)]
        assert shares == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8]]
        assert sorted(u for share in shares for u in share) == units

    @pytest.mark.parametrize(
        ("env", "mentions"),
        [
            ({"WORLD_SIZE": "two"}, ["WORLD_SIZE='two'", "torchrun"]),
            ({"WORLD_SIZE": "2", "RANK": "2"}, ["RANK=2", "WORLD_SIZE=2"]),
            ({"WORLD_SIZE": "2", "RANK": "0"}, ["MASTER_ADDR", "torchrun"]),
        ],
    )
    def test_a_broken_environment_is_named(self, env, mentions) -> None:
        with pytest.raises(ValueError) as error:
            current_ranks(env)
        assert all(m in str(error.value) for m in mentions), error.value

    def test_batches_cover_every_pair_in_order(self) -> None:
        assert [list(b) for b in batches(5, 2)] == [[0, 1], [2, 3], [4]]


class TestTwoRanks:
    def test_gather_share_split_and_fail_together(self) -> None:
        results = spawn(_collectives)
        assert results[0][0] == results[1][0] == "ok", results
        zero, one = results[0][1], results[1][1]
        assert zero["shared"] == one["shared"] == ([0, 10], "from 0")
        assert (zero["mine"], one["mine"]) == ([0, 2, 4], [1, 3])
        assert zero["main fails"] == ("ValueError", "bad setting 42")
        assert one["main fails"][0] == "RankFailedError"
        assert "rank 0 of 2 failed" in one["main fails"][1]
        assert "bad setting 42" in one["main fails"][1]
        assert one["rank 1 fails"] == ("ValueError", "rank one broke")
        assert zero["rank 1 fails"][0] == "RankFailedError"
        assert "rank one broke" in zero["rank 1 fails"][1]

    def test_extraction_equals_one_process(self, tmp_path: Path) -> None:
        torch.set_num_threads(1)
        one, two = tmp_path / "one", tmp_path / "two"
        alone = _extract(Ranks(), str(one))
        results = spawn(_extract, str(two))
        assert results[0][0] == "ok" and results[1][0] == "ok", results
        assert results[0][1] == results[1][1]  # every rank returns the same summary
        assert results[0][1]["metrics"] == alone["metrics"]
        assert results[0][1]["computed"] == alone["computed"] == 4
        assert _outputs(two) == _outputs(one)
        assert not (two / SHARDS).exists()

    def test_calibration_merges_exactly(self, tmp_path: Path) -> None:
        torch.set_num_threads(1)
        alone = _calibrate(Ranks(), str(tmp_path / "one" / "calibration.json"))
        path = tmp_path / "two" / "calibration.json"
        results = spawn(_calibrate, str(path))
        assert results[0] == results[1] == ("ok", alone)  # every float the same
        assert json.loads(path.read_text()) == alone
        assert sorted(p.name for p in path.parent.iterdir()) == ["calibration.json"]

    def test_steering_evaluation_equals_one_process(self, tmp_path: Path) -> None:
        torch.set_num_threads(1)
        root = tmp_path / "experiments"
        model, tokenizer = tiny_model(), tiny_tokenizer()
        tokenizer.chat_template = TEMPLATE
        extraction = ExtractionSettings(methods=("mean_diff",), layers=(1, 2))
        extract_trait(
            model,
            tokenizer,
            "refusal",
            root / "demo" / "extraction" / "refusal" / "instruct",
            extraction,
        )
        alone = _evaluate(Ranks(), str(root), str(tmp_path / "one"))
        results = spawn(_evaluate, str(root), str(tmp_path / "two"))
        assert results[0] == results[1] == ("ok", alone), results
        one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
        assert sorted(one) == sorted(two) and len(one) > 6
        for name, data in one.items():
            if name.endswith("results.jsonl"):  # the header records when the run was made
                data, other = (_no_created(x) for x in (data, two[name]))
                assert data == other, name
            else:
                assert data == two[name], name

    def test_a_vector_failing_on_one_rank_stops_every_rank_with_its_reason(
        self, tmp_path: Path
    ) -> None:
        # each rank extracts its share of the vectors; the other rank must learn why the job
        # stopped instead of losing its connection at the next barrier
        results = spawn(_extract_vector_failing, str(tmp_path / "out"))
        assert results[0][0] == "ValueError" and "rank 0's probe fails" in results[0][1]
        assert results[1][0] == "RankFailedError", results[1]
        assert "rank 0 of 2 failed" in results[1][1] and "rank 0's probe fails" in results[1][1]

    def test_a_rank_failing_mid_run_stops_all_and_the_rerun_reuses_its_units(
        self, tmp_path: Path, caplog
    ) -> None:
        torch.set_num_threads(1)
        ref, out = tmp_path / "ref", tmp_path / "out"
        _extract(Ranks(), str(ref))
        results = spawn(_extract_failing, str(out))
        assert results[1][0] == "RuntimeError" and "rank 1 dies" in results[1][1]
        assert results[0][0] == "RankFailedError" and "rank 1 dies" in results[0][1]
        left = sorted(p.name for p in out.glob(f"{SHARDS}/*/residual/*.safetensors"))
        assert left and not (out / "metrics.jsonl").exists()
        with caplog.at_level(logging.INFO, logger="trait_lab.extraction.units"):
            resumed = _extract(Ranks(), str(out))  # one process finishes the job
        total = 2 * len(batches(len(load_trait("refusal").pairs), SETTINGS.batch_size))
        done = f"{len(left)} of {total} residual batches done, {total - len(left)} to compute"
        assert done in caplog.text
        assert resumed["computed"] == 4 and _outputs(out) == _outputs(ref)
