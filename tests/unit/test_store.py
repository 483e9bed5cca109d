"""Tests for trait_lab.activations.store and trait_lab.io.

Ground truth is independent of the hooks: HF's ``output_hidden_states`` (``hidden_states[i + 1]``
is decoder layer ``i``'s output for all but the last layer; the last entry is the final norm's
output) and running each sample alone at batch size 1. Under steering, what the next block reads
(``tests.helpers.residual_stream``): transformers 4.57 records hidden states before hooks run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from tests.helpers import residual_stream
from trait_lab.activations import ActivationStore, extract_representations
from trait_lab.hooks import AblationHook, SteeringHook
from trait_lab.io import (
    ActivationReader,
    ActivationWriter,
    load_activations,
    save_activations,
)
from trait_lab.testing import TINY_ARCHITECTURES, tiny_batch, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")

ATOL = 1e-5
FINAL_NORM = {"gpt2": "transformer.ln_f", "gpt_neox": "gpt_neox.final_layer_norm"}


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    return {arch: tiny_model(arch) for arch in TINY_ARCHITECTURES}


def decoder_layers(model: nn.Module) -> list[str]:
    n = model.config.num_hidden_layers
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return [f"{name}.{i}" for i in range(n)]
    raise AssertionError("no decoder layer list found")


def final_norm(arch: str) -> str:
    return FINAL_NORM.get(arch, "model.norm")


def samples(lengths: tuple[int, ...] = (5, 9, 1, 7, 3, 8, 2), seed: int = 0) -> list[dict]:
    gen = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(3, 128, (n,), generator=gen)} for n in lengths]


def alone(model: nn.Module, ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Hidden states of one sample run alone, batch size 1, no padding."""
    with torch.no_grad():
        out = model(input_ids=torch.as_tensor(ids)[None], output_hidden_states=True)
    return tuple(h[0] for h in out.hidden_states)


def hooks(model: nn.Module) -> dict[str, list[Any]]:
    """Every forward hook on every module.

    transformers 5 installs its own output-capturing hooks on a model's first forward and keeps
    them, so HF models are compared against a snapshot taken after a warm-up forward; plain
    modules must have none.
    """
    return {n: list(m._forward_hooks.values()) for n, m in model.named_modules()}


def warm(model: nn.Module) -> dict[str, list[Any]]:
    with torch.no_grad():
        model(**tiny_batch(1, 3), output_hidden_states=True)
    return hooks(model)


def no_hooks(model: nn.Module) -> bool:
    return all(not m._forward_hooks for m in model.modules())


class DictOut(nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"h": x * 2}


class NoneOut(nn.Module):
    def forward(self, x: torch.Tensor) -> None:
        return None


