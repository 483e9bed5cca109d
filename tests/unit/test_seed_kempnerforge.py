"""KempnerForge's page "Extract activations for interpretability", block by block, on trait_lab.

Each test runs one code block of the page, in the page's order, as close to verbatim as it can
be: only the import lines change (``kempnerforge.model.hooks`` -> ``trait_lab``), plus these
substitutions, each said where it happens: the 3-layer KempnerForge-shaped
``tiny_kempnerforge_model()`` for the 7B Llama-3 checkpoint (layers 0 / 1 / 2 for 0 / 15 / 31),
the CPU for CUDA, ``tiny_token_dataset`` for ``MemoryMappedDataset``, ``tiny_tokenizer`` for the
checkpoint's tokenizer, a tmp folder as the working directory, and small sizes.

Ground truth never goes through trait_lab's hooks: plain ``register_forward_hook`` captures, a
recompute module by module (:func:`by_hand`), ``np.load``, ``torch.load`` and
``torch.autograd.grad``. Not testable in one CPU process, so not tested: FSDP2 / TP sharding
(the page's "FSDP2 / TP" limitation) and host-RAM exhaustion (its "Host RAM OOM" entry).
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.utils.data import Subset

from tests.helpers import hook_counts
from trait_lab import (
    ActivationStore,
    AttentionCapture,
    GradientCapture,
    extract_representations,
    load_activations,
    save_activations,
    tensor_size_gb,
)
from trait_lab.models.architectures import find_layers
from trait_lab.testing import (
    tiny_batch,
    tiny_kempnerforge_model,
    tiny_model,
    tiny_token_dataset,
    tiny_tokenizer,
)

pytestmark = pytest.mark.usefixtures("one_thread")

DIM, VOCAB, SEQ_LEN = 32, 128, 6
MLPS = ["layers.0.mlp", "layers.1.mlp", "layers.2.mlp"]  # the page: layers 0, 15, 31 of 32


@pytest.fixture
def cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The page's relative paths ("acts/...", "checkpoints/...") land in a tmp folder."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def plain_capture(
    model: nn.Module, names: list[str], tokens: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Outputs of ``names`` in one forward, through plain torch hooks (a tuple gives its [0])."""
    out: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Callable[[nn.Module, tuple, object], None]:
        def hook(module: nn.Module, args: tuple, output: object) -> None:
            out[name] = (output[0] if isinstance(output, tuple) else output).detach().clone()

        return hook

    handles = [model.get_submodule(n).register_forward_hook(keep(n)) for n in names]
    try:
        with torch.no_grad():
            model(tokens)
    finally:
        for handle in handles:
            handle.remove()
    return out


