"""ProjectionRecord schema and project_prompts on a tiny random model with a word tokenizer.

Ground truth: the same token sequence run in one plain forward with
``output_hidden_states=True`` (layer ``L``'s residual is ``hidden_states[L + 1]`` for the
non-final layers used here), projected with numpy in the test.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.helpers import CALIBRATION, PROMPTS, make_tokenizer
from trait_lab.core.types import ProjectionConfig, VectorSpec
from trait_lab.dynamics.calibration import calibrate
from trait_lab.dynamics.inference import project_prompts
from trait_lab.dynamics.records import (
    PROJECTION_SCHEMA,
    ProjectionRecord,
    RecordError,
    load_record,
)
from trait_lab.testing import tiny_model

LAYERS = (0, 1)


@pytest.fixture(scope="module")
def setup():
    model, tok = tiny_model(), make_tokenizer()
    gen = torch.Generator().manual_seed(1)
    vectors = {layer: torch.randn(32, generator=gen) * 3 for layer in LAYERS}
    return model, tok, vectors


def hidden(model, tok, record: ProjectionRecord) -> dict[int, np.ndarray]:
    ids = record.prompt_ids + record.response_ids
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_hidden_states=True)
    return {layer: out.hidden_states[layer + 1][0].double().numpy() for layer in LAYERS}


def unit(v: torch.Tensor) -> np.ndarray:
    x = v.double().numpy()
    return x / np.linalg.norm(x)


@pytest.fixture(scope="module")
def records(setup):
    model, tok, vectors = setup
    generated = project_prompts(model, tok, PROMPTS, {"t": vectors}, CALIBRATION, max_new_tokens=5)
    forced = project_prompts(
        model, tok, PROMPTS, {"t": vectors}, CALIBRATION, responses=["fine thanks", "why"]
    )
    return generated + forced


class TestProjections:
    def test_raw_projection_and_norms_match_a_plain_forward(self, setup, records) -> None:
        model, tok, vectors = setup
        for rec in records:
            assert rec.n_tokens == len(rec.prompt_tokens) + len(rec.response_tokens)
            h = hidden(model, tok, rec)
            for layer in LAYERS:
                scores, norms = rec.raw("t", layer)
                np.testing.assert_allclose(scores, h[layer] @ unit(vectors[layer]), atol=1e-4)
                np.testing.assert_allclose(norms, np.linalg.norm(h[layer], axis=-1), rtol=1e-5)
                np.testing.assert_allclose(
                    rec.dim_values[layer], h[layer][:, rec.candidate_dims], atol=1e-5
                )

    def test_teacher_forced_keeps_the_given_response(self, setup, records) -> None:
        tok = setup[1]
        assert records[2].response_tokens == ["fine", "thanks"]
        assert records[2].response_ids == tok.convert_tokens_to_ids(["fine", "thanks"])
        assert records[2].prompt_tokens == ["<s>", "hello", "how", "are", "you"]
        assert records[2].boundary == 5 and records[0].boundary == 5
        assert len(records[0].response_tokens) >= 1

    @pytest.mark.parametrize("option", ["top5", "all", "none"])
    def test_cleaned_equals_zeroed_activations(self, setup, records, option) -> None:
        from trait_lab.dynamics.cleaning import dims_to_clean

        model, tok, vectors = setup
        dims = dims_to_clean(CALIBRATION, option)
        for rec in records:
            h = hidden(model, tok, rec)
            for layer in LAYERS:
                zeroed = h[layer].copy()
                zeroed[:, dims] = 0
                scores, norms = rec.cleaned("t", layer, option)
                np.testing.assert_allclose(scores, zeroed @ unit(vectors[layer]), atol=1e-5)
                np.testing.assert_allclose(norms, np.linalg.norm(zeroed, axis=-1), atol=1e-5)
        assert dims_to_clean(CALIBRATION, "top5") == [1, 3, 5, 7]

    def test_ensemble_is_the_normalized_weighted_sum(self, setup) -> None:
        model, tok, _ = setup
        gen = torch.Generator().manual_seed(2)
        raw = {"probe": torch.randn(32, generator=gen), "mean_diff": torch.randn(32, generator=gen)}
        config = ProjectionConfig(
            [VectorSpec(1, method="probe", weight=3.0), VectorSpec(1, method="mean_diff")]
        )
        (rec,) = project_prompts(
            model, tok, PROMPTS[:1], {"e": config}, CALIBRATION, max_new_tokens=3,
            vector_loader=lambda trait, spec: raw[spec.method],
        )  # fmt: skip
        h = hidden(model, tok, rec)[1]
        expected = 0.75 * h @ unit(raw["probe"]) + 0.25 * h @ unit(raw["mean_diff"])
        np.testing.assert_allclose(rec.raw("e", 1)[0], expected, atol=1e-4)
        zeroed = h.copy()
        zeroed[:, [3, 7, 11]] = 0
        clean = 0.75 * zeroed @ unit(raw["probe"]) + 0.25 * zeroed @ unit(raw["mean_diff"])
        np.testing.assert_allclose(rec.cleaned("e", 1, "all")[0], clean, atol=1e-5)

    def test_mixed_layer_ensemble_is_refused(self, setup) -> None:
        model, tok, _ = setup
        config = ProjectionConfig([VectorSpec(0), VectorSpec(1)])
        with pytest.raises(ValueError, match="ONE layer"):
            project_prompts(model, tok, PROMPTS, {"e": config}, CALIBRATION,
                            vector_loader=lambda t, s: torch.ones(32))  # fmt: skip

    def test_real_tiny_calibration(self, setup, tmp_path) -> None:
        model, tok, vectors = setup
        cal = calibrate(model, tok, PROMPTS, tmp_path / "calibration.json")
        (rec,) = project_prompts(model, tok, PROMPTS[:1], {"t": vectors}, cal, max_new_tokens=2)
        assert set(cal["candidates"]) <= set(rec.candidate_dims)
        rec.cleaned("t", 0, "top5")


class TestSchema:
    def test_round_trip(self, records, tmp_path) -> None:
        for i, rec in enumerate(records):
            path = rec.save(tmp_path / f"{i}.json")
            assert load_record(path) == rec
        assert json.loads(path.read_text())["schema_version"] == PROJECTION_SCHEMA.version

    @pytest.mark.parametrize("key", ["dim_values", "candidate_dims", "vector_dims"])
    def test_cleaning_data_is_required_to_build(self, records, key) -> None:
        data = records[0].to_dict()
        del data[key]
        with pytest.raises(TypeError, match=key):
            ProjectionRecord(**data)
        data[key] = [] if key == "candidate_dims" else {}
        with pytest.raises(RecordError):
            ProjectionRecord(**data)

    @pytest.mark.parametrize("key", ["dim_values", "candidate_dims", "vector_dims"])
    def test_cleaning_data_is_required_to_load(self, records, key, tmp_path) -> None:
        data = records[0].to_dict()
        del data[key]
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(data))
        with pytest.raises(RecordError, match=key) as err:
            load_record(path)
        assert str(path) in str(err.value)

    def test_version_mismatch_is_refused(self, records, tmp_path) -> None:
        data = records[0].to_dict() | {"schema_version": PROJECTION_SCHEMA.version + 1}
        path = tmp_path / "future.json"
        path.write_text(json.dumps(data))
        with pytest.raises(RecordError, match="schema_version") as err:
            load_record(path)
        assert str(path) in str(err.value)
        with pytest.raises(RecordError, match="schema_version"):
            ProjectionRecord(**data)

    @pytest.mark.parametrize(
        "damage",
        [
            lambda d: d["norms"]["0"].pop(),
            lambda d: d["dim_values"]["1"][0].pop(),
            lambda d: d["projections"]["t"]["0"].append(0.0),
            lambda d: d["candidate_dims"].remove(3),
            lambda d: d.update(boundary=d["boundary"] + 1),
            lambda d: d["weights"]["t"].update({"0": [0.5]}),
        ],
    )
    def test_inconsistent_shapes_are_refused(self, records, damage, tmp_path) -> None:
        data = records[0].to_dict()
        damage(data)
        path = tmp_path / "damaged.json"
        path.write_text(json.dumps(data))
        with pytest.raises(RecordError, match=r"damaged\.json"):
            load_record(path)

    def test_unknown_trait_or_layer(self, records) -> None:
        with pytest.raises(KeyError, match="traits"):
            records[0].cleaned("nope", 0, "all")
        with pytest.raises(KeyError, match="layers"):
            records[0].cleaned("t", 2, "all")

    def test_a_ui_label_is_refused_with_the_key_to_pass(self, records) -> None:
        with pytest.raises(ValueError, match=r"'Top 5, 3\+ layers'.*pass clean option 'top5'"):
            records[0].cleaned("t", 0, "Top 5, 3+ layers")
