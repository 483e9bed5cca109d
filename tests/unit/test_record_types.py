"""trait_lab.types: every record type in one import, each checked and round-tripping via dicts."""

from __future__ import annotations

import json
from typing import Any

import pytest

import trait_lab
import trait_lab.types as types
from trait_lab.models.identity import model_identity
from trait_lab.testing import tiny_model, tiny_record
from trait_lab.types import (
    ActivationMetadata,
    JudgeResult,
    ModelConfig,
    ModelVariant,
    ProjectionConfig,
    ProjectionEntry,
    ProjectionRecord,
    ResponseRecord,
    SteeringEntry,
    SteeringResults,
    SteeringRunRecord,
    VectorResult,
    VectorSpec,
)

TRAITINTERP = [  # the names traitinterp's core.types offers
    "VectorSpec",
    "VectorResult",
    "JudgeResult",
    "ProjectionConfig",
    "ModelVariant",
    "SteeringEntry",
    "ResponseRecord",
    "ProjectionEntry",
    "ProjectionRecord",
    "SteeringRunRecord",
    "SteeringResults",
    "ActivationMetadata",
    "ModelConfig",
]

RUN = SteeringRunRecord("demo", "optimism", "instruct", "f" * 16, {"kind": "test"})
ENTRY = SteeringEntry((9, 12), (2.0, 3.0), "residual", "probe", 55.0, 80.0, 8, True)
EXAMPLES: dict[str, Any] = {
    "VectorSpec": VectorSpec(9, "attn_contribution", "response[:5]", "mean_diff", 0.5),
    "ProjectionConfig": ProjectionConfig([VectorSpec(9, weight=0.7), VectorSpec(12)]),
    "VectorResult": VectorResult(3, "residual", "prompt[-1]", "probe", "extraction"),
    "JudgeResult": JudgeResult(71.5, 88.0, 20, trait_std=9.5),
    "ModelVariant": ModelVariant("instruct", model="org/model"),
    "ActivationMetadata": ActivationMetadata(
        "m", 30, 576, (9, 12), ("residual",), "response[:]", 100, {9: 3.25, 12: 4.5}
    ),
    "ModelConfig": ModelConfig("HuggingFaceTB/SmolLM2-135M-Instruct", "llama", 30, 576, "bfloat16"),
    "ResponseRecord": ResponseRecord(
        "Why?",
        "Because.",
        prompt_tokens=["Why", "?"],
        prompt_ids=[7, 8],
        response_tokens=["Because", "."],
        response_ids=[9, 10],
        trait_score=12.5,
        coherence=90.0,
        steering=[VectorSpec(9, weight=4.0), VectorSpec(12, weight=-1.0)],
    ),
    "ResponseRecord-bare": ResponseRecord("Hi", ""),
    "ProjectionEntry": ProjectionEntry("optimism", VectorSpec(9), [0.5, -1.0], [2.0, 4.0, 6.0]),
    "SteeringEntry": ENTRY,
    "SteeringRunRecord": RUN,
    "SteeringResults": SteeringResults(RUN, JudgeResult(20.0, 90.0, 4), [ENTRY]),
    "ProjectionRecord": tiny_record(),
}


def via_json(record: Any) -> Any:
    return type(record).from_dict(json.loads(json.dumps(record.to_dict(), allow_nan=False)))


def test_every_traitinterp_type_is_importable_from_trait_lab_types() -> None:
    assert sorted(types.__all__) == sorted(TRAITINTERP)
    for name in TRAITINTERP:
        cls = getattr(types, name)
        assert callable(cls.to_dict) and callable(cls.from_dict)
    for name in ("ModelConfig", "ResponseRecord", "ProjectionEntry", "ProjectionRecord"):
        assert getattr(trait_lab, name) is getattr(types, name)  # the facade serves the same


@pytest.mark.parametrize("record", list(EXAMPLES.values()), ids=list(EXAMPLES))
def test_round_trip_through_json(record: Any) -> None:
    assert via_json(record) == record
    assert type(record).from_dict(record.to_dict()) == record


@pytest.mark.parametrize("cls", [getattr(types, n) for n in TRAITINTERP], ids=TRAITINTERP)
def test_from_dict_of_a_bad_dict_is_a_clear_value_error(cls: Any) -> None:
    with pytest.raises(ValueError, match=r"unknown|missing|expects a dict"):
        cls.from_dict({"nonsense": 1})
    with pytest.raises(ValueError, match="dict"):
        cls.from_dict(["not", "a", "dict"])