def by_hand(model: nn.Module, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every module the page lists, recomputed one submodule call at a time (eval mode)."""
    h = model.token_embedding(tokens)
    out = {"token_embedding": h}
    for key, block in model.layers.items():
        normed = block.attention_norm(h)
        attn = block.attention(normed)[0]
        mlp = block.mlp(block.mlp_norm(h + attn))
        h = h + attn + mlp
        out |= {f"layers.{key}.attention_norm": normed, f"layers.{key}.attention": attn}
        out |= {f"layers.{key}.mlp": mlp, f"layers.{key}": h}
    out["norm"] = model.norm(h)
    out["output_head"] = model.output_head(out["norm"])
    return out


def batches_of(data: object, n: int, size: int) -> list[torch.Tensor]:
    """The first ``n`` samples' ids, stacked in batches of ``size`` (as extraction runs them)."""
    ids = [data[i]["input_ids"] for i in range(n)]  # type: ignore[index]
    return [torch.stack(ids[i : i + size]) for i in range(0, n, size)]


class TestPickTheLayers:
    def test_named_modules_listing_and_what_each_name_captures(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        model = tiny_kempnerforge_model()
        for name, _ in model.named_modules():
            print(name)
        printed = capsys.readouterr().out.splitlines()
        listed = [  # the page's list; layers.5.mlp -> layers.2.mlp (3 layers here)
            "layers.0.attention",
            "layers.0.mlp",
            "layers.0.attention_norm",
            "layers.0",
            "layers.2.mlp",
            "norm",
            "output_head",
            "token_embedding",
        ]
        assert set(listed) <= set(printed)
        blocks = sorted(n for n in printed if n.count(".") == 1 and n.startswith("layers."))
        assert blocks == ["layers.0", "layers.1", "layers.2"]  # "layers.0 through layers.31"
        children = [n for n, _ in model.layers["0"].named_children()]
        assert children == ["attention_norm", "attention", "mlp_norm", "mlp"]

        tokens = tiny_batch(2, 5)["input_ids"]
        with ActivationStore(model, listed) as store:
            model(tokens)
        with torch.no_grad():
            ref = by_hand(model, tokens)
        for name in listed:
            torch.testing.assert_close(store.get(name), ref[name], rtol=0, atol=1e-5)
        assert store.get("output_head").shape == (2, 5, VOCAB)  # (batch, seq, vocab)
        assert store.get("token_embedding").shape == (2, 5, DIM)  # (batch, seq, dim)
        # "attention output (pre-residual)", "full block output (post-residual)"
        block = store.get("token_embedding") + store.get("layers.0.attention")
        block = block + store.get("layers.0.mlp")
        torch.testing.assert_close(store.get("layers.0"), block, rtol=0, atol=1e-5)


class TestQuickPath:
    def test_dataset_in_npz_out(self, cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
        device = torch.device("cpu")  # the page: "cuda"
        dtype = torch.bfloat16
        # load_config / registry.get_model(config.model.model_type) are KempnerForge's; the
        # model builder here is tiny_kempnerforge_model (seed 1: the checkpoint must change it).
        model = tiny_kempnerforge_model(seed=1).to(device=device, dtype=dtype)
        trained = tiny_kempnerforge_model(seed=2).to(dtype=dtype)
        ckpt_path = Path("checkpoints/7b/step_50000")
        with warnings.catch_warnings():  # "torch.distributed is disabled ... single process"
            warnings.simplefilter("ignore", UserWarning)
            dcp.save({"model": trained.state_dict()}, checkpoint_id=str(ckpt_path))
            state_dict = {"model": model.state_dict()}
            dcp.load(state_dict, checkpoint_id=str(ckpt_path))
        model.load_state_dict(state_dict["model"])
        assert torch.equal(model.output_head.weight, trained.output_head.weight)

        # MemoryMappedDataset(data_dir=..., file_pattern=..., seq_len=config.train.seq_len)
        dataset = tiny_token_dataset(48, SEQ_LEN)
        subset = Subset(dataset, list(range(40)))  # bound the sample count (the page: 2048)
        acts = extract_representations(
            model=model,
            dataset=subset,
            layers=MLPS,
            device=device,
            batch_size=16,
            max_samples=40,
        )
        # acts["layers.15.mlp"] has shape (2048, seq_len, dim) on CPU.
        got = acts["layers.1.mlp"]
        assert got.shape == (40, SEQ_LEN, DIM) and got.device.type == "cpu"
        assert (
            got.dtype == torch.bfloat16
        )  # "the hooks capture whatever dtype the forward produces"
        refs = [plain_capture(model, MLPS, b) for b in batches_of(subset, 40, 16)]
        for name in MLPS:
            assert torch.equal(acts[name], torch.cat([r[name] for r in refs]))
        save_activations({k: v.float() for k, v in acts.items()}, "acts/7b_step50k_mlp.npz")

        # "Load activations for analysis", verbatim
        loaded = np.load("acts/7b_step50k_mlp.npz")
        print(list(loaded.keys()))  # ['layers.0.mlp', 'layers.15.mlp', ...]
        x = loaded["layers.1.mlp"]  # ndarray, shape (N, seq_len, dim)
        assert capsys.readouterr().out == f"{MLPS}\n"
        assert isinstance(x, np.ndarray) and x.shape == (40, SEQ_LEN, DIM)
        assert x.dtype == np.float32 and np.array_equal(x, got.float().numpy())
        assert x.reshape(-1, DIM).shape == (40 * SEQ_LEN, DIM)  # "Linear probing. Flatten ..."
        loaded.close()

    def test_max_samples_caps_and_any_map_style_dataset_works(self) -> None:
        model = tiny_kempnerforge_model()
        acts = extract_representations(model, tiny_token_dataset(9, 4), ["norm"], max_samples=5)
        assert acts["norm"].shape == (5, 4, DIM)
        rows = [{"input_ids": [5, 6, 7]}, {"input_ids": [8, 9, 10]}]  # a list is map-style too
        acts = extract_representations(model, rows, ["norm"])
        torch.testing.assert_close(
            acts["norm"],
            plain_capture(model, ["norm"], torch.tensor([[5, 6, 7], [8, 9, 10]]))["norm"],
        )

    def test_eval_no_grad_and_the_training_flags_come_back(self) -> None:
        model, data = tiny_kempnerforge_model(), tiny_token_dataset(4, 5)
        model.train()
        model.layers["1"].eval()  # mixed flags must come back as they were
        flags = {n: m.training for n, m in model.named_modules()}
        before = hook_counts(model)
        seen: list[tuple[bool, bool]] = []
        handle = model.register_forward_pre_hook(
            lambda m, args: seen.append((m.training, torch.is_grad_enabled()))
        )
        try:
            acts = extract_representations(model, data, ["layers.0", "norm"], batch_size=2)
        finally:
            handle.remove()
        assert seen == [(False, False)] * 2  # two batches, in eval() under no_grad()
        assert {n: m.training for n, m in model.named_modules()} == flags
        assert hook_counts(model) == before and not acts["norm"].requires_grad
        tokens = torch.stack([data[i]["input_ids"] for i in range(4)])
        train_mode = plain_capture(model, ["layers.0"], tokens)["layers.0"]  # dropout on
        model.eval()
        ref = plain_capture(model, ["layers.0"], tokens)["layers.0"]
        torch.testing.assert_close(acts["layers.0"], ref, rtol=0, atol=1e-5)
        assert not torch.allclose(train_mode, ref)  # so the check above can fail

    def test_an_exception_mid_run_still_restores_flags_and_hooks(self) -> None:
        model = tiny_kempnerforge_model().train()
        before = hook_counts(model)
        bad = [{"input_ids": [5, 6]}, {"input_ids": [7, 8]}, "not a sample"]
        with pytest.raises(TypeError, match=r"sample 2 is a str.*'input_ids'"):
            extract_representations(model, bad, MLPS, batch_size=2)
        assert all(m.training for m in model.modules()) and hook_counts(model) == before

    def test_variable_lengths_need_pad_or_as_list(self) -> None:
        model, data = tiny_kempnerforge_model(), tiny_token_dataset(3, [4, 6, 5])
        with pytest.raises(ValueError, match=r"different lengths.*pad=True.*as_list=True"):
            extract_representations(model, data, ["norm"])
        with pytest.warns(UserWarning, match="takes no attention_mask"):  # causal: still exact
            acts = extract_representations(model, data, ["norm"], pad=True)
        assert acts["norm"].shape == (3, 6, DIM) and acts.lengths == [4, 6, 5]
        alone = plain_capture(model, ["norm"], data[0]["input_ids"][None])["norm"][0]
        torch.testing.assert_close(acts["norm"][0, :4], alone, rtol=0, atol=1e-5)
        assert not acts["norm"][0, 4:].any()


class TestFineGrained:
    LAYERS = ("layers.0.attention", "layers.1.mlp", "norm")  # the page: layers.15.mlp

    def test_the_page_block(self) -> None:
        model, tokenizer, device = tiny_kempnerforge_model(), tiny_tokenizer(), "cpu"
        before = hook_counts(model)
        store = ActivationStore(
            model,
            layers=["layers.0.attention", "layers.1.mlp", "norm"],
        )
        store.enable()
        with torch.no_grad():
            prompt_a = tokenizer.encode("The quick brown fox", return_tensors="pt").to(device)
            model(prompt_a)
            act_a = {name: store.get(name).clone() for name in store.layer_names}
            store.clear()
            prompt_b = tokenizer.encode("The lazy dog", return_tensors="pt").to(device)
            model(prompt_b)
            act_b = {name: store.get(name).clone() for name in store.layer_names}
        store.disable()

        assert store.layer_names == list(self.LAYERS) and hook_counts(model) == before
        for acts, prompt in ((act_a, prompt_a), (act_b, prompt_b)):
            ref = plain_capture(model, list(self.LAYERS), prompt)
            for name in self.LAYERS:
                assert acts[name].shape == (1, prompt.shape[1], DIM)
                assert acts[name].device.type == "cpu"
                torch.testing.assert_close(acts[name], ref[name], rtol=0, atol=1e-6)
        assert prompt_a.shape[1] == 19 and prompt_b.shape[1] == 12  # one id per character

    def test_the_four_rules(self) -> None:
        model, tokens = tiny_kempnerforge_model(), tiny_batch(1, 4)["input_ids"]
        before = hook_counts(model)
        store = ActivationStore(model, list(self.LAYERS))
        try:
            # 1. enable()/disable() register and remove the forward hooks
            store.enable()
            store.enable()  # a no-op when already enabled
            hooked = hook_counts(model)
            assert hooked != before and store.enabled
            # 2. get(name) returns the last capture; every new forward replaces it
            with torch.no_grad():
                model(tokens)
                first = store.get("norm")
                model(tokens[:, :2])
            assert store.get("norm").shape == (1, 2, DIM) and first.shape == (1, 4, DIM)
            # better than the page: a kept reference is never overwritten in place
            torch.testing.assert_close(first, plain_capture(model, ["norm"], tokens)["norm"])
            # 3. clear() empties the captures but keeps the hooks
            store.clear()
            assert all(store.get(n) is None for n in self.LAYERS)
            assert store.enabled and hook_counts(model) == hooked
            # 4. captures are on CPU and own their memory (never the model's own tensor)
            with torch.no_grad():
                logits = model(tokens)
            store_head = ActivationStore(model, "output_head")
            with store_head, torch.no_grad():
                logits = model(tokens)
            captured = store_head.get("output_head")
            assert captured.device.type == "cpu" and captured.data_ptr() != logits.data_ptr()
            captured.zero_()
            assert logits.abs().sum() > 0
            with pytest.raises(
                KeyError, match=r"'layers\.9' is not captured.*layers\.0\.attention"
            ):
                store.get("layers.9")
        finally:  # the page: "Always wrap manual use in try / finally"
            store.disable()
        assert hook_counts(model) == before


class TestTupleOutputs:
    def test_attention_returns_a_tuple_and_output_0_is_captured(self) -> None:
        model, prompt = tiny_kempnerforge_model(), tiny_batch(1, 5)["input_ids"]
        out, aux = model.layers["0"].attention(model.token_embedding(prompt))
        assert out.shape == (1, 5, DIM) and aux.ndim == 0  # (output, aux), as the page says
        store = ActivationStore(model, ["layers.0.attention", "layers.2.attention", "norm"])
        store.enable()
        model(prompt)
        assert all(store.get(n) is not None for n in store.layer_names), (
            "Some layer's forward returns a non-tensor — wrap it or target a child module."
        )
        store.disable()
        ref = plain_capture(model, ["layers.0.attention"], prompt)["layers.0.attention"]
        torch.testing.assert_close(store.get("layers.0.attention"), ref, rtol=0, atol=1e-6)

    def test_an_odder_output_raises_instead_of_capturing_nothing(self) -> None:
        class Odd(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.proj = nn.Linear(4, 4)

            def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
                return {"out": self.proj(x)}

        class Outer(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.odd = Odd()

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.odd(x)["out"]

        model = Outer()
        with (
            ActivationStore(model, ["odd"]),
            pytest.raises(TypeError, match=r"module 'odd' \(Odd\) returned dict.*odd\.proj"),
        ):
            model(torch.ones(1, 4))
        assert not model.odd._forward_hooks


class TestPerformanceAndMemory:
    def test_the_size_arithmetic(self) -> None:
        # "16 x 4096 x 4096 x 4 B = 1 GB" (2**30 bytes; tensor_size_gb counts 10**9)
        assert round(tensor_size_gb((16, 4096, 4096), torch.float32), 2) == 1.07
        # "Across 32 layers for 2 k samples, you're at 256 GB": the page's own numbers give
        # 2048 x 4096 x 4096 x 4 B x 32 layers = 4.4 TB; 256 GB is off by 16x.
        assert round(32 * tensor_size_gb((2048, 4096, 4096), torch.float32)) == 4398

    def test_final_token_slice_and_half_precision(self, cwd: Path) -> None:
        model, data = tiny_kempnerforge_model(), tiny_token_dataset(5, 4)
        acts = extract_representations(model, data, ["layers.1.mlp", "norm"])
        last = {name: acts[name][:, -1] for name in acts}  # "slice acts[name][:, -1]"
        save_activations(last, "acts/last.npz")
        with np.load("acts/last.npz") as z:
            assert z["norm"].shape == (5, DIM)
        ours = extract_representations(model, data, ["norm"], positions="last")  # the same, in-hook
        torch.testing.assert_close(ours["norm"], last["norm"], rtol=0, atol=0)
        # "Store as bf16 or float16 after capture": float16 stays float16 in the .npz
        save_activations({k: v.half() for k, v in acts.items()}, "acts/f16.npz")
        with np.load("acts/f16.npz") as z:
            assert z["norm"].dtype == np.float16


class TestDtypeCaveat:
    @pytest.fixture
    def acts(self) -> dict[str, torch.Tensor]:
        model = tiny_kempnerforge_model(dtype=torch.bfloat16)
        acts = extract_representations(model, tiny_token_dataset(4, 5), MLPS)
        assert all(v.dtype == torch.bfloat16 for v in acts.values())
        return acts

    def test_cast_first_as_the_page_says(self, cwd: Path, acts: dict[str, torch.Tensor]) -> None:
        acts_fp32 = {k: v.float() for k, v in acts.items()}
        save_activations(acts_fp32, "acts/fp32.npz")  # the page: "acts/…npz", a placeholder
        with np.load("acts/fp32.npz") as z:
            assert sorted(z.files) == MLPS
            assert np.array_equal(z["layers.2.mlp"], acts_fp32["layers.2.mlp"].numpy())

    def test_bf16_saves_without_the_cast(self, cwd: Path, acts: dict[str, torch.Tensor]) -> None:
        # The page: "save_activations calls v.numpy(), which fails on torch.bfloat16"; ours
        # writes float32 (exact for every bf16 value) and nothing else into the .npz.
        save_activations(acts, "acts/bf16.npz")
        with np.load("acts/bf16.npz", allow_pickle=False) as z:
            assert sorted(z.files) == MLPS
            for name in MLPS:
                assert z[name].dtype == np.float32
                assert np.array_equal(z[name], acts[name].float().numpy())
        save_activations(acts, "acts/bf16.safetensors")  # bf16 kept bit for bit
        kept = load_activations("acts/bf16.safetensors")
        assert all(torch.equal(kept[n], acts[n]) and kept[n].dtype == torch.bfloat16 for n in MLPS)

    def test_torch_save_keeps_the_dtype(self, cwd: Path, acts: dict[str, torch.Tensor]) -> None:
        Path("acts").mkdir()
        torch.save(acts, "acts/acts.pt")  # the page: "acts/…pt"
        loaded = torch.load("acts/acts.pt")  # weights_only=True, torch's default
        assert list(loaded) == MLPS
        assert all(
            loaded[n].dtype == torch.bfloat16 and torch.equal(loaded[n], acts[n]) for n in MLPS
        )


class TestLimitationsLifted:
    def test_attention_capture_on_this_model(self) -> None:
        # Lifted: the page's SDPA attention never builds weights; AttentionCapture computes them
        # from each attention module's F.scaled_dot_product_attention call (q, k, causal flag).
        model, tokens = tiny_kempnerforge_model(), tiny_batch(2, 5)["input_ids"]
        inputs: list[torch.Tensor] = []
        attention = model.layers["1"].attention
        handle = attention.register_forward_pre_hook(lambda m, args: inputs.append(args[0]))
        with AttentionCapture(model, layers=[1]) as att, torch.no_grad():
            model(tokens)
        handle.remove()
        x = inputs[0]
        heads, width = attention.n_heads, x.shape[-1] // attention.n_heads
        q = attention.q_proj(x).view(2, 5, heads, width).transpose(1, 2)
        k = attention.k_proj(x).view(2, 5, heads, width).transpose(1, 2)
        future = torch.ones(5, 5, dtype=torch.bool).triu(1)
        scores = (q @ k.transpose(-2, -1) / width**0.5).masked_fill(future, float("-inf"))
        expected = torch.softmax(scores, dim=-1).detach()
        assert att.get(1).shape == (2, heads, 5, 5)
        torch.testing.assert_close(att.get(1), expected, atol=1e-6, rtol=0)

    def test_gradient_capture_matches_autograd(self) -> None:
        model, tokens = tiny_kempnerforge_model(), tiny_batch(2, 5)["input_ids"]
        with GradientCapture(model, layers=[0, -1]) as grads:
            loss = model(tokens)[:, -1, 7].sum()
            loss.backward()
        model.zero_grad()
        ref = by_hand(model, tokens)
        want = torch.autograd.grad(
            ref["output_head"][:, -1, 7].sum(), [ref["layers.0"], ref["layers.2"]]
        )
        assert grads.get(0).shape == (2, 5, DIM)
        torch.testing.assert_close(grads.get(0), want[0], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(grads.get(2), want[1], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(grads.activation(2), ref["layers.2"].detach(), rtol=0, atol=1e-5)
        assert hook_counts(model) == hook_counts(tiny_kempnerforge_model())

    def test_layer_indices_find_the_moduledict_blocks(self) -> None:
        assert find_layers(tiny_kempnerforge_model(n_layers=2))[0] == "layers"
        model = nn.Module()
        model.layers = nn.ModuleDict({"a": nn.Linear(2, 2)})  # not keyed "0".."n-1": refused
        with pytest.raises(ValueError, match="cannot find the transformer blocks of Module"):
            find_layers(model)

    def test_gradient_capture_components_need_a_known_layout(self) -> None:
        # Gap: only "residual" / "block_input" resolve on this layout; the branch components
        # raise, naming the block's modules.
        with pytest.raises(
            ValueError, match=r"unknown architecture.*Modules in layers\.0: \['attention_norm'"
        ):
            GradientCapture(tiny_kempnerforge_model(), [0], component="mlp_contribution")

    def test_compiled_model(self) -> None:
        # torch.compile'd: extraction hooks and runs the original module eagerly, so nothing is
        # compiled here (compiling the tiny model costs tens of seconds on a CPU).
        model, data = tiny_kempnerforge_model(), tiny_token_dataset(4, 5)
        compiled = torch.compile(model)
        acts = extract_representations(compiled, data, ["layers.0.mlp", "_orig_mod.norm"])
        plain = extract_representations(model, data, ["layers.0.mlp", "norm"])
        assert torch.equal(acts["layers.0.mlp"], plain["layers.0.mlp"])
        assert torch.equal(acts["_orig_mod.norm"], plain["norm"])


class TestTroubleshooting:
    def test_module_not_found_lists_the_available_names(self) -> None:
        # The page's message: "Module 'layers.0.attention' not found in model." — the FQN of a
        # KempnerForge model asked of a model whose blocks live elsewhere (here: a Llama).
        with pytest.raises(ValueError, match=r"module 'layers\.0\.attention' not found") as err:
            ActivationStore(tiny_model("llama"), ["layers.0.attention"])
        assert "model.layers.0.self_attn" in str(err.value)
        with pytest.raises(ValueError) as err:  # capitalization: the closest name comes first
            ActivationStore(tiny_kempnerforge_model(), ["Layers.0.attention"])
        shown = str(err.value).split("closest first (20 of 40): ")[1].split(". List")[0]
        shown = shown.split(", ")
        assert shown[0] == "layers.0.attention" and len(shown) == 20

    def test_get_is_none_when_the_hook_never_fired(self) -> None:
        model, tokens = tiny_kempnerforge_model(), tiny_batch(1, 3)["input_ids"]
        with ActivationStore(model, ["layers.0", "layers.2.mlp"]) as store, torch.no_grad():
            model.layers["0"](model.token_embedding(tokens))  # a forward that stops early (PP)
        assert store.get("layers.0") is not None and store.get("layers.2.mlp") is None
        model.unused = nn.Linear(DIM, DIM)  # extraction names the module that never ran
        with pytest.raises(RuntimeError, match=r"module 'unused' did not run"):
            extract_representations(model, tiny_token_dataset(2, 3), ["norm", "unused"])

    def test_a_store_collected_while_enabled_removes_its_hooks(self) -> None:
        model, tokens = tiny_kempnerforge_model(), tiny_batch(1, 3)["input_ids"]
        before = hook_counts(model)
        with torch.no_grad():
            plain = model(tokens)
        store = ActivationStore(model, MLPS).enable()
        model(tokens)
        with pytest.warns(UserWarning, match=r"garbage-collected while enabled.*disable\(\)"):
            del store
            gc.collect()
        assert hook_counts(model) == before
        with torch.no_grad():
            assert torch.equal(model(tokens), plain)


class TestTinyKempnerForgeHelpers:
    def test_bad_inputs_get_clear_errors(self) -> None:
        with pytest.raises(ValueError, match=r"n_layers=0; pass an int >= 1"):
            tiny_kempnerforge_model(0)
        with pytest.raises(ValueError, match=r"dim=30 must be a multiple of n_heads=4"):
            tiny_kempnerforge_model(dim=30)
        with pytest.raises(ValueError, match=r"dropout=1\.5"):
            tiny_kempnerforge_model(dropout=1.5)
        with pytest.raises(ValueError, match=r"tokens must be a \[batch, seq\] integer tensor"):
            tiny_kempnerforge_model()(torch.tensor([5, 6]))
        with pytest.raises(ValueError, match=r"n=2 with seq=\[3\]"):
            tiny_token_dataset(2, [3])
        with pytest.raises(ValueError, match=r"every length must be an int >= 1"):
            tiny_token_dataset(2, 0)
        with pytest.raises(ValueError, match=r"vocab=3"):
            tiny_token_dataset(2, 3, vocab=3)

    def test_the_dataset_and_train_mode_dropout(self) -> None:
        data = tiny_token_dataset(3, [2, 4, 3], seed=1)
        assert [len(data[i]["input_ids"]) for i in range(3)] == [2, 4, 3]
        ids = torch.cat([data[i]["input_ids"] for i in range(3)])
        assert ids.dtype == torch.int64 and int(ids.min()) >= 3 and int(ids.max()) < VOCAB
        model, tokens = tiny_kempnerforge_model(), tiny_batch(1, 4)["input_ids"]
        with torch.no_grad():
            evaluated = model(tokens)
            assert not torch.equal(model.train()(tokens), evaluated)