class Net(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.lin = inner, nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inner(x)
        return self.lin(x)


class TokNet(nn.Module):
    """A non-HF model whose forward takes only input_ids, with a module it never runs."""

    def __init__(self) -> None:
        super().__init__()
        self.emb, self.unused = nn.Embedding(128, 4), nn.Linear(4, 4)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.emb(input_ids)


class TestActivationStore:
    @pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
    def test_matches_hidden_states(self, models: dict[str, nn.Module], arch: str) -> None:
        model = models[arch]
        before = warm(model)
        layers = decoder_layers(model)
        names = [*layers[:-1], final_norm(arch)]
        with ActivationStore(model, names) as store, torch.no_grad():
            out = model(**tiny_batch(2, 7), output_hidden_states=True)
        for i, name in enumerate(layers[:-1]):
            torch.testing.assert_close(store.get(name), out.hidden_states[i + 1], rtol=0, atol=0)
        torch.testing.assert_close(store.get(final_norm(arch)), out.hidden_states[-1])
        assert hooks(model) == before

    def test_enable_twice_registers_once_and_exit_on_exception(self) -> None:
        model = tiny_model("llama")
        store = ActivationStore(model, ["model.layers.0"])
        store.enable()
        store.enable()
        assert len(model.model.layers[0]._forward_hooks) == 1
        store.disable()
        with pytest.raises(RuntimeError, match="boom"), ActivationStore(model, ["model.norm"]):
            raise RuntimeError("boom")
        assert no_hooks(model)

    def test_get_semantics(self) -> None:
        model = tiny_model("gpt2")
        store = ActivationStore(model, "transformer.h.0")
        assert store.layer_names == ["transformer.h.0"]
        assert store.get("transformer.h.0") is None
        with pytest.raises(KeyError, match=r"transformer\.h\.0"):
            store.get("transformer.h.1")
        with store, torch.no_grad():
            model(**tiny_batch(2, 5))
            first = store.get("transformer.h.0")
            model(**tiny_batch(3, 4, seed=1))
        assert first.shape == (2, 5, 32) and store.get("transformer.h.0").shape == (3, 4, 32)
        store.clear()
        assert store.get("transformer.h.0") is None

    def test_accumulate_and_options(self) -> None:
        model = tiny_model("llama")
        store = ActivationStore(
            model, ["model.layers.1"], accumulate=True, positions="last", dtype=torch.bfloat16
        )
        with store, torch.no_grad():
            full = model(**tiny_batch(2, 6), output_hidden_states=True).hidden_states[2]
            model(**tiny_batch(3, 4, seed=1))
        got = store.get("model.layers.1")
        assert got.shape == (5, 32) and got.dtype == torch.bfloat16
        assert [t.shape[0] for t in store.get_all("model.layers.1")] == [2, 3]
        torch.testing.assert_close(got[:2], full[:, -1].bfloat16())

    @pytest.mark.parametrize(
        ("positions", "shape"),
        [(2, (2, 32)), (slice(1, 4), (2, 3, 32)), ([0, 5], (2, 2, 32)), ("all", (2, 6, 32))],
    )
    def test_positions_selectors(self, positions: Any, shape: tuple[int, ...]) -> None:
        model = tiny_model("qwen2")
        store = ActivationStore(model, ["model.layers.0"], positions=positions)
        with store, torch.no_grad():
            model(**tiny_batch(2, 6))
        assert tuple(store.get("model.layers.0").shape) == shape

    def test_capture_owns_memory(self) -> None:
        lin = nn.Linear(4, 4)
        model = nn.Sequential(lin)
        with ActivationStore(model, ["0"], positions=slice(0, 1)) as store, torch.no_grad():
            out = model(torch.ones(2, 3, 4))
        got = store.get("0")
        assert got.untyped_storage().data_ptr() != out.untyped_storage().data_ptr()
        assert got.untyped_storage().nbytes() == got.numel() * got.element_size()

    def test_unknown_name_lists_candidates(self) -> None:
        model = tiny_model("llama")
        with pytest.raises(ValueError, match=r"model\.layer\.0") as err:
            ActivationStore(model, ["model.layers.0", "model.layer.0"])
        msg = str(err.value)
        assert "model.layers.0" in msg.split("closest first")[1] and "named_modules()" in msg
        with pytest.raises(ValueError, match=r"model\.layer\.0"):
            extract_representations(model, samples(), ["model.layer.0"])

    def test_sees_steering_entered_after_it(self) -> None:
        model, v, batch = tiny_model("llama"), torch.randn(32), tiny_batch(2, 5)
        before = warm(model)
        with ActivationStore(model, ["model.layers.1"]) as plain, torch.no_grad():
            model(**batch)
        with (
            ActivationStore(model, ["model.layers.1"]) as store,
            SteeringHook(model, v, 1, 2.0),
            residual_stream(model) as stream,
            torch.no_grad(),
        ):
            model(**batch)
            # one trait_lab dispatch hook serves both: the store is an observer, not a raw hook
            assert len(model.model.layers[1]._forward_hooks) == len(before["model.layers.1"]) + 1
        got = store.get("model.layers.1")
        torch.testing.assert_close(got, plain.get("model.layers.1") + 2.0 * v)
        torch.testing.assert_close(got, stream[2], rtol=0, atol=0)  # what block 2 read
        assert hooks(model) == before

    def test_sees_ablation_in_either_order(self) -> None:
        model, d, batch = tiny_model("qwen2"), torch.randn(32), tiny_batch(2, 5)
        unit = d / d.norm()
        for store_first in (True, False):
            store = ActivationStore(model, ["model.layers.0"])
            ablation = AblationHook(model, d, 0)
            first, second = (store, ablation) if store_first else (ablation, store)
            with first, second, torch.no_grad():
                model(**batch)
            assert (store.get("model.layers.0") @ unit).abs().max() < 1e-5

    def test_input_suffix_captures_the_block_input(self) -> None:
        model = tiny_model("llama")
        with ActivationStore(model, ["model.layers.1:input"]) as store, torch.no_grad():
            out = model(**tiny_batch(2, 5), output_hidden_states=True)
        torch.testing.assert_close(store.get("model.layers.1:input"), out.hidden_states[1])

    @pytest.mark.parametrize(("inner", "kind"), [(DictOut(), "dict"), (NoneOut(), "NoneType")])
    def test_non_tensor_output_raises(self, inner: nn.Module, kind: str) -> None:
        model = Net(inner)
        pattern = rf"'inner'.*returned {kind}.*child module"
        with ActivationStore(model, ["inner"]), pytest.raises(TypeError, match=pattern):
            model(torch.ones(1, 4))
        assert no_hooks(model)


class TestExtractRepresentations:
    @pytest.mark.parametrize("arch", TINY_ARCHITECTURES)
    def test_batched_equals_alone(self, models: dict[str, nn.Module], arch: str) -> None:
        model, data = models[arch], samples()
        layers = decoder_layers(model)
        names = [layers[0], layers[1], final_norm(arch)]
        acts = extract_representations(model, data, names, batch_size=3, as_list=True)
        last = extract_representations(model, data, names, batch_size=4, positions="last")
        for i, sample in enumerate(data):
            hs = alone(model, sample["input_ids"])
            for name, ref in zip(names, (hs[1], hs[2], hs[-1]), strict=True):
                got = acts[name][i]
                assert got.shape == (len(sample["input_ids"]), 32)  # padding removed
                torch.testing.assert_close(got, ref, rtol=0, atol=ATOL)
                torch.testing.assert_close(last[name][i], ref[-1], rtol=0, atol=ATOL)
        assert last[names[0]].shape == (len(data), 32)

    def test_sample_masks_stripped_and_list_ids(self) -> None:
        model = tiny_model("llama")
        raw = [[5, 6, 7, 8], [9, 10]]
        data = [
            {"input_ids": [0, 0, *raw[0]], "attention_mask": [0, 0, 1, 1, 1, 1]},  # left-padded
            {"input_ids": [*raw[1], 0], "attention_mask": [1, 1, 0]},  # right-padded
        ]
        acts = extract_representations(model, data, ["model.layers.0"], batch_size=2, as_list=True)
        for got, ids in zip(acts["model.layers.0"], raw, strict=True):
            torch.testing.assert_close(got, alone(model, torch.tensor(ids))[1], atol=ATOL, rtol=0)

    def test_left_padding_collate(self) -> None:
        model, data = tiny_model("llama"), samples((4, 2, 6))

        def collate(chunk: list[dict]) -> dict[str, torch.Tensor]:
            width = max(len(s["input_ids"]) for s in chunk)
            ids = torch.zeros(len(chunk), width, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, s in enumerate(chunk):
                ids[i, width - len(s["input_ids"]) :] = s["input_ids"]
                mask[i, width - len(s["input_ids"]) :] = 1
            pos = (mask.cumsum(1) - 1).clamp(min=0)
            return {"input_ids": ids, "attention_mask": mask, "position_ids": pos}

        for positions in ("all", "last"):
            acts = extract_representations(
                model,
                data,
                ["model.layers.1"],
                collate=collate,
                positions=positions,
                as_list=positions == "all",
            )
            for i, s in enumerate(data):
                ref = alone(model, s["input_ids"])[2]
                got = acts["model.layers.1"][i]
                torch.testing.assert_close(
                    got, ref if positions == "all" else ref[-1], atol=ATOL, rtol=0
                )

    def test_iterable_dataset_and_max_samples(self) -> None:
        model, data = tiny_model("gpt2"), samples()
        acts = extract_representations(
            model,
            (s for s in data),
            ["transformer.h.0"],
            max_samples=3,
            positions=None,
            as_list=True,
        )
        assert [len(t) for t in acts["transformer.h.0"]] == [5, 9, 1]
        acts = extract_representations(
            model, data, ["transformer.h.0"], max_samples=2, as_list=True
        )
        assert len(acts["transformer.h.0"]) == 2

    def test_train_flags_restored_and_hooks_removed_on_exception(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        model = tiny_model("llama")
        installed = warm(model)
        model.train()
        model.model.layers[0].eval()  # a mixed state must come back exactly
        before = {name: m.training for name, m in model.named_modules()}
        seen: list[bool] = []

        def boom(*args: Any, **kwargs: Any) -> None:
            seen.append(model.training)
            raise RuntimeError("boom in forward")

        monkeypatch.setattr(model.model.layers[1], "forward", boom)
        with pytest.raises(RuntimeError, match="boom in forward"):
            extract_representations(
                model, samples(), ["model.layers.0", "model.norm"], as_list=True
            )
        assert seen == [False]  # ran in eval mode
        assert {name: m.training for name, m in model.named_modules()} == before
        assert hooks(model) == installed

    def test_plain_module_and_module_that_does_not_run(self) -> None:
        model = TokNet()
        acts = extract_representations(model, samples((3, 3)), ["emb"], positions="last")
        torch.testing.assert_close(
            acts["emb"], model.emb(torch.stack([s["input_ids"] for s in samples((3, 3))]))[:, -1]
        )
        with pytest.warns(UserWarning, match="attention_mask"):
            extract_representations(model, samples((3, 2)), ["emb"], as_list=True)
        with pytest.raises(RuntimeError, match="'unused' did not run"):
            extract_representations(model, samples((3,)), ["unused"])
        assert no_hooks(model)

    def test_bad_samples(self) -> None:
        model = tiny_model("llama")
        with pytest.raises(TypeError, match="input_ids"):
            extract_representations(model, [[1, 2, 3]], ["model.norm"])
        with pytest.raises(ValueError, match="holes"):
            data = [{"input_ids": [4, 5, 6], "attention_mask": [1, 0, 1]}]
            extract_representations(model, data, ["model.norm"])
        with pytest.raises(ValueError, match="positions"):
            extract_representations(model, samples(), ["model.norm"], positions="first")  # type: ignore[call-overload]


class TestSaveLoad:
    def test_npz_bf16_as_float32_with_exact_values(self, tmp_path: Path) -> None:
        x = torch.randn(4, 5).bfloat16()
        x[0, :4] = torch.tensor([float("nan"), float("inf"), -0.0, 1e-40])
        path = tmp_path / "a.npz"
        save_activations({"h": x, "f16": x.half(), "f32": x.float()}, path)
        got = load_activations(path)
        assert got["h"].dtype == torch.float32  # numpy has no bf16; float32 holds it exactly
        assert torch.equal(got["h"].bfloat16().view(torch.int16), x.view(torch.int16))
        with np.load(path, allow_pickle=False) as z:  # plain numpy tools read native dtypes
            assert z["f16"].dtype == np.float16 and z["f32"].dtype == np.float32
        assert torch.equal(got["f16"].view(torch.int16), x.half().view(torch.int16))

    @pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
    def test_round_trip_lists_and_dtypes(self, tmp_path: Path, suffix: str) -> None:
        ragged = [torch.randn(n, 3).bfloat16() for n in (2, 5, 1)]
        acts = {
            "layers.0": torch.randn(2, 3, 4),
            "ids": torch.arange(6),
            "np": np.ones((2, 2), dtype=np.float16),
            "file": ragged,  # a key np.savez(**kw) would choke on
            "empty": [],
        }
        if suffix == ".npz":  # plain arrays only: lists need .safetensors
            acts = {k: v for k, v in acts.items() if not isinstance(v, list)}
            acts["file"] = torch.ones(2, 3)  # still a key np.savez(**kw) would choke on
        save_activations(acts, tmp_path / f"a{suffix}")
        got = load_activations(tmp_path / f"a{suffix}")
        assert torch.equal(got["layers.0"], acts["layers.0"]) and torch.equal(
            got["ids"], acts["ids"]
        )
        assert got["np"].dtype == torch.float16
        if suffix == ".npz":
            assert torch.equal(got["file"], torch.ones(2, 3))
            return
        assert got["empty"] == []
        assert len(got["file"]) == 3
        for a, b in zip(got["file"], ragged, strict=True):
            assert a.dtype == torch.bfloat16 and torch.equal(
                a.view(torch.int16), b.view(torch.int16)
            )

    def test_plain_npz_loads_and_pickle_npz_refused(self, tmp_path: Path) -> None:
        np.savez(tmp_path / "plain.npz", h=np.ones((2, 3), dtype=np.float32))  # KempnerForge's
        assert torch.equal(load_activations(tmp_path / "plain.npz")["h"], torch.ones(2, 3))
        path = tmp_path / "p.npz"
        np.savez(path, a=np.array([{"x": 1}], dtype=object))
        with pytest.raises(ValueError, match="pickle"):
            load_activations(path)
        with pytest.raises(TypeError, match="pickle"):
            save_activations({"a": np.array([{"x": 1}], dtype=object)}, tmp_path / "q.npz")

    def test_unsupported_suffix(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match=r"'\.pt'.*\.npz, \.safetensors"):
            save_activations({"h": torch.ones(1)}, tmp_path / "a.pt")
        with pytest.raises(ValueError, match=r"\.npz, \.safetensors"):
            load_activations(tmp_path / "a.h5")

    @pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
    def test_failed_write_keeps_old_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
    ) -> None:
        path = tmp_path / f"a{suffix}"
        save_activations({"h": torch.zeros(3)}, path)

        def half_write(*args: Any, **kwargs: Any) -> None:
            target = args[1] if suffix == ".safetensors" else args[0]
            if isinstance(target, str):
                Path(target).write_bytes(b"partial")
            else:
                target.write(b"partial")
            raise OSError("disk full")

        if suffix == ".npz":
            monkeypatch.setattr(np.lib.format, "write_array", half_write)
        else:
            monkeypatch.setattr("trait_lab.io.activations.save_file", half_write)
        with pytest.raises(OSError, match="disk full"):
            save_activations({"h": torch.ones(3)}, path)
        monkeypatch.undo()
        assert torch.equal(load_activations(path)["h"], torch.zeros(3))
        assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no tmp file left


class TestStreaming:
    def test_writer_flushes_in_shards(self, tmp_path: Path) -> None:
        batches = [torch.randn(3, 4) for _ in range(5)]
        with ActivationWriter(tmp_path, shard_size=4) as writer:
            for i, b in enumerate(batches):
                writer.append({"h": b, "tok": [torch.ones(i + 1, 2)] * 3})
                assert writer._pending < 4  # never more than one shard buffered
            assert writer.num_samples == 12 and len(writer.shards) == 2  # 3 still buffered
        reader = ActivationReader(tmp_path)
        assert len(reader) == 15 and reader.layers == ["h", "tok"]
        assert [len(s["h"]) for s in reader] == [6, 6, 3]
        got = reader.load()
        assert torch.equal(got["h"], torch.cat(batches)) and len(got["tok"]) == 15
        assert torch.equal(load_activations(tmp_path)["h"], got["h"])
        with pytest.raises(ValueError, match="same layers"):
            ActivationWriter(tmp_path).append({"other": torch.ones(1, 4)})

    def test_streamed_equals_in_memory_and_resumes(self, tmp_path: Path) -> None:
        model, data = tiny_model("qwen2"), samples()
        names = ["model.layers.0", "model.norm"]
        ref = extract_representations(model, data, names, batch_size=2, as_list=True)
        rows: list[int] = []
        handle = model.register_forward_pre_hook(
            lambda m, a, kw: rows.append(len(kw["input_ids"])), with_kwargs=True
        )
        try:
            extract_representations(
                model, data, names, batch_size=2, max_samples=4, output_dir=tmp_path, shard_size=2
            )
            assert sum(rows) == 4
            # An interrupted shard write: tmp file and an uncommitted shard file.
            (tmp_path / ".shard-00002.safetensors.dead.tmp").write_bytes(b"junk")
            (tmp_path / "shard-00002.safetensors").write_bytes(b"junk")
            rows.clear()
            reader = extract_representations(
                model, data, names, batch_size=2, output_dir=tmp_path, shard_size=2
            )
            assert sum(rows) == len(data) - 4  # the 4 done samples were skipped
        finally:
            handle.remove()
        assert not list(tmp_path.glob("*.tmp")) and len(reader) == len(data)
        got = reader.load()
        for name in names:
            for a, b in zip(got[name], ref[name], strict=True):
                torch.testing.assert_close(a, b, rtol=0, atol=ATOL)
        manifest = json.loads((tmp_path / "manifest.json").read_text())
        assert manifest["num_samples"] == len(data) and manifest["meta"]["layers"] == names

    def test_resume_after_crash(self, tmp_path: Path) -> None:
        model, data = tiny_model("llama"), samples()

        class Flaky:
            def __len__(self) -> int:
                return len(data)

            def __getitem__(self, i: int) -> dict:
                if i == 5:
                    raise KeyboardInterrupt
                return data[i]

        with pytest.raises(KeyboardInterrupt):
            extract_representations(
                model, Flaky(), ["model.norm"], batch_size=1, output_dir=tmp_path, shard_size=2
            )
        assert ActivationReader(tmp_path).manifest["num_samples"] == 5  # buffered batch kept
        got = extract_representations(
            model, data, ["model.norm"], positions="last", batch_size=3, output_dir=tmp_path / "b"
        ).load()
        reader = extract_representations(
            model, data, ["model.norm"], batch_size=1, output_dir=tmp_path, shard_size=2
        )
        last = torch.stack([t[-1] for t in reader.load()["model.norm"]])
        torch.testing.assert_close(last, got["model.norm"], rtol=0, atol=ATOL)

    def test_resume_refuses_other_settings_or_data(self, tmp_path: Path) -> None:
        model, data = tiny_model("llama"), samples()
        extract_representations(model, data[:3], ["model.norm"], output_dir=tmp_path)
        with pytest.raises(ValueError, match="different settings"):
            extract_representations(model, data, ["model.layers.0"], output_dir=tmp_path)
        with pytest.raises(ValueError, match="differ"):
            extract_representations(model, samples(seed=1), ["model.norm"], output_dir=tmp_path)
        with pytest.raises(FileNotFoundError, match="manifest"):
            ActivationReader(tmp_path / "nope")
