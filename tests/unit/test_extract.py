"""extract_representations and save_activations as KempnerForge's "extract activations" page uses
them: dataset in, ``(N, seq, dim)`` CPU tensors out, ``.npz`` any numpy tool reads.

Ground truth is independent of the hooks: HF's ``output_hidden_states`` (``hidden_states[i + 1]``
is decoder layer ``i``'s output for all but the last layer; the last entry is the final norm's
output), each sample run alone, and a by-hand recompute of a KempnerForge-style module.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import Dataset, Subset

from tests.helpers import make_tokenizer
from trait_lab.activations import Representations, extract_representations
from trait_lab.core.paths import activations_path, extraction_dir, metadata_path
from trait_lab.core.types import ActivationMetadata, ModelVariant, save_json
from trait_lab.extraction.pipeline import ExtractionSettings, extract_trait
from trait_lab.io import load_activation_metadata, load_activations, save_activations
from trait_lab.testing import tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")

ATOL = 1e-5
NAMES = ["model.layers.0", "model.layers.1", "model.norm"]


class Tokens(Dataset):
    """A map-style dataset of ``{"input_ids": tensor}``, as KempnerForge's datasets yield."""

    def __init__(self, n: int, seq: int | list[int], seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        lengths = seq if isinstance(seq, list) else [seq] * n
        self.items = [torch.randint(3, 128, (k,), generator=gen) for k in lengths]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.items[i]}


