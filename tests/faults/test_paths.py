"""Inference and calibration write only inside their experiment, for a configured variant.

Case 1: a name that is not one folder name (``..``, an absolute path, ``''``) is refused by
``core.paths.check_name`` before anything is written, at every entry point of ``dynamics/``
that takes an experiment, a variant, a prompt set or a research name. Case 2: the variant must
be one of the experiment's ``config.json`` variants; without a ``model`` the config is required
and the variant's own model is loaded (never silently the default one). An explicit ``model``
needs no config: the experiment name then only says where the files go.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import trait_lab.generation.backends as backends
from tests.faults.checks import clear_error
from tests.helpers import PROMPTS, FakeTokenizer
from trait_lab.core.paths import calibration_path, records_dir
from trait_lab.dynamics.calibration import (
    ensure_calibration,
    passive_collector,
    research_calibration,
)
from trait_lab.dynamics.inference import run_inference

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = {"model_variants": {"instruct": {"model": None}, "base": {"model": "/models/base"}}}


@pytest.fixture
def traits() -> dict[str, dict[int, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    return {"t": {1: torch.randn(32, generator=gen)}}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """``tmp_path/experiments`` with experiment ``exp`` (variants instruct and base)."""
    folder = tmp_path / "experiments" / "exp"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(CONFIG))
    return tmp_path / "experiments"


def tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def _bad_names(tmp_path: Path) -> list[str]:
    return ["..", "../escape", str(tmp_path / "escape"), ""]


Entry = Callable[..., Any]


def _entries(model, tokenizer, traits, root: Path) -> dict[str, Callable[[str], Any]]:
    """Every dynamics entry point that puts a name into a path, with ``bad`` in one place."""
    run = dict(root=root, model=model, tokenizer=tokenizer, max_new_tokens=2)
    tok = FakeTokenizer()
    return {
        "run_inference.experiment": lambda bad: run_inference(bad, "set", PROMPTS, traits, **run),
        "run_inference.variant": lambda bad: run_inference(
            "exp", "set", PROMPTS, traits, variant=bad, **run
        ),
        "run_inference.prompt_set": lambda bad: run_inference("exp", bad, PROMPTS, traits, **run),
        "ensure_calibration.experiment": lambda bad: ensure_calibration(
            model, tok, bad, "instruct", root
        ),
        "ensure_calibration.variant": lambda bad: ensure_calibration(model, tok, "exp", bad, root),
        "passive_collector.experiment": lambda bad: passive_collector(model, bad, "instruct", root),
        "passive_collector.variant": lambda bad: passive_collector(model, "exp", bad, root),
        "research_calibration.experiment": lambda bad: research_calibration(
            model, tok, bad, "instruct", "neutral", root
        ),
        "research_calibration.variant": lambda bad: research_calibration(
            model, tok, "exp", bad, "neutral", root
        ),
    }


ENTRIES = list(_entries(None, None, None, Path()))


class TestNamesStayInside:
    @pytest.mark.parametrize("entry", ENTRIES)
    @pytest.mark.parametrize("which", range(4), ids=["dotdot", "parent", "absolute", "empty"])
    def test_a_name_that_is_not_one_folder_is_refused_before_any_write(
        self, model, tokenizer, traits, root: Path, tmp_path: Path, entry: str, which: int
    ) -> None:
        bad = _bad_names(tmp_path)[which]
        call = _entries(model, tokenizer, traits, root)[entry]
        before = tree(tmp_path)
        clear_error(ValueError, call, bad, mentions=[repr(bad), "rename"])
        assert tree(tmp_path) == before  # nothing under the root, nor beside it
        assert not (tmp_path / "escape").exists() and not Path("/escape").exists()

    @pytest.mark.parametrize("name", ["..", "", ".hidden"])
    def test_a_research_name_that_is_not_one_folder_is_refused(
        self, model, root: Path, tmp_path: Path, name: str
    ) -> None:
        before = tree(tmp_path)
        call = research_calibration
        args = (model, FakeTokenizer(), "exp", "instruct", name, root)
        clear_error(ValueError, call, *args, mentions=[repr(name), "research_dir.name", "rename"])
        assert tree(tmp_path) == before


class TestConfiguredVariant:
    def test_an_unknown_variant_is_refused_listing_the_choices(
        self, model, tokenizer, traits, root: Path, tmp_path: Path
    ) -> None:
        before = tree(tmp_path)
        for entry, call in _entries(model, tokenizer, traits, root).items():
            if not entry.endswith(".variant"):
                continue
            clear_error(ValueError, call, "nope", mentions=["'nope'", "base", "instruct"])
        assert tree(tmp_path) == before

    def test_without_a_model_the_config_is_required(
        self, traits, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def no_loading(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("a model was loaded")

        monkeypatch.setattr(backends, "load_model", no_loading)
        before = tree(tmp_path)
        exc = clear_error(
            FileNotFoundError,
            run_inference,
            "typo",
            "set",
            PROMPTS,
            traits,
            root=root,
            mentions=[str(root / "typo" / "config.json"), "create"],
        )
        assert "exp" in str(exc)  # the experiments that do exist are listed
        assert tree(tmp_path) == before

    def test_without_a_model_the_variants_own_model_is_loaded(
        self, model, tokenizer, traits, root: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        loaded: list[Any] = []

        def load(name_or_path: Any = None, **kwargs: Any) -> Any:
            loaded.append(name_or_path)
            return model, tokenizer

        monkeypatch.setattr(backends, "load_model", load)
        paths = run_inference(
            "exp", "set", PROMPTS, traits, variant="base", root=root, max_new_tokens=2
        )
        assert loaded == ["/models/base"]  # not the default model (None)
        assert paths[0].parent == records_dir("exp", "base", "set", root)

    def test_an_explicit_model_needs_no_config(
        self, model, tokenizer, traits, tmp_path: Path
    ) -> None:
        """The caller chose the model; the names only say where the files go (documented)."""
        root = tmp_path / "bare"
        paths = run_inference(
            "scratch",
            "set",
            PROMPTS,
            traits,
            root=root,
            model=model,
            tokenizer=tokenizer,
            max_new_tokens=2,
        )
        assert [p.parent for p in paths] == [records_dir("scratch", "instruct", "set", root)] * 2
        assert calibration_path("scratch", "instruct", root).is_file()
