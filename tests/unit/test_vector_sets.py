"""load_vector_grid and VectorGrid, on vectors saved in the extraction layout under tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from trait_lab.extraction.outputs import extraction_dir, vector_path
from trait_lab.io.vectors import save_vector
from trait_lab.vectors.grids import VectorGrid, load_vector_grid

TRAITS = ("joy", "calm", "rage")
METHODS = ("probe", "mean_diff", "random_baseline")  # on-disk order differs from METHODS order
LAYERS = (0, 2, 5)
HIDDEN = 8


@pytest.fixture
def saved(tmp_path: Path) -> dict[tuple[str, int, str], torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    vectors = {}
    for trait in TRAITS:
        folder = extraction_dir("exp", trait, "instruct", str(tmp_path))
        for method in METHODS:
            for layer in LAYERS:
                vec = torch.randn(HIDDEN, generator=gen)
                save_vector(vec, vector_path(folder, "residual", method, layer), layer=layer)
                vectors[(trait, layer, method)] = vec
    # files that are not vectors of the layout are ignored
    stray = vector_path(
        extraction_dir("exp", "joy", "instruct", str(tmp_path)), "residual", "probe", 0
    )
    (stray.parent / "notes.txt").write_text("not a vector")
    (stray.parent / "layer_x.safetensors").write_bytes(b"")
    return vectors


def _load(tmp_path: Path, traits=TRAITS, **kw) -> VectorGrid:
    return load_vector_grid("exp", list(traits), root=str(tmp_path), **kw)


class TestLoad:
    def test_defaults_take_every_layer_and_method_but_the_random_baseline(self, tmp_path, saved):
        grid = _load(tmp_path, traits=["rage", "joy"])
        assert grid.traits == ["rage", "joy"]
        assert grid.layers == [0, 2, 5]
        assert grid.methods == ["mean_diff", "probe"]  # trait_lab.extraction.methods.METHODS order
        assert grid.keys[:3] == (
            ("rage", 0, "mean_diff"),
            ("rage", 0, "probe"),
            ("rage", 2, "mean_diff"),
        )
        assert grid.matrix.dtype == torch.float32 and grid.matrix.shape == (12, HIDDEN)
        for key, row in zip(grid.keys, grid.matrix, strict=True):
            torch.testing.assert_close(row, saved[key])

    def test_explicit_layers_and_methods_keep_the_given_order(self, tmp_path, saved):
        grid = _load(tmp_path, layers=[5, 0], methods=["random_baseline", "probe"])
        assert grid.keys[:4] == (
            ("joy", 5, "random_baseline"),
            ("joy", 5, "probe"),
            ("joy", 0, "random_baseline"),
            ("joy", 0, "probe"),
        )
        assert len(grid) == 12
        assert grid.labels[0] == "joy·L5·random_baseline"

    def test_missing_trait_names_it_and_the_fix(self, tmp_path, saved):
        with pytest.raises(FileNotFoundError, match=r"'hope'.*run_extraction\('exp', 'hope'"):
            _load(tmp_path, traits=["joy", "hope"])

    def test_missing_method_lists_the_methods_there(self, tmp_path, saved):
        with pytest.raises(FileNotFoundError, match=r"no 'gradient' vectors.*'mean_diff', 'probe'"):
            _load(tmp_path, methods=["gradient"])

    def test_unknown_method_lists_the_valid_ones(self, tmp_path, saved):
        with pytest.raises(ValueError, match=r"unknown method 'pca'.*mean_diff"):
            _load(tmp_path, methods=["pca"])

    def test_missing_layer_names_it_and_the_layers_there(self, tmp_path, saved):
        with pytest.raises(FileNotFoundError, match=r"layer\(s\) \[3\].*layers \[0, 2, 5\]"):
            _load(tmp_path, layers=[0, 3])

    def test_a_layer_missing_for_one_trait_only_is_an_error(self, tmp_path, saved):
        folder = extraction_dir("exp", "calm", "instruct", str(tmp_path))
        vector_path(folder, "residual", "probe", 2).unlink()
        with pytest.raises(
            FileNotFoundError, match=r"'calm' has no 'probe' vector at layer\(s\) \[2\]"
        ):
            _load(tmp_path)

    def test_bad_traits_argument(self, tmp_path, saved):
        with pytest.raises(ValueError, match="non-empty list"):
            load_vector_grid("exp", "joy", root=str(tmp_path))
        with pytest.raises(ValueError, match="duplicates"):
            _load(tmp_path, traits=["joy", "joy"])


class TestGrid:
    def test_from_mapping_checks_keys_and_shapes(self):
        v = torch.ones(3)
        with pytest.raises(ValueError, match=r"not \(trait, layer, method\)"):
            VectorGrid.from_mapping({("joy", 1): v})
        with pytest.raises(ValueError, match="layer must be an int"):
            VectorGrid.from_mapping({("joy", "L1", "probe"): v})
        with pytest.raises(ValueError, match="joy·L2·probe has 4 dims but joy·L1·probe has 3"):
            VectorGrid.from_mapping({("joy", 1, "probe"): v, ("joy", 2, "probe"): torch.ones(4)})
        with pytest.raises(ValueError, match=r"shape \(2, 3\)"):
            VectorGrid.from_mapping({("joy", 1, "probe"): torch.ones(2, 3)})
        with pytest.raises(TypeError, match="non-empty"):
            VectorGrid.from_mapping({})

    def test_select_and_vector(self, tmp_path, saved):
        grid = _load(tmp_path)
        part = grid.select(traits=["rage", "joy"], layers=[2])
        assert part.keys == (
            ("joy", 2, "mean_diff"),
            ("joy", 2, "probe"),
            ("rage", 2, "mean_diff"),
            ("rage", 2, "probe"),
        )  # grid order, whatever order was asked for
        torch.testing.assert_close(part.vector("rage", 2, "probe"), saved[("rage", 2, "probe")])
        with pytest.raises(ValueError, match=r"layers \[7\] are not in this grid"):
            grid.select(layers=[7])
        with pytest.raises(KeyError, match="no vector joy·L1·probe"):
            grid.vector("joy", 1, "probe")

    def test_cosine_tables_against_numpy(self, tmp_path, saved):
        grid = _load(tmp_path)
        unit = {
            t: saved[(t, 5, "probe")].numpy() / np.linalg.norm(saved[(t, 5, "probe")])
            for t in TRAITS
        }
        table = grid.trait_cosines(5, "probe")
        expected = np.array([[unit[a] @ unit[b] for b in TRAITS] for a in TRAITS])
        np.testing.assert_allclose(table.to_numpy(), expected, atol=1e-6)
        pairs = grid.trait_pairs(5, "probe")
        assert len(pairs) == 3 and pairs["cosine"].is_monotonic_decreasing
        top = pairs.iloc[0]
        np.testing.assert_allclose(
            top["cosine"], unit[top["trait_a"]] @ unit[top["trait_b"]], atol=1e-6
        )

    def test_similarity_by_layer(self, tmp_path, saved):
        grid = _load(tmp_path)
        table = grid.similarity_by_layer().set_index(["layer", "method"])
        assert len(table) == len(LAYERS) * 2

        def cos(a, b):
            return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

        agree = np.mean(
            [
                cos(saved[(t, 2, "probe")].numpy(), saved[(t, 2, "mean_diff")].numpy())
                for t in TRAITS
            ]
        )
        np.testing.assert_allclose(table.loc[(2, "probe"), "method_agreement"], agree, atol=1e-6)
        off = [
            abs(cos(saved[(a, 0, "mean_diff")].numpy(), saved[(b, 0, "mean_diff")].numpy()))
            for i, a in enumerate(TRAITS)
            for b in TRAITS[i + 1 :]
        ]
        np.testing.assert_allclose(
            table.loc[(0, "mean_diff"), "mean_abs_cosine"], np.mean(off), atol=1e-6
        )
        np.testing.assert_allclose(
            table.loc[(0, "mean_diff"), "max_abs_cosine"], np.max(off), atol=1e-6
        )

    def test_layer_to_layer(self, tmp_path, saved):
        table = _load(tmp_path, layers=[0, 2, 5]).layer_to_layer("probe")
        assert list(table.columns) == ["L0→L2", "L2→L5"] and list(table.index) == list(TRAITS)
        a, b = saved[("calm", 2, "probe")].numpy(), saved[("calm", 5, "probe")].numpy()
        expected = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
        np.testing.assert_allclose(table.loc["calm", "L2→L5"], expected, atol=1e-6)