def hidden_states(model: nn.Module, ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        return model(input_ids=ids, output_hidden_states=True).hidden_states


def rows_seen(model: nn.Module) -> tuple[list[tuple[int, bool]], Any]:
    """A pre-hook logging (batch rows, training flag) of every forward call of ``model``."""
    seen: list[tuple[int, bool]] = []

    def log(module: nn.Module, args: tuple, kwargs: dict) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        seen.append((len(ids), module.training))

    return seen, model.register_forward_pre_hook(log, with_kwargs=True)


def no_hooks_but(model: nn.Module, before: dict[str, int]) -> bool:
    return {n: len(m._forward_hooks) for n, m in model.named_modules()} == before


def hook_counts(model: nn.Module) -> dict[str, int]:
    with torch.no_grad():  # transformers installs its own hooks on the first forward
        model(input_ids=torch.tensor([[5, 6]]), output_hidden_states=True)
    return {n: len(m._forward_hooks) for n, m in model.named_modules()}


class Block(nn.Module):
    """KempnerForge's block layout (attention_norm, attention, mlp_norm, mlp), per token."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.attention_norm, self.attention = nn.LayerNorm(dim), nn.Linear(dim, dim)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.drop = nn.Dropout(0.5)  # makes a forward in train mode visibly different

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attention(self.attention_norm(x)))
        return x + self.mlp(self.mlp_norm(x))


class Forge(nn.Module):
    """KempnerForge's ``Transformer`` in miniature: ``forward(tokens)``, layers in a ModuleDict."""

    def __init__(self, vocab: int = 128, dim: int = 16, n_layers: int = 2) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.token_embedding = nn.Embedding(vocab, dim)
        self.layers = nn.ModuleDict({str(i): Block(dim) for i in range(n_layers)})
        self.norm, self.output_head = nn.LayerNorm(dim), nn.Linear(dim, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.token_embedding(tokens)
        for layer in self.layers.values():
            h = layer(h)
        return self.output_head(self.norm(h))


class TestQuickPath:
    def test_equal_lengths_stack_and_match_hidden_states(self) -> None:
        model, data = tiny_model("llama"), Tokens(7, 6)
        acts = extract_representations(model, data, NAMES, "cpu", batch_size=3, max_samples=7)
        assert isinstance(acts, Representations) and list(acts) == NAMES
        hs = hidden_states(model, torch.stack(data.items))
        for name, ref in zip(NAMES, (hs[1], hs[2], hs[-1]), strict=True):
            got = acts[name]
            assert got.shape == (7, 6, 32) and got.device.type == "cpu"
            torch.testing.assert_close(got, ref, rtol=0, atol=ATOL)
        assert acts.lengths == [6] * 7 and bool(acts.mask.all())

    def test_page_quick_path_to_npz(self, tmp_path: Path) -> None:
        model = tiny_model("llama", dtype=torch.bfloat16)
        subset = Subset(Tokens(10, 5), list(range(8)))
        acts = extract_representations(
            model=model,
            dataset=subset,
            layers=["model.layers.0.mlp", "model.layers.2.mlp"],
            device=torch.device("cpu"),
            batch_size=3,
            max_samples=6,
        )
        assert acts["model.layers.2.mlp"].shape == (6, 5, 32)
        assert acts["model.layers.2.mlp"].dtype == torch.bfloat16
        path = tmp_path / "acts" / "mlp.npz"
        save_activations({k: v.float() for k, v in acts.items()}, path)
        with np.load(path) as loaded:
            assert sorted(loaded.keys()) == sorted(acts)
            x = loaded["model.layers.2.mlp"]
            assert x.shape == (6, 5, 32) and x.dtype == np.float32
            np.testing.assert_array_equal(x, acts["model.layers.2.mlp"].float().numpy())

    def test_max_samples_and_train_flag(self) -> None:
        model, data = tiny_model("llama"), Tokens(10, 4)
        model.train()
        model.model.layers[1].eval()  # a mixed state must come back exactly
        before = {n: m.training for n, m in model.named_modules()}
        seen, handle = rows_seen(model)
        try:
            acts = extract_representations(model, data, ["model.norm"], batch_size=3, max_samples=4)
        finally:
            handle.remove()
        assert acts["model.norm"].shape == (4, 4, 32)
        assert seen == [(3, False), (1, False)]  # 4 samples, run in eval mode
        assert {n: m.training for n, m in model.named_modules()} == before
        model.eval()
        hs = hidden_states(model, torch.stack(data.items[:4]))
        torch.testing.assert_close(acts["model.norm"], hs[-1], rtol=0, atol=ATOL)


class TestVariableLengths:
    def test_default_refuses_before_running(self) -> None:
        model = tiny_model("llama")
        seen, handle = rows_seen(model)
        try:
            with pytest.raises(ValueError, match=r"different lengths.*pad=True.*as_list=True"):
                extract_representations(model, Tokens(3, [4, 6, 4]), ["model.norm"])
        finally:
            handle.remove()
        assert seen == []

    def test_pad_gives_padded_tensors_and_mask(self) -> None:
        model, data = tiny_model("qwen2"), Tokens(4, [5, 2, 7, 3])
        acts = extract_representations(model, data, ["model.layers.1"], batch_size=3, pad=True)
        got = acts["model.layers.1"]
        assert got.shape == (4, 7, 32) and acts.lengths == [5, 2, 7, 3]
        expected = torch.tensor([[i < n for i in range(7)] for n in (5, 2, 7, 3)])
        assert torch.equal(acts.mask, expected)
        assert bool((got[~acts.mask] == 0).all())
        for i, ids in enumerate(data.items):
            ref = hidden_states(model, ids[None])[2][0]
            torch.testing.assert_close(got[i, : len(ids)], ref, rtol=0, atol=ATOL)

    def test_as_list_gives_one_tensor_per_sample(self) -> None:
        model, data = tiny_model("gpt2"), Tokens(3, [3, 1, 4])
        acts = extract_representations(model, data, "transformer.h.0", as_list=True)
        assert [tuple(t.shape) for t in acts["transformer.h.0"]] == [(3, 32), (1, 32), (4, 32)]
        ref = hidden_states(model, data.items[2][None])[1][0]
        torch.testing.assert_close(acts["transformer.h.0"][2], ref, rtol=0, atol=ATOL)

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"pad": True, "as_list": True}, "exclude each other"),
            ({"pad": True, "positions": "last"}, "positions='last'"),
            ({"as_list": True, "positions": "last"}, "positions='last'"),
            ({"pad": True, "output_dir": "x"}, "output_dir"),
            ({"batch_size": 0}, "batch_size"),
            ({"max_samples": -1}, "max_samples"),
        ],
    )
    def test_bad_options(self, kwargs: dict[str, Any], match: str) -> None:
        with pytest.raises(ValueError, match=match):
            extract_representations(tiny_model("llama"), Tokens(2, 3), ["model.norm"], **kwargs)

    def test_bad_layers(self) -> None:
        model = tiny_model("llama")
        with pytest.raises(ValueError, match="module name"):
            extract_representations(model, Tokens(2, 3), 5)  # type: ignore[call-overload]
        with pytest.raises(ValueError, match=r"model\.layer\.0"):
            extract_representations(model, Tokens(2, 3), ["model.layer.0"])
        with pytest.raises(ValueError, match="layers is empty"):
            extract_representations(model, Tokens(2, 3), [])


