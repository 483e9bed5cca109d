"""Tests for trait_lab.core.types: validation, dict round trips and atomic JSON files."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, strategies as st

import trait_lab.core.types as tt
from trait_lab.core.types import (
    COMPONENTS,
    RECORD_SCHEMA,
    ActivationMetadata,
    JudgeResult,
    ModelVariant,
    ProjectionConfig,
    Record,
    VectorResult,
    VectorSpec,
    load_json,
    save_json,
)

names = st.text(min_size=1, max_size=20).filter(lambda s: bool(s.strip()))
specs = st.builds(
    VectorSpec,
    layer=st.integers(min_value=0, max_value=500),
    component=st.sampled_from(COMPONENTS),
    position=names,
    method=names,
    weight=st.floats(allow_nan=False, allow_infinity=False),
)


def via_json(record: Record) -> Any:
    """to_dict -> JSON text -> from_dict, as a file round trip would do."""
    return type(record).from_dict(json.loads(json.dumps(record.to_dict(), allow_nan=False)))


def steering_result(**overrides: Any) -> VectorResult:
    kwargs: dict[str, Any] = dict(
        layer=9,
        component="residual",
        position="response[:]",
        method="probe",
        source="steering",
        accuracy=0.9,
        effect_size=1.4,
        polarity_correct=True,
        delta=12.5,
        coherence=81.0,
        path="vectors/probe_layer9.pt",
        coefficient=-30.0,
    )
    return VectorResult(**{**kwargs, **overrides})


def metadata(**overrides: Any) -> ActivationMetadata:
    kwargs: dict[str, Any] = dict(
        model="SmolLM2-135M-Instruct",
        n_layers=30,
        hidden_dim=576,
        captured_layers=(9, 12),
        components=("residual", "attn_contribution"),
        position="response[:]",
        n_samples=100,
        activation_norms={9: 3.25, 12: 4.5},
        dtype="float16",
    )
    return ActivationMetadata(**{**kwargs, **overrides})


EXAMPLES: dict[str, Record] = {
    "VectorSpec": VectorSpec(9, "attn_contribution", "response[:5]", "mean_diff", 0.5),
    "ProjectionConfig": ProjectionConfig([VectorSpec(9, weight=0.7), VectorSpec(12, weight=0.3)]),
    "VectorResult": steering_result(),
    "VectorResult-extraction": VectorResult(3, "residual", "prompt[-1]", "probe", "extraction"),
    "JudgeResult": JudgeResult(71.5, 88.0, 20, trait_std=9.5, coherence_std=4.0),
    "ModelVariant": ModelVariant("instruct-lora_v1.2", model="org/model", lora="adapters/x"),
    "ActivationMetadata": metadata(),
    "ActivationMetadata-no-norms": metadata(activation_norms=None),
}
ALL = pytest.mark.parametrize("record", list(EXAMPLES.values()), ids=list(EXAMPLES))


class TestRoundTrips:
    @ALL
    def test_dict_round_trip_through_json(self, record: Record) -> None:
        assert via_json(record) == record

    @ALL
    def test_to_dict_is_plain_json(self, record: Record) -> None:
        d = record.to_dict()
        assert json.loads(json.dumps(d, allow_nan=False)) == d

    @given(specs)
    def test_vector_spec_round_trip(self, spec: VectorSpec) -> None:
        assert via_json(spec) == spec

    @given(st.lists(specs, min_size=1, max_size=5))
    def test_projection_config_round_trip(self, vecs: list[VectorSpec]) -> None:
        config = ProjectionConfig(vecs)
        assert via_json(config) == config
        assert config.vectors == tuple(vecs)

    def test_activation_norms_keys_come_back_as_ints(self) -> None:
        back = via_json(metadata())
        assert back.activation_norms == {9: 3.25, 12: 4.5}
        assert all(type(k) is int for k in back.activation_norms or {})
        assert back.captured_layers == (9, 12) and back.components == (
            "residual",
            "attn_contribution",
        )

    def test_records_are_frozen_and_hashable(self) -> None:
        spec = VectorSpec(9)
        with pytest.raises(dataclasses.FrozenInstanceError):
            spec.layer = 3  # type: ignore[misc]
        assert len({spec, VectorSpec(9), metadata()}) == 2


class TestFromDictKeys:
    @ALL
    def test_unknown_key_is_named(self, record: Record) -> None:
        d = {**record.to_dict(), "colour": "blue"}
        with pytest.raises(ValueError, match=r"unknown key\(s\) \['colour'\].*Allowed keys"):
            type(record).from_dict(d)

    @ALL
    def test_missing_key_is_named(self, record: Record) -> None:
        d = record.to_dict()
        first = next(iter(d))
        del d[first]
        with pytest.raises(ValueError, match=rf"missing required key\(s\) \['{first}'\]"):
            type(record).from_dict(d)

    def test_unknown_and_missing_together(self) -> None:
        with pytest.raises(ValueError) as info:
            VectorSpec.from_dict({"lyer": 9})
        msg = str(info.value)
        assert "unknown key(s) ['lyer']" in msg and "missing required key(s) ['layer']" in msg
        assert "required: ['layer']" in msg and "'weight'" in msg

    def test_optional_keys_may_be_left_out(self) -> None:
        assert VectorSpec.from_dict({"layer": 4}) == VectorSpec(4)

    def test_not_a_dict(self) -> None:
        with pytest.raises(ValueError, match="expects a dict, got list"):
            VectorSpec.from_dict([9])  # type: ignore[arg-type]

    def test_nested_error_names_the_vector(self) -> None:
        d = {"vectors": [{"layer": 1}, {"layer": 2, "comp": "residual"}]}
        with pytest.raises(ValueError, match=r"vectors\[1\].*unknown key\(s\) \['comp'\]"):
            ProjectionConfig.from_dict(d)

    def test_nested_vectors_not_a_list(self) -> None:
        with pytest.raises(ValueError, match=r"vectors='x'.*non-empty list"):
            ProjectionConfig.from_dict({"vectors": "x"})

    def test_non_numeric_norm_key(self) -> None:
        d = {**metadata().to_dict(), "activation_norms": {"nine": 1.0}}
        with pytest.raises(ValueError, match=r"activation_norms key='nine'.*int >= 0"):
            ActivationMetadata.from_dict(d)


class TestVectorSpec:
    def test_defaults(self) -> None:
        spec = VectorSpec(9)
        assert (spec.component, spec.position, spec.method, spec.weight) == (
            "residual",
            "response[:]",
            "probe",
            1.0,
        )

    def test_numpy_numbers_are_normalised(self) -> None:
        spec = VectorSpec(np.int64(9), weight=np.float32(0.5))  # type: ignore[arg-type]
        assert type(spec.layer) is int and type(spec.weight) is float

    @pytest.mark.parametrize("layer", [-1, True, 9.0, "9", None])
    def test_bad_layer(self, layer: Any) -> None:
        with pytest.raises(ValueError, match=r"VectorSpec\.layer=.*expected an int >= 0"):
            VectorSpec(layer)

    def test_bad_component_lists_the_choices(self) -> None:
        with pytest.raises(ValueError) as info:
            VectorSpec(9, component="resid")
        msg = str(info.value)
        assert "component='resid'" in msg and all(c in msg for c in COMPONENTS)

    @pytest.mark.parametrize("field", ["position", "method"])
    @pytest.mark.parametrize("value", ["", "  ", None])
    def test_empty_strings(self, field: str, value: Any) -> None:
        with pytest.raises(ValueError, match=rf"{field}=.*non-empty string"):
            VectorSpec(9, **{field: value})

    @pytest.mark.parametrize("weight", [math.nan, math.inf, -math.inf, "1", True])
    def test_bad_weight(self, weight: Any) -> None:
        with pytest.raises(ValueError, match=r"weight=.*finite number.*NaN and infinity"):
            VectorSpec(9, weight=weight)

    def test_negative_weight_allowed_for_steering(self) -> None:
        assert VectorSpec(9, weight=-2.0).weight == -2.0


class TestProjectionConfig:
    def test_normalized_weights_example(self) -> None:
        config = ProjectionConfig(
            vectors=[
                VectorSpec(9, "attn_contribution", "response[:]", "probe", 0.5),
                VectorSpec(12, "residual", "response[:]", "probe", 0.3),
                VectorSpec(15, "residual", "response[:]", "probe", 0.2),
            ]
        )
        assert config.normalized_weights == pytest.approx([0.5, 0.3, 0.2])
        assert config.is_ensemble
        assert isinstance(config.vectors, tuple)

    def test_normalized_weights_rescale(self) -> None:
        config = ProjectionConfig([VectorSpec(1, weight=2.0), VectorSpec(2, weight=6.0)])
        assert config.normalized_weights == [0.25, 0.75]
        assert math.isclose(sum(config.normalized_weights), 1.0)

    def test_single(self) -> None:
        config = ProjectionConfig.single(9, "residual", "response[:]", "probe", weight=0.9)
        assert config.vectors == (VectorSpec(9, "residual", "response[:]", "probe", 0.9),)
        assert not config.is_ensemble
        assert config.normalized_weights == [1.0]

    def test_negative_weight_explains(self) -> None:
        config = ProjectionConfig([VectorSpec(1, weight=1.0), VectorSpec(2, weight=-0.5)])
        with pytest.raises(ValueError, match=r"vectors\[1\]\.weight=-0\.5 is negative.*negate"):
            _ = config.normalized_weights

    def test_zero_sum_explains(self) -> None:
        config = ProjectionConfig([VectorSpec(1, weight=0.0), VectorSpec(2, weight=0.0)])
        with pytest.raises(ValueError, match=r"sum to 0.*positive weight"):
            _ = config.normalized_weights

    def test_empty(self) -> None:
        with pytest.raises(ValueError, match=r"vectors=\[\].*non-empty list"):
            ProjectionConfig([])

    def test_bare_spec_instead_of_list(self) -> None:
        with pytest.raises(ValueError, match=r"a list of VectorSpec.*ProjectionConfig\.single"):
            ProjectionConfig(VectorSpec(9))  # type: ignore[arg-type]

    def test_element_not_a_spec(self) -> None:
        with pytest.raises(ValueError, match=r"vectors\[1\]=\{'layer': 2\}.*a VectorSpec"):
            ProjectionConfig([VectorSpec(1), {"layer": 2}])  # type: ignore[list-item]


class TestVectorResult:
    def test_to_vector_spec(self) -> None:
        spec = steering_result().to_vector_spec(weight=1.5)
        assert spec == VectorSpec(9, "residual", "response[:]", "probe", 1.5)

    def test_to_vector_spec_carries_the_recommended_coefficient(self) -> None:
        assert steering_result().to_vector_spec().weight == -30.0
        extraction = steering_result(
            source="extraction", delta=None, coherence=None, coefficient=None
        )
        assert extraction.to_vector_spec().weight == 1.0

    def test_path_like_is_stored_as_str(self) -> None:
        assert steering_result(path=Path("a/b.pt")).path == str(Path("a/b.pt"))

    def test_steering_needs_delta_and_coherence(self) -> None:
        with pytest.raises(ValueError, match=r"source='steering'\) got \{'delta': None.*need"):
            steering_result(delta=None)
        with pytest.raises(ValueError, match=r"'coefficient': None.*delta, coherence and coef"):
            steering_result(coefficient=None)

    def test_extraction_rejects_steering_scores(self) -> None:
        with pytest.raises(ValueError, match=r"source='extraction'.*'coherence': 80\.0"):
            steering_result(source="extraction", delta=None, coherence=80.0)

    def test_bad_source(self) -> None:
        with pytest.raises(ValueError, match=r"source='steer'.*\['extraction', 'steering'\]"):
            steering_result(source="steer")

    @pytest.mark.parametrize("accuracy", [1.5, -0.1, math.nan])
    def test_accuracy_range(self, accuracy: float) -> None:
        with pytest.raises(ValueError, match=r"accuracy=.*in \[0\.0, 1\.0\]"):
            steering_result(accuracy=accuracy)

    def test_polarity_must_be_bool(self) -> None:
        with pytest.raises(ValueError, match=r"polarity_correct=1.*True, False or None.*bool"):
            steering_result(polarity_correct=1)

    @pytest.mark.parametrize("field", ["effect_size", "delta", "coherence"])
    def test_scores_must_be_finite(self, field: str) -> None:
        with pytest.raises(ValueError, match=rf"{field}=inf.*finite"):
            steering_result(**{field: math.inf})

    def test_empty_path(self) -> None:
        with pytest.raises(ValueError, match=r"path=''.*non-empty string or None"):
            steering_result(path="")

    def test_location_fields_checked(self) -> None:
        with pytest.raises(ValueError, match=r"VectorResult\.component='mlp'"):
            steering_result(component="mlp")


class TestJudgeResult:
    def test_optional_stds(self) -> None:
        assert JudgeResult(50.0, 90.0, 1).trait_std is None

    @pytest.mark.parametrize("n", [0, -3, True, 2.0])
    def test_bad_n(self, n: Any) -> None:
        with pytest.raises(ValueError, match=r"JudgeResult\.n=.*int >= 1"):
            JudgeResult(50.0, 90.0, n)

    def test_bad_mean(self) -> None:
        with pytest.raises(ValueError, match=r"trait_mean=nan.*finite"):
            JudgeResult(math.nan, 90.0, 3)

    def test_negative_std(self) -> None:
        with pytest.raises(ValueError, match=r"coherence_std=-1\.0.*>= 0\.0"):
            JudgeResult(50.0, 90.0, 3, coherence_std=-1.0)


class TestModelVariant:
    def test_default_model(self) -> None:
        assert ModelVariant("base") == ModelVariant("base", None, None)

    @pytest.mark.parametrize(
        ("name", "hint"),
        [("my model", "my-model"), ("a/b", "a-b"), ("..", "variant"), ("", "variant")],
    )
    def test_unsafe_name_suggests_one(self, name: str, hint: str) -> None:
        with pytest.raises(ValueError) as info:
            ModelVariant(name)
        msg = str(info.value)
        assert f"name={name!r}" in msg and "letters, digits" in msg and f"try {hint!r}" in msg

    def test_name_not_str(self) -> None:
        with pytest.raises(ValueError, match="name=3"):
            ModelVariant(3)  # type: ignore[arg-type]

    @pytest.mark.parametrize("field", ["model", "lora"])
    def test_empty_model_or_lora(self, field: str) -> None:
        with pytest.raises(ValueError, match=rf"{field}=''.*non-empty string or None"):
            ModelVariant("x", **{field: ""})


class TestActivationMetadata:
    def test_lists_become_tuples(self) -> None:
        meta = metadata(captured_layers=[9, 12], components=["residual"])
        assert meta.captured_layers == (9, 12) and meta.components == ("residual",)

    @pytest.mark.parametrize(
        ("overrides", "pattern"),
        [
            ({"model": ""}, r"model=''.*non-empty string"),
            ({"n_layers": 0}, r"n_layers=0.*int >= 1"),
            ({"hidden_dim": 1.5}, r"hidden_dim=1\.5.*int >= 1"),
            ({"n_samples": 0}, r"n_samples=0.*int >= 1"),
            ({"position": ""}, r"position=''"),
            ({"dtype": "fp16"}, r"dtype='fp16'.*'float16'"),
            ({"captured_layers": ()}, r"captured_layers=\(\).*non-empty list"),
            ({"captured_layers": "9"}, r"captured_layers='9'.*non-empty list"),
            ({"captured_layers": (9, 30)}, r"captured_layers\[1\]=30.*< n_layers=30"),
            ({"captured_layers": (9, -1)}, r"captured_layers\[1\]=-1.*int >= 0"),
            ({"captured_layers": (9, 9)}, r"captured_layers=\[9, 9\].*no repeated"),
            ({"components": ("residual", "resid")}, r"components\[1\]='resid'.*'v_proj'"),
            ({"components": ("k_proj", "k_proj")}, r"components=.*no repeated"),
            ({"activation_norms": [1.0]}, r"activation_norms=\[1\.0\].*a dict or None"),
            ({"activation_norms": {15: 1.0}}, r"activation_norms key=15.*one of \[9, 12\]"),
            ({"activation_norms": {9: -1.0}}, r"activation_norms\[9\]=-1\.0.*>= 0\.0"),
            ({"activation_norms": {9: math.nan}}, r"activation_norms\[9\]=nan.*finite"),
        ],
    )
    def test_validation(self, overrides: dict[str, Any], pattern: str) -> None:
        with pytest.raises(ValueError, match=pattern):
            metadata(**overrides)


class TestFiles:
    @ALL
    def test_save_load_round_trip(self, record: Record, tmp_path: Path) -> None:
        path = save_json(record, tmp_path / "sub" / "record.json")
        assert load_json(type(record), path) == record

    def test_file_is_valid_versioned_json(self, tmp_path: Path) -> None:
        path = save_json(metadata(), tmp_path / "meta.json")
        payload = json.loads(path.read_text(encoding="utf-8"))
        assert payload["schema_version"] == RECORD_SCHEMA.version
        assert payload["type"] == "ActivationMetadata"
        assert payload["data"]["activation_norms"] == {"9": 3.25, "12": 4.5}
        assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]  # no temp file left

    def write(self, path: Path, payload: Any) -> Path:
        path.write_text(json.dumps(payload), encoding="utf-8")
        return path

    def test_other_schema_version(self, tmp_path: Path) -> None:
        path = self.write(
            tmp_path / "old.json", {"schema_version": 0, "type": "VectorSpec", "data": {}}
        )
        with pytest.raises(ValueError, match=r"old\.json: schema_version 0.*reads version 1"):
            load_json(VectorSpec, path)

    def test_other_record_type(self, tmp_path: Path) -> None:
        path = save_json(VectorSpec(9), tmp_path / "spec.json")
        with pytest.raises(ValueError, match=r"spec\.json: holds a 'VectorSpec'.*load_json\("):
            load_json(JudgeResult, path)

    def test_invalid_data_names_file(self, tmp_path: Path) -> None:
        payload = {"schema_version": 1, "type": "VectorSpec", "data": {"layer": -1}}
        path = self.write(tmp_path / "bad.json", payload)
        with pytest.raises(ValueError, match=r"bad\.json: invalid VectorSpec: .*layer=-1"):
            load_json(VectorSpec, path)

    def test_unknown_key_in_file_names_file(self, tmp_path: Path) -> None:
        payload = {"schema_version": 1, "type": "VectorSpec", "data": {"layer": 1, "x": 2}}
        path = self.write(tmp_path / "extra.json", payload)
        with pytest.raises(ValueError, match=r"extra\.json: .*unknown key\(s\) \['x'\]"):
            load_json(VectorSpec, path)

    def test_not_json(self, tmp_path: Path) -> None:
        path = tmp_path / "cut.json"
        path.write_text('{"schema_version": 1, "ty', encoding="utf-8")
        with pytest.raises(ValueError, match=r"cut\.json: not valid JSON"):
            load_json(VectorSpec, path)

    def test_not_an_envelope(self, tmp_path: Path) -> None:
        path = self.write(tmp_path / "raw.json", VectorSpec(9).to_dict())
        with pytest.raises(ValueError, match=r"raw\.json: no 'schema_version' key.*save_json\("):
            load_json(VectorSpec, path)
        path = self.write(tmp_path / "bare.json", {"schema_version": 1, "data": {"layer": 9}})
        with pytest.raises(ValueError, match=r"bare\.json: not a trait_lab record file"):
            load_json(VectorSpec, path)

    def test_save_rejects_non_records(self, tmp_path: Path) -> None:
        with pytest.raises(TypeError, match="got dict"):
            save_json({"layer": 9}, tmp_path / "x.json")  # type: ignore[arg-type]

    @pytest.mark.parametrize("fail_in", ["dumps", "fsync", "replace"])
    def test_failed_save_keeps_old_file(
        self, fail_in: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        path = save_json(VectorSpec(1), tmp_path / "spec.json")
        before = path.read_bytes()

        def boom(*args: Any, **kwargs: Any) -> Any:
            raise OSError(f"simulated failure in {fail_in}")

        target = tt.json if fail_in == "dumps" else tt.os
        monkeypatch.setattr(target, fail_in, boom)
        with pytest.raises(OSError, match="simulated"):
            save_json(VectorSpec(2), path)
        monkeypatch.undo()
        assert path.read_bytes() == before
        assert load_json(VectorSpec, path) == VectorSpec(1)
        assert [p.name for p in tmp_path.iterdir()] == ["spec.json"]  # temp file removed
