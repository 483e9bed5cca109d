"""One schema mechanism for every on-disk format (trait_lab.core.schema and its four users).

Each format is written by its real writer and read by its real reader: the file must carry the
declared kind and version, files in today's layout (written out literally below) must load, and
a wrong kind, a newer version, a missing version or a non-int version must each raise the
format's own error naming the file, what was found, the version this trait_lab reads and a fix.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from trait_lab.core.schema import Schema, SchemaError
from trait_lab.core.types import RECORD_SCHEMA, VectorSpec, load_json, save_json
from trait_lab.dynamics.massive import (
    CALIBRATION_SCHEMA,
    CalibrationError,
    MassiveDimCollector,
    load_calibration,
)
from trait_lab.dynamics.records import PROJECTION_SCHEMA, ProjectionRecord, RecordError, load_record
from trait_lab.io.activations import save_activations
from trait_lab.io.shards import SHARD_MANIFEST, SHARD_SCHEMA, ActivationReader, ActivationWriter
from trait_lab.testing import tiny_batch, tiny_model

# --- files in today's layout, written out literally ------------------------------------------

TODAY_RECORD = {
    "schema_version": 1,
    "type": "VectorSpec",
    "data": {
        "layer": 9,
        "component": "residual",
        "position": "response[:]",
        "method": "probe",
        "weight": 1.0,
    },
}
TODAY_PROJECTION = {
    "prompt": "hi",
    "response": "yo",
    "prompt_tokens": ["hi"],
    "response_tokens": ["yo"],
    "prompt_ids": [5],
    "response_ids": [6],
    "boundary": 1,
    "projections": {"t": {"0": [0.5, -0.25]}},
    "vector_dims": {"t": {"0": [[0.6]]}},
    "weights": {"t": {"0": [1.0]}},
    "norms": {"0": [2.0, 3.0]},
    "dim_values": {"0": [[1.5], [-0.5]]},
    "candidate_dims": [1],
    "calibration": {"fingerprint": "0123456789abcdef", "candidates": [1], "top_dims": [[1]]},
    "schema_version": 1,
}
TODAY_CALIBRATION = {
    "schema": "trait_lab.massive_calibration",
    "schema_version": 1,
    "model": "tiny",
    "hidden_size": 4,
    "n_layers": 1,
    "tokens_seen": 3,
    "candidate_ratio": 100.0,
    "layers": [
        {
            "layer": 0,
            "top_dims": [1, 0],
            "top_max_abs": [9.0, 1.0],
            "top_mean_abs": [3.0, 0.5],
            "top_ratio": [18.0, 2.0],
            "median_mean_abs": 0.5,
            "mean_norm": 3.5,
        }
    ],
    "candidates": [],
}
TODAY_SHARDS = {
    "format": "trait_lab.activations",
    "version": 1,
    "meta": {"layers": ["h"]},
    "layers": {"h": "tensor"},
    "num_samples": 2,
    "shards": [
        {"file": "shard-00000.safetensors", "start": 0, "num_samples": 2, "inputs_sha256": None}
    ],
}


def write_json(path: Path, payload: Any) -> Path:
    path.write_text(json.dumps(payload), encoding="utf-8")
    return path


# --- each format: its schema, its real writer, its real reader -------------------------------


@dataclass(frozen=True)
class Format:
    schema: Schema
    today: dict[str, Any]
    write: Callable[[Path], Path]  # real writer into a folder; returns the JSON file it wrote
    place: Callable[[Path, dict[str, Any]], Path]  # a payload put where the reader looks
    read: Callable[[Path], Any]  # real reader of what ``place`` returned


def _write_record(folder: Path) -> Path:
    return save_json(VectorSpec(9), folder / "spec.json")


def _write_projection(folder: Path) -> Path:
    return ProjectionRecord(**TODAY_PROJECTION).save(folder / "0.json")


def _write_calibration(folder: Path) -> Path:
    model = tiny_model()
    with torch.no_grad(), MassiveDimCollector(model, folder / "calibration.json", max_tokens=5):
        model(**tiny_batch(1, 5))
    return folder / "calibration.json"


def _write_shards(folder: Path) -> Path:
    with ActivationWriter(folder / "run", meta={"layers": ["h"]}) as writer:
        writer.append({"h": torch.zeros(2, 3)})
    return folder / "run" / SHARD_MANIFEST


def _place_shards(folder: Path, payload: dict[str, Any]) -> Path:
    run = folder / "placed"
    run.mkdir(exist_ok=True)
    save_activations({"h": torch.zeros(2, 3)}, run / "shard-00000.safetensors")
    write_json(run / SHARD_MANIFEST, payload)
    return run


def _place_file(folder: Path, payload: dict[str, Any]) -> Path:
    return write_json(folder / "placed.json", payload)


FORMATS = {
    "typed record": Format(
        RECORD_SCHEMA,
        TODAY_RECORD,
        _write_record,
        _place_file,
        lambda path: load_json(VectorSpec, path),
    ),
    "projection record": Format(
        PROJECTION_SCHEMA, TODAY_PROJECTION, _write_projection, _place_file, load_record
    ),
    "calibration": Format(
        CALIBRATION_SCHEMA, TODAY_CALIBRATION, _write_calibration, _place_file, load_calibration
    ),
    "shard manifest": Format(
        SHARD_SCHEMA, TODAY_SHARDS, _write_shards, _place_shards, ActivationReader
    ),
}
EACH = pytest.mark.parametrize("fmt", list(FORMATS.values()), ids=list(FORMATS))
WITH_KIND = [name for name, fmt in FORMATS.items() if fmt.schema.kind_key is not None]


class TestEachFormat:
    @EACH
    def test_writer_stamps_kind_and_version(self, fmt: Format, tmp_path: Path) -> None:
        payload = json.loads(fmt.write(tmp_path).read_text(encoding="utf-8"))
        assert payload[fmt.schema.version_key] == fmt.schema.version == 1
        if fmt.schema.kind_key is not None:
            assert payload[fmt.schema.kind_key] == fmt.schema.kind

    @EACH
    def test_file_in_todays_layout_loads(self, fmt: Format, tmp_path: Path) -> None:
        assert fmt.read(fmt.place(tmp_path, fmt.today)) is not None

    @EACH
    def test_writer_keeps_todays_keys(self, fmt: Format, tmp_path: Path) -> None:
        payload = json.loads(fmt.write(tmp_path).read_text(encoding="utf-8"))
        assert sorted(payload) == sorted(fmt.today)

    @pytest.mark.parametrize(
        ("change", "found", "fix"),
        [
            ({"@v": 2}, "@v 2", "A newer trait_lab wrote it"),
            ({"@v": 0}, "@v 0", "read it with the trait_lab version that wrote it"),
            ({"@v": None}, "no '@v' key", "Re-create it with this trait_lab"),
            ({"@v": "1"}, "@v '1' (a str, not an int)", "Re-create it with this trait_lab"),
            ({"@v": True}, "@v True (a bool, not an int)", "Re-create it with this trait_lab"),
        ],
        ids=["newer", "older", "missing", "str", "bool"],
    )
    @EACH
    def test_bad_version_raises_the_clear_error(
        self, fmt: Format, change: dict[str, Any], found: str, fix: str, tmp_path: Path
    ) -> None:
        key = fmt.schema.version_key
        payload = {k: v for k, v in fmt.today.items() if k != key}
        if change["@v"] is not None:
            payload[key] = change["@v"]
        with pytest.raises(fmt.schema.error) as err:
            fmt.read(fmt.place(tmp_path, payload))
        message = str(err.value)
        assert "placed" in message  # names the file
        assert found.replace("@v", key) in message
        assert f"this trait_lab reads version 1 of {fmt.schema.kind!r} files" in message
        assert fix in message

    @pytest.mark.parametrize("name", WITH_KIND)
    def test_wrong_kind_raises_the_clear_error(self, name: str, tmp_path: Path) -> None:
        fmt = FORMATS[name]
        kind_key = fmt.schema.kind_key
        assert kind_key is not None
        payload = fmt.today | {kind_key: "trait_lab.something_else"}
        with pytest.raises(fmt.schema.error) as err:
            fmt.read(fmt.place(tmp_path, payload))
        message = str(err.value)
        assert "placed" in message
        assert f"{kind_key} 'trait_lab.something_else'" in message
        assert f"Pass a {fmt.schema.kind!r} file" in message

    def test_errors_stay_each_modules_own(self) -> None:
        assert PROJECTION_SCHEMA.error is RecordError
        assert CALIBRATION_SCHEMA.error is CalibrationError
        assert RECORD_SCHEMA.error is SHARD_SCHEMA.error is SchemaError

    def test_projection_record_refuses_another_version_when_built(self) -> None:
        with pytest.raises(RecordError, match="ProjectionRecord: schema_version 2"):
            ProjectionRecord(**(TODAY_PROJECTION | {"schema_version": 2}))

    def test_resuming_a_shard_folder_checks_its_manifest(self, tmp_path: Path) -> None:
        run = _place_shards(tmp_path, TODAY_SHARDS | {"version": 2})
        with pytest.raises(SchemaError, match=r"manifest\.json: format .*, version 2"):
            ActivationWriter(run, meta={"layers": ["h"]})
        run = _place_shards(tmp_path, TODAY_SHARDS)
        assert ActivationWriter(run, meta={"layers": ["h"]}).num_samples == 2


# --- the mechanism itself --------------------------------------------------------------------

DEMO = Schema("demo.thing", 3, kind_key="format", version_key="version", remake="make_thing()")


class TestSchema:
    def test_stamp_puts_kind_and_version_first(self) -> None:
        assert list(DEMO.stamp({"a": 1})) == ["format", "version", "a"]
        assert DEMO.stamp({"a": 1}) == {"format": "demo.thing", "version": 3, "a": 1}
        assert Schema("x", 2, kind_key=None).stamp({}) == {"schema_version": 2}

    def test_stamp_refuses_a_payload_naming_another_version(self) -> None:
        assert DEMO.stamp({"version": 3})["version"] == 3
        with pytest.raises(ValueError, match=r"holds \{'version': 2\}"):
            DEMO.stamp({"version": 2})

    def test_check_returns_a_matching_payload(self) -> None:
        payload = DEMO.stamp({"a": 1})
        assert DEMO.check(payload, "t.json") is payload
        assert DEMO.problem(payload, "t.json") is None

    @pytest.mark.parametrize(
        ("payload", "expected"),
        [
            (
                {"format": "demo.other", "version": 3},
                "t.json: format 'demo.other', version 3, but this trait_lab reads version 3 of "
                "'demo.thing' files. Pass a 'demo.thing' file, or re-create this one with this "
                "trait_lab (make_thing()).",
            ),
            (
                {"version": 3},
                "t.json: no 'format' key, version 3, but this trait_lab reads version 3 of "
                "'demo.thing' files. Pass a 'demo.thing' file, or re-create this one with this "
                "trait_lab (make_thing()).",
            ),
            (
                {"format": "demo.thing", "version": 4},
                "t.json: format 'demo.thing', version 4, but this trait_lab reads version 3 of "
                "'demo.thing' files. A newer trait_lab wrote it: read it with that version, or "
                "re-create it with this one (make_thing()).",
            ),
            (
                {"format": "demo.thing", "version": 2},
                "t.json: format 'demo.thing', version 2, but this trait_lab reads version 3 of "
                "'demo.thing' files. Re-create it with this trait_lab (make_thing()), or read it "
                "with the trait_lab version that wrote it.",
            ),
            (
                {"format": "demo.thing"},
                "t.json: format 'demo.thing', no 'version' key, but this trait_lab reads version 3 "
                "of 'demo.thing' files. Re-create it with this trait_lab (make_thing()), or read "
                "it with the trait_lab version that wrote it.",
            ),
            (
                {"format": "demo.thing", "version": 3.0},
                "t.json: format 'demo.thing', version 3.0 (a float, not an int), but this "
                "trait_lab reads version 3 of 'demo.thing' files. Re-create it with this "
                "trait_lab (make_thing()), or read it with the trait_lab version that wrote it.",
            ),
            (
                [1, 2],
                "t.json: holds a list, not a JSON object, but this trait_lab reads version 3 of "
                "'demo.thing' files. Re-create it (make_thing()).",
            ),
        ],
        ids=["wrong-kind", "no-kind", "newer", "older", "no-version", "float", "not-an-object"],
    )
    def test_problem_names_file_found_expected_and_fix(self, payload: Any, expected: str) -> None:
        assert DEMO.problem(payload, Path("t.json")) == expected
        with pytest.raises(SchemaError) as err:
            DEMO.check(payload, "t.json")
        assert str(err.value) == expected

    def test_check_raises_the_declared_error(self) -> None:
        class ThingError(ValueError):
            pass

        schema = Schema("demo.thing", 1, error=ThingError)
        with pytest.raises(ThingError, match="no 'schema' key"):
            schema.check({}, "t.json")

    @pytest.mark.parametrize(
        ("kwargs", "pattern"),
        [
            ({"kind": "", "version": 1}, "kind must be a non-empty string"),
            ({"kind": "x", "version": 0}, "version must be an int >= 1"),
            ({"kind": "x", "version": 1.0}, "version must be an int >= 1"),
            ({"kind": "x", "version": 1, "kind_key": "v", "version_key": "v"}, "same key"),
        ],
    )
    def test_declaration_is_checked(self, kwargs: dict[str, Any], pattern: str) -> None:
        with pytest.raises(ValueError, match=pattern):
            Schema(**kwargs)