class TestOtherModels:
    def test_positional_forward_kempnerforge_style(self) -> None:
        model, data = Forge(), Tokens(5, 6)
        model.train()
        names = ["layers.0", "layers.1.mlp", "layers.1.attention_norm", "norm", "output_head"]
        acts = extract_representations(model, data, names, batch_size=2)
        assert model.training and all(m.training for m in model.modules())
        model.eval()
        with torch.no_grad():  # by hand, module by module
            tokens = torch.stack(data.items)
            b0 = model.layers["0"](model.token_embedding(tokens))
            blk = model.layers["1"]
            normed = blk.attention_norm(b0)
            mid = b0 + blk.attention(normed)
            b1 = mid + blk.mlp(blk.mlp_norm(mid))
            refs = [b0, blk.mlp(blk.mlp_norm(mid)), normed, model.norm(b1)]
            refs.append(model.output_head(refs[-1]))
        for name, ref in zip(names, refs, strict=True):
            assert acts[name].shape == ref.shape
            torch.testing.assert_close(acts[name], ref, rtol=0, atol=ATOL)

    def test_positional_forward_with_padding_warns(self) -> None:
        with pytest.warns(UserWarning, match="attention_mask"):
            acts = extract_representations(Forge(), Tokens(2, [3, 5]), ["norm"], pad=True)
        assert acts["norm"].shape == (2, 5, 16)

    def test_compiled_model(self) -> None:
        model = tiny_model("llama")
        before = hook_counts(model)
        start = time.perf_counter()
        compiled = torch.compile(model)
        data = Tokens(4, 5)
        names = ["model.layers.0", "_orig_mod.model.norm"]  # either spelling
        acts = extract_representations(compiled, data, names, batch_size=2)
        assert list(acts) == names
        hs = hidden_states(model, torch.stack(data.items))
        torch.testing.assert_close(acts["model.layers.0"], hs[1], rtol=0, atol=ATOL)
        torch.testing.assert_close(acts["_orig_mod.model.norm"], hs[-1], rtol=0, atol=ATOL)
        assert no_hooks_but(model, before)
        assert time.perf_counter() - start < 60
        with pytest.raises(ValueError, match="both with and without"):
            extract_representations(compiled, data, ["model.norm", "_orig_mod.model.norm"])
        with pytest.raises(ValueError, match=r"model\.nrom"):
            extract_representations(compiled, data, ["model.nrom"])