class TestResponseRecord:
    def test_properties_and_normalised_fields(self) -> None:
        r = EXAMPLES["ResponseRecord"]
        assert r.prompt_ids == (7, 8) and r.steering[1].weight == -1.0
        d = r.to_dict()
        assert d["steering"][0] == {**VectorSpec(9).to_dict(), "weight": 4.0}

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"prompt": ""}, r"prompt=''.*non-empty string"),
            ({"response": None}, r"response=None.*a string"),
            ({"response_tokens": ["a"], "response_ids": [1, 2]}, r"response_ids.*one id per token"),
            ({"prompt_ids": [1, -2]}, r"prompt_ids\[1\]=-2"),
            ({"prompt_tokens": "ab"}, r"prompt_tokens='ab'.*a list"),
            ({"trait_score": 101.0}, r"trait_score=101.0.*\[0.0, 100.0\]"),
            ({"coherence": float("nan")}, "coherence=nan"),
            ({"steering": [{"layer": "x"}]}, r"steering\[0\].*layer"),
            ({"steering": [3]}, r"steering\[0\]=3.*VectorSpec"),
        ],
    )
    def test_bad_values(self, kwargs: dict[str, Any], match: str) -> None:
        base: dict[str, Any] = {"prompt": "Hi", "response": "Yo"}
        with pytest.raises(ValueError, match=match):
            ResponseRecord(**{**base, **kwargs})


class TestProjectionEntry:
    def test_properties(self) -> None:
        e = EXAMPLES["ProjectionEntry"]
        assert e.layer == 9 and e.scores == (0.5, -1.0, 2.0, 4.0, 6.0)
        assert e.response_mean == 4.0
        assert ProjectionEntry("t", VectorSpec(1), [], []).response_mean is None

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"trait": ""}, "trait"),
            ({"vector": 9}, r"vector=9.*VectorSpec"),
            ({"vector": {"layer": -1}}, r"vector.*layer=-1"),
            ({"response_scores": [1.0, float("inf")]}, r"response_scores\[1\]=inf"),
            ({"prompt_scores": None}, "prompt_scores=None"),
        ],
    )
    def test_bad_values(self, kwargs: dict[str, Any], match: str) -> None:
        base: dict[str, Any] = {
            "trait": "t",
            "vector": VectorSpec(1),
            "prompt_scores": [],
            "response_scores": [],
        }
        with pytest.raises(ValueError, match=match):
            ProjectionEntry(**{**base, **kwargs})


class TestModelConfig:
    def test_from_a_loaded_model(self) -> None:
        model = tiny_model("gpt2")
        cfg = ModelConfig.from_identity(model_identity(model))
        assert cfg == ModelConfig("gpt2", "gpt2", 3, 32, "float32")
        assert cfg.n_layers == model.config.num_hidden_layers
        assert cfg.hidden_dim == model.config.hidden_size

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"n_layers": 0}, r"n_layers=0.*>= 1"),
            ({"hidden_dim": 57.6}, "hidden_dim=57.6"),
            ({"dtype": "int8"}, r"dtype='int8'.*bfloat16"),
            ({"name": ""}, "name"),
        ],
    )
    def test_bad_values(self, kwargs: dict[str, Any], match: str) -> None:
        base: dict[str, Any] = {"name": "m", "model_type": "llama", "n_layers": 2, "hidden_dim": 8}
        with pytest.raises(ValueError, match=match):
            ModelConfig(**{**base, **kwargs})

    def test_torch_dtype_spelling_and_bad_identity(self) -> None:
        assert ModelConfig("m", "llama", 2, 8, "torch.bfloat16").dtype == "bfloat16"
        with pytest.raises(ValueError, match="model_identity"):
            ModelConfig.from_identity({"model_type": "llama"})


class TestProjectionRecordFromDict:
    def test_input_is_not_modified(self) -> None:
        d = tiny_record().to_dict()
        before = json.dumps(d, sort_keys=True)
        ProjectionRecord.from_dict(d)
        assert json.dumps(d, sort_keys=True) == before

    def test_damage_is_a_value_error(self) -> None:
        d = tiny_record().to_dict()
        d["boundary"] += 1
        with pytest.raises(ValueError, match="boundary"):
            ProjectionRecord.from_dict(d)
