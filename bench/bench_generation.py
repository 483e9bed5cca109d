"""Generation speed on the default model: plain ``model.generate`` vs ``HookedGenerator``.

Measured in one run, interleaved: tokens/s of plain HF generation, of HookedGenerator with no
hooks, with steering, with capture of all layers, and with projection onto 5 vectors at 5
layers; and 8 steering coefficients run as one batch (per-row coefficients) vs 8 sequential
runs. EOS is disabled so every run makes exactly ``--tokens`` tokens.

Run: ``python bench/bench_generation.py [--tokens 32 --repeats 5]``.
"""

from __future__ import annotations

import argparse
import copy
import platform

import torch
from _timing import interleaved, table

from trait_lab.generation.generator import (
    CaptureConfig,
    HookedGenerator,
    ProjectionSpec,
    SteeringConfig,
)
from trait_lab.models.loading import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--coefficients", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = parser.parse_args()

    model, tokenizer = load_model(dtype=getattr(torch, args.dtype), device=args.device)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Tell me about the ocean."}],
        tokenize=False,
        add_generation_prompt=True,
    )
    batch = tokenizer([text], return_tensors="pt").to(args.device)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    hidden = model.config.hidden_size
    gen = HookedGenerator(model)
    rng = torch.Generator().manual_seed(0)
    vector = torch.randn(hidden, generator=rng)
    vector = vector / vector.norm()
    projections = {layer: torch.randn(5, hidden, generator=rng) for layer in (5, 10, 15, 20, 25)}
    no_eos = copy.deepcopy(model.generation_config)
    no_eos.eos_token_id = None
    n = args.tokens
    coefs = [float(c) for c in torch.linspace(-8, 8, args.coefficients)]

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def hf_generate() -> None:
        with torch.no_grad():
            model.generate(
                **batch,
                max_new_tokens=n,
                do_sample=False,
                generation_config=no_eos,
                pad_token_id=tokenizer.pad_token_id,
            )
        sync()

    def ours(**kwargs):
        def run() -> None:
            gen.generate(ids, mask, n, eos_token_id=[], **kwargs)
            sync()

        return run

    steer = [SteeringConfig(vector, 12, 4.0)]
    cases = {
        "plain model.generate": hf_generate,
        "HookedGenerator, no hooks": ours(),
        "HookedGenerator + steering": ours(steering=steer),
        "HookedGenerator + capture all layers": ours(capture=CaptureConfig()),
        "HookedGenerator + projection 5x5": ours(projection=ProjectionSpec(projections)),
        "HookedGenerator + steering + capture + projection": ours(
            steering=steer, capture=CaptureConfig(), projection=ProjectionSpec(projections)
        ),
    }
    try:
        from steering_vectors import SteeringVector

        peer_vector = SteeringVector({12: vector * 4.0}, layer_type="decoder_block")

        def peer_steering_vectors() -> None:
            with peer_vector.apply(model):
                hf_generate()

        cases["steering-vectors apply + model.generate (peer)"] = peer_steering_vectors
    except ImportError:
        print("steering-vectors is not installed: its row is skipped (pip install --no-deps)")
    times = interleaved(cases, args.repeats)
    print(
        f"## generation — default model, {args.device} {args.dtype}, batch 1, {n} new tokens, "
        f"{args.repeats} interleaved repeats, torch {torch.__version__}, "
        f"{platform.machine()}, {torch.get_num_threads()} threads\n"
    )
    print(table(times, "plain model.generate"))
    print()
    for name, seconds in times.items():
        print(f"- {name}: {n / seconds:.1f} tokens/s")

    k = len(coefs)
    batch_ids, batch_mask = ids.repeat(k, 1), mask.repeat(k, 1)

    def one_batch() -> None:
        gen.generate(
            batch_ids, batch_mask, n, eos_token_id=[], steering=[SteeringConfig(vector, 12, coefs)]
        )
        sync()

    def sequential() -> None:
        for c in coefs:
            gen.generate(ids, mask, n, eos_token_id=[], steering=[SteeringConfig(vector, 12, c)])
        sync()

    sweep = interleaved(
        {f"{k} coefficients, one batch": one_batch, f"{k} coefficients, sequential": sequential},
        max(2, args.repeats // 2),
    )
    print()
    print(table(sweep, f"{k} coefficients, sequential"))
    speedup = sweep[f"{k} coefficients, sequential"] / sweep[f"{k} coefficients, one batch"]
    print(f"\none batch is {speedup:.2f}x faster than {k} sequential runs")


if __name__ == "__main__":
    main()
