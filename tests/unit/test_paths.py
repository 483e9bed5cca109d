"""The experiments folder layout (trait_lab.core.paths): every path, and the name checks."""

from __future__ import annotations

from pathlib import Path

import pytest

import trait_lab.dynamics as dynamics
import trait_lab.extraction as extraction
from trait_lab.core import experiments, paths
from trait_lab.core.paths import (
    activations_path,
    calibration_path,
    check_name,
    config_path,
    experiments_root,
    extraction_dir,
    inference_dir,
    record_path,
    records_dir,
    research_dir,
    vector_path,
)

ROOT = Path("/x")


def test_the_layout() -> None:
    exp = ROOT / "demo"
    out = extraction_dir("demo", "optimism", "instruct", ROOT)
    assert config_path("demo", ROOT) == exp / "config.json"
    assert out == exp / "extraction" / "optimism" / "instruct"
    assert activations_path(out, "residual") == out / "activations" / "residual.safetensors"
    assert vector_path(out, "attn_out", "probe", 7) == (
        out / "vectors" / "attn_out" / "probe" / "layer_7.safetensors"
    )
    inference = exp / "inference" / "instruct"
    assert inference_dir("demo", "instruct", ROOT) == inference
    assert calibration_path("demo", "instruct", ROOT) == (
        inference / "massive_activations" / "calibration.json"
    )
    assert research_dir("demo", "instruct", "borderline", ROOT) == (
        inference / "massive_activations" / "research" / "borderline"
    )
    folder = records_dir("demo", "instruct", "smoke", ROOT)
    assert folder == inference / "projections" / "smoke"
    assert record_path(folder, 0) == folder / "0.json"


def test_root_from_argument_environment_or_search(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert experiments_root(tmp_path / "mine") == tmp_path / "mine"
    monkeypatch.setenv("TRAIT_LAB_EXPERIMENTS", str(tmp_path / "env"))
    assert extraction_dir("e", "t", "v").parts[:-4] == (tmp_path / "env").parts
    monkeypatch.delenv("TRAIT_LAB_EXPERIMENTS")
    (tmp_path / "experiments").mkdir()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")
    assert experiments_root() == (tmp_path / "experiments").resolve()


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("../escape", "'escape'"),
        ("a/b", "'a_b'"),
        ("a\\b", "'a_b'"),
        ("..", "'my_name'"),
        (".hidden", "'hidden'"),
        ("", "'my_name'"),
        ("   ", "'my_name'"),
        ("new\nline", "'new_line'"),
        ("a..b", "'a_b'"),
    ],
)
def test_bad_names_are_refused_with_a_fix(value: str, hint: str) -> None:
    with pytest.raises(ValueError) as info:
        check_name("extraction_dir", "trait", value)
    message = str(info.value)
    assert f"extraction_dir.trait={value!r} is invalid" in message
    assert "not starting with '.'" in message and f"rename it, e.g. to {hint}" in message


def test_every_name_in_a_path_is_checked() -> None:
    calls = [
        (lambda: extraction_dir("../e", "t", "v", ROOT), "experiment_dir.experiment"),
        (lambda: extraction_dir("e", "t/x", "v", ROOT), "extraction_dir.trait"),
        (lambda: extraction_dir("e", "t", ".v", ROOT), "extraction_dir.variant"),
        (lambda: activations_path(ROOT, "a/b"), "activations_path.component"),
        (lambda: vector_path(ROOT, "..", "probe", 1), "vector_path.component"),
        (lambda: vector_path(ROOT, "residual", "", 1), "vector_path.method"),
        (lambda: calibration_path("e", "../v", ROOT), "inference_dir.variant"),
        (lambda: research_dir("e", "v", ".secret", ROOT), "research_dir.name"),
        (lambda: records_dir("e", "v", "a/../b", ROOT), "records_dir.prompt_set"),
    ]
    for call, where in calls:
        with pytest.raises(ValueError, match=rf"^{where}="):
            call()


@pytest.mark.parametrize("layer", [-1, 1.0, "3", True, None])
def test_layer_must_be_a_non_negative_int(layer: object) -> None:
    with pytest.raises(ValueError, match=r"vector_path\.layer=.*an int >= 0"):
        vector_path(ROOT, "residual", "probe", layer)  # type: ignore[arg-type]


def test_a_non_string_name_says_to_pass_a_str() -> None:
    with pytest.raises(ValueError, match="Pass the variant as a str"):
        inference_dir("e", None, ROOT)  # type: ignore[arg-type]


def test_numpy_layers_and_unicode_names_are_fine() -> None:
    np = pytest.importorskip("numpy")
    assert vector_path(ROOT, "residual", "probe", np.int64(3)).name == "layer_3.safetensors"
    assert extraction_dir("exp", "höflichkeit", "base model", ROOT).parts[-2:] == (
        "höflichkeit",
        "base model",
    )


def test_the_old_import_places_serve_the_same_functions() -> None:
    assert experiments.experiments_root is paths.experiments_root
    assert experiments.CONFIG_NAME == paths.CONFIG_NAME
    assert extraction.extraction_dir is paths.extraction_dir
    assert extraction.vector_path is paths.vector_path
    assert dynamics.calibration_path is paths.calibration_path
    assert dynamics.records_dir is paths.records_dir


def test_an_experiment_name_that_cannot_be_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"experiment_dir\.experiment='\.\./x'"):
        experiments.load_experiment_config("../x", root=tmp_path)
