"""Named prompt sets and research-mode calibration on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import FakeTokenizer
from trait_lab.dynamics.calibration import research_calibration
from trait_lab.dynamics.massive import NEUTRAL_PROMPTS, calibration_path, load_calibration
from trait_lab.prompts.prompt_sets import list_prompt_sets, load_prompt_set
from trait_lab.testing import tiny_model


def test_builtin_sets() -> None:
    assert list_prompt_sets() == ["borderline", "neutral"]
    assert tuple(load_prompt_set("neutral")) == NEUTRAL_PROMPTS
    assert len(load_prompt_set("borderline")) >= 10


def test_own_file_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "mine.txt"
    path.write_text("first prompt\n\n second prompt \n")
    assert load_prompt_set(path) == ["first prompt", "second prompt"]
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        load_prompt_set(tmp_path / "empty.txt")
    with pytest.raises(FileNotFoundError, match=r"built-in sets are \['borderline', 'neutral'\]"):
        load_prompt_set("nope")


def test_research_mode_writes_per_token_output_beside_not_over(tmp_path: Path) -> None:
    model = tiny_model()
    prompts = tmp_path / "probe_set.txt"
    prompts.write_text("one two three four\nfive six seven\n")
    record, folder = research_calibration(
        model, FakeTokenizer(), "exp", "inst", prompts, root=tmp_path, per_token=True
    )
    assert folder.name == "probe_set" and folder.parent.name == "research"
    assert (
        load_calibration(folder / "calibration.json")["tokens_seen"] == 7 == record["tokens_seen"]
    )
    rows = json.loads((folder / "per_token.json").read_text())["prompts"]
    assert len(rows) == 2
    assert not calibration_path("exp", "inst", tmp_path).exists()  # the variant's own is untouched


def test_cli_calibrate_reports_a_missing_experiment(capsys, tmp_path, monkeypatch) -> None:
    from trait_lab.cli import main

    monkeypatch.setenv("TRAIT_LAB_EXPERIMENTS", str(tmp_path))
    assert main(["calibrate", "--prompt-set", "neutral"]) == 2
    assert "no experiment config" in capsys.readouterr().err
