"""Capture and projection overhead on the default model, measured in one run.

Compares, on the same batch: a hookless forward, HF's ``output_hidden_states``, our
``MultiLayerCapture`` of all layers, our KempnerForge-style ``ActivationStore`` (captures to
CPU), steering-vectors' ``record_activations`` (a peer; skipped when not installed), and
projection onto 5 vectors at 5 layers inside the hook vs capture-then-project.

Run: ``python bench/bench_capture.py [--batch 8 --seq 64 --repeats 7]``. Prints markdown
tables with ratios; copy them into bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import copy
import platform

import torch
from _timing import interleaved, table

from trait_lab.activations import ActivationStore
from trait_lab.hooks import MultiLayerCapture, MultiLayerProjection
from trait_lab.models.loading import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()

    dtype = getattr(torch, args.dtype)
    model, _ = load_model(dtype=dtype, device=args.device)
    # output_hidden_states installs permanent hooks on the model it runs on: give it a copy so
    # the other cases run on a model without them.
    hs_model = copy.deepcopy(model)
    n_layers = model.config.num_hidden_layers
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(100, model.config.vocab_size, (args.batch, args.seq), generator=gen)
    ids = ids.to(args.device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    names = [f"model.layers.{i}" for i in range(n_layers)]
    vectors = torch.randn(5, model.config.hidden_size, generator=gen)
    proj_layers = [5, 10, 15, 20, 25]

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    @torch.no_grad()
    def hookless() -> None:
        model(**batch)
        sync()

    @torch.no_grad()
    def hidden_states() -> None:
        hs_model(**batch, output_hidden_states=True)
        sync()

    @torch.no_grad()
    def ours_capture() -> None:
        with MultiLayerCapture(model):
            model(**batch)
        sync()

    @torch.no_grad()
    def ours_store_cpu() -> None:
        with ActivationStore(model, names):
            model(**batch)
        sync()

    @torch.no_grad()
    def capture_then_project() -> None:
        with MultiLayerCapture(model, proj_layers) as cap:
            model(**batch)
        units = (vectors / vectors.norm(dim=-1, keepdim=True)).to(args.device)
        for layer in proj_layers:
            (cap.get(layer).float() @ units.T).cpu()
        sync()

    @torch.no_grad()
    def project_in_hook() -> None:
        with MultiLayerProjection(model, {layer: vectors for layer in proj_layers}) as proj:
            model(**batch)
        for layer in proj_layers:
            proj.get(layer).cpu()
        sync()

    cases = {
        "hookless forward": hookless,
        "HF output_hidden_states": hidden_states,
        "trait_lab MultiLayerCapture (all layers)": ours_capture,
        "trait_lab ActivationStore (all layers, to CPU)": ours_store_cpu,
    }
    notes = {}
    try:
        from steering_vectors import record_activations

        @torch.no_grad()
        def peer_steering_vectors() -> None:
            with record_activations(model, layer_type="decoder_block"):
                model(**batch)
            sync()

        cases["steering-vectors record_activations (peer)"] = peer_steering_vectors
    except ImportError:
        notes["hookless forward"] = "steering-vectors not installed: peer skipped"
    cases["capture 5 layers, then project 5 vectors"] = capture_then_project
    cases["project 5 vectors at 5 layers in the hook"] = project_in_hook

    times = interleaved(cases, args.repeats)
    tokens = args.batch * args.seq
    print(
        f"## capture overhead — default model, {args.device} {args.dtype}, batch "
        f"{args.batch}x{args.seq} ({tokens} tokens), {args.repeats} interleaved repeats, "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads\n"
    )
    print(table(times, "hookless forward", notes))
    in_hook = times["project 5 vectors at 5 layers in the hook"]
    after = times["capture 5 layers, then project 5 vectors"]
    print(f"\nprojection in hook / capture-then-project: {in_hook / after:.2f}x")
    print(f"hookless throughput: {tokens / times['hookless forward']:.0f} tokens/s")


if __name__ == "__main__":
    main()