class TestNpz:
    def test_bf16_written_as_plain_float32(self, tmp_path: Path) -> None:
        x = torch.randn(4, 5).bfloat16()
        x[0, :4] = torch.tensor([float("nan"), float("inf"), -0.0, 1e-40])
        path = tmp_path / "a.npz"
        save_activations({"layers.0": x, "f16": x.half(), "ids": torch.arange(3)}, path)
        with np.load(path, allow_pickle=False) as z:
            assert sorted(z.files) == ["f16", "ids", "layers.0"]  # no extra keys
            assert z["layers.0"].dtype == np.float32 and z["f16"].dtype == np.float16
            want = x.float().numpy()
            assert np.array_equal(z["layers.0"].view(np.int32), want.view(np.int32))
            assert np.array_equal(z["ids"], np.arange(3))
        got = load_activations(path)
        assert got["layers.0"].dtype == torch.float32
        assert torch.equal(got["layers.0"].view(torch.int32), x.float().view(torch.int32))
        assert torch.equal(got["layers.0"].bfloat16().view(torch.int16), x.view(torch.int16))

    def test_lists_refused_with_the_fix(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match=r"\.safetensors.*pad=True"):
            save_activations({"h": [torch.ones(2, 3), torch.ones(1, 3)]}, tmp_path / "a.npz")
        assert not list(tmp_path.iterdir())

    def test_safetensors_keeps_bf16_bit_exact(self, tmp_path: Path) -> None:
        x = torch.randn(3, 4).bfloat16()
        x[0, :3] = torch.tensor([float("nan"), float("-inf"), -0.0])
        save_activations({"h": x, "ragged": [x[:1], x]}, tmp_path / "a.safetensors")
        got = load_activations(tmp_path / "a.safetensors")
        assert got["h"].dtype == torch.bfloat16
        assert torch.equal(got["h"].view(torch.int16), x.view(torch.int16))
        assert [t.shape[0] for t in got["ragged"]] == [1, 3]

    def test_older_npz_format_still_loads(self, tmp_path: Path) -> None:
        x = torch.randn(2, 3).bfloat16()
        path = tmp_path / "old.npz"
        np.savez(
            path,
            **{
                "h": x.view(torch.int16).numpy().view(np.uint16),
                "__trait_lab__.dtype.h": np.array("bfloat16"),
                "r": np.arange(6, dtype=np.float32).reshape(3, 2),
                "__trait_lab__.offsets.r": np.array([0, 1, 3]),
            },
        )
        got = load_activations(path)
        assert sorted(got) == ["h", "r"]
        assert got["h"].dtype == torch.bfloat16
        assert torch.equal(got["h"].view(torch.int16), x.view(torch.int16))
        assert [t.tolist() for t in got["r"]] == [[[0.0, 1.0]], [[2.0, 3.0], [4.0, 5.0]]]


def experiment(root: Path) -> None:
    (root / "demo").mkdir(parents=True)
    config = {"model_variants": {"instruct": {"model": None}}, "default_variant": "instruct"}
    (root / "demo" / "config.json").write_text(json.dumps(config))


class TestActivationMetadata:
    def test_written_by_extraction_and_loaded(self, tmp_path: Path) -> None:
        experiment(tmp_path)
        tokenizer = make_tokenizer()
        tokenizer.chat_template = (
            "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} "
            "<|end|> {% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}"
        )
        model = tiny_model()
        out = extraction_dir("demo", "refusal", "instruct", root=tmp_path)
        settings = ExtractionSettings(methods=("mean_diff",), layers=(0, 2))
        extract_trait(model, tokenizer, "refusal", out, settings)
        meta = load_activation_metadata("demo", "refusal", "instruct", root=tmp_path)
        assert isinstance(meta, ActivationMetadata)
        assert (meta.n_layers, meta.hidden_dim, meta.captured_layers) == (3, 32, (0, 2))
        stored = load_file(str(activations_path(out, "residual")))
        both = torch.cat([stored["pos"], stored["neg"]]).float()
        assert meta.activation_norms is not None
        for i, layer in enumerate((0, 2)):
            want = float(np.linalg.norm(both[:, i].numpy(), axis=-1).mean())
            assert meta.activation_norms[layer] == pytest.approx(want, rel=1e-5)
        default = load_activation_metadata("demo", "refusal", root=tmp_path)
        assert default == meta
        variant = ModelVariant("instruct")
        assert load_activation_metadata("demo", "refusal", variant, root=tmp_path) == meta

    def test_missing_names_the_path_and_the_command(self, tmp_path: Path) -> None:
        experiment(tmp_path)
        with pytest.raises(FileNotFoundError) as err:
            load_activation_metadata("demo", "optimism", root=tmp_path)
        msg = str(err.value)
        path = metadata_path(extraction_dir("demo", "optimism", "instruct", root=tmp_path))
        assert str(path) in msg and "trait-lab extract" in msg and "--trait optimism" in msg

    def test_bad_names_and_damaged_file(self, tmp_path: Path) -> None:
        experiment(tmp_path)
        with pytest.raises(ValueError, match="trait"):
            load_activation_metadata("demo", "../x", "instruct", root=tmp_path)
        with pytest.raises(ValueError, match="no model variant 'base'"):
            load_activation_metadata("demo", "optimism", "base", root=tmp_path)
        path = metadata_path(extraction_dir("demo", "optimism", "instruct", root=tmp_path))
        save_json(ModelVariant("instruct"), path)  # another record type
        with pytest.raises(ValueError, match="ActivationMetadata"):
            load_activation_metadata("demo", "optimism", "instruct", root=tmp_path)
