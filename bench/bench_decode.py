"""Decode speed with hooks (issue 17): which fast paths are real on this machine.

Every case decodes greedily ``--tokens`` tokens (EOS off) at batch 1 and 8 with steering (one
vector, one layer) and projection (5 vectors x 5 layers), except the baseline, plain fp32
``model.generate``. trait_lab's own paths are ``HookedGenerator`` in fp32 (the reference) and in
bf16 (``LocalBackend(precision="bf16")``). Cases run interleaved, medians are reported as
tokens/s and as the ratio to the baseline. The other cases use a prototype loop (not
trait_lab's): a transformers ``StaticCache``, permanent forward hooks whose coefficient, vector
and projection matrix are tensors the graph reads, the prompt run eagerly and each decode step
through ``step`` (eager or ``torch.compile``-d). Reduced-precision cases keep the hooks in fp32
on the hooked activation.

Also reported: compile / quantize seconds, whether each fast path's greedy tokens equal the eager
fp32 loop's, recompiles when a coefficient's value changes, and the top-1 agreement and max
|logit diff| of each reduced-precision model vs fp32 (teacher-forced on fp32 greedy sequences).

Run: ``python bench/bench_decode.py --tokens 32 --repeats 5`` (``--cases`` to pick some).
"""

from __future__ import annotations

import argparse
import copy
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
import torch._dynamo
from _timing import interleaved
from torch import nn
from transformers import StaticCache

from trait_lab.generation.generator import HookedGenerator, ProjectionSpec, SteeringConfig
from trait_lab.generation.precision import at_precision
from trait_lab.models.kv_cache import cache_keyword
from trait_lab.models.loading import load_model

STEER_LAYER, STEER_COEF = 12, 4.0
EFFECT_COEF = 40.0  # large enough to move the replies, for the effect-size comparison
PROJ_LAYERS = (5, 10, 15, 20, 25)


class TensorHooks:
    """Permanent hooks: steer one layer by ``coef[row] * vector``, project 5 layers (all fp32).

    The loop changes ``coef`` in place (``coef.fill_``), never the Python objects, so a compiled
    graph reads the new value without recompiling.
    """

    def __init__(self, model: nn.Module, batch: int, vector: torch.Tensor, proj: dict) -> None:
        self.coef = torch.full((batch,), STEER_COEF)
        self.vector = vector.float()
        self.proj = {layer: m.float() for layer, m in proj.items()}
        self.scores: dict[int, torch.Tensor] = {}
        layers = model.model.layers
        self.handles = [layers[STEER_LAYER].register_forward_hook(self._steer)]
        for layer in self.proj:
            self.handles.append(layers[layer].register_forward_hook(self._projector(layer)))

    def _steer(self, module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        x = out.float() + self.coef[:, None, None] * self.vector
        return x.to(out.dtype)

    def _projector(self, layer: int) -> Callable:
        def project(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
            self.scores[layer] = out[:, -1].float() @ self.proj[layer].T

        return project

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


class StaticDecoder:
    """Greedy decoding with a StaticCache; ``compile_mode`` compiles the one-token step."""

    def __init__(self, model: nn.Module, batch: int, max_len: int, compile_mode: str | None):
        self.model, self.max_len = model, max_len
        self.cache = StaticCache(config=model.config, max_cache_len=max_len)
        self.keyword = cache_keyword(model)
        self.step: Callable = self._step
        if compile_mode is not None:
            self.step = torch.compile(self._step, mode=compile_mode, dynamic=False, fullgraph=False)

    def _step(self, ids, mask, pos):
        kw = {self.keyword: self.cache}  # the name this transformers' forward declares
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, **kw)
        return out.logits[:, -1, :].float()

    def generate(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        n: int,
        hooks: TensorHooks,
        forced: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[dict[int, torch.Tensor]]]:
        """Greedy tokens [batch, n], each step's logits and projection scores.

        ``forced`` [batch, n] feeds those tokens instead (teacher forcing); the returned tokens
        are still each step's argmax. The prompt runs eagerly.
        """
        self.cache.reset()
        batch, prompt = ids.shape
        full = torch.ones(batch, self.max_len, dtype=torch.long)
        full[:, :prompt] = mask
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        tokens, logits, scores = [], [], []
        with torch.no_grad():
            logit = self._step(ids, full, pos)
            nxt = pos[:, -1:] + 1
            for i in range(n):
                logits.append(logit)
                tokens.append(logit.argmax(-1, keepdim=True))
                feed = tokens[-1] if forced is None else forced[:, i : i + 1]
                logit = self.step(feed, full, nxt)
                scores.append({k: v.clone() for k, v in hooks.scores.items()})
                nxt = nxt + 1
        return torch.cat(tokens, dim=-1), logits, scores


def compare(ref: tuple, got: tuple) -> str:
    """Teacher-forced: argmax agreement, max |logit diff| and max |projection diff| vs ``ref``."""
    same = (ref[0] == got[0]).float()
    dlogit = max(float((a - b).abs().max()) for a, b in zip(ref[1], got[1], strict=True))
    dproj = max(
        float((a[k] - b[k]).abs().max()) for a, b in zip(ref[2], got[2], strict=True) for k in a
    )
    return f"forced top-1 {same.mean():.3f}, max |dlogit| {dlogit:.2g}, max |dproj| {dproj:.2g}"


def quantize(model: nn.Module, how: str) -> nn.Module:
    """A reduced-precision copy: bf16, or int8 (torchao weight-only / dynamic, or torch's own)."""
    model = copy.deepcopy(model)
    if how == "bf16":
        return model.to(torch.bfloat16)
    if how.startswith("torch-qdyn"):  # fbgemm: int8 weights, int8 activations per call
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        spec = {nn.Linear: per_channel_dynamic_qconfig} if "-pc" in how else {nn.Linear}
        if how.endswith("-head"):  # only the vocabulary head
            head = quantize_dynamic(nn.Sequential(model.lm_head), spec, dtype=torch.qint8)
            model.lm_head = head[0]
            return model
        return quantize_dynamic(model, spec, dtype=torch.qint8)
    from torchao.quantization import (
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
        quantize_,
    )

    config = (
        Int8WeightOnlyConfig() if how == "ao-int8wo" else Int8DynamicActivationInt8WeightConfig()
    )
    model.lm_head.weight = nn.Parameter(model.lm_head.weight.detach().clone())  # untie
    quantize_(model, config)
    return model


def agreement(ref: nn.Module, other: nn.Module, seqs: torch.Tensor, mask: torch.Tensor) -> str:
    """Top-1 agreement and max |logit diff| at every generated position (teacher-forced)."""
    start = mask.shape[1]
    mask = torch.cat([mask, mask.new_ones(mask.shape[0], seqs.shape[1] - start)], dim=-1)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    kw = {"input_ids": seqs, "attention_mask": mask, "position_ids": pos}
    with torch.no_grad():
        a = ref(**kw).logits[:, start - 1 : -1].float()
        b = other(**kw).logits[:, start - 1 : -1].float()
    same = (a.argmax(-1) == b.argmax(-1)).float()
    return (
        f"top-1 {int(same.sum())}/{same.numel()} = {same.mean():.3f}, "
        f"max |dlogit| {float((a - b).abs().max()):.3f}"
    )


VARIANTS = {  # case key: (precision, compile mode or None for eager)
    "static-eager": ("fp32", None),
    "static-compile": ("fp32", "default"),
    "static-compile-autotune": ("fp32", "max-autotune-no-cudagraphs"),
    "bf16-eager": ("bf16", None),
    "bf16-compile": ("bf16", "default"),
    "qdyn-head-eager": ("torch-qdyn-head", None),
    "qdyn-eager": ("torch-qdyn", None),
    "qdyn-pc-head-eager": ("torch-qdyn-pc-head", None),
    "qdyn-pc-eager": ("torch-qdyn-pc", None),
    "qdyn-pc-head-compile": ("torch-qdyn-pc-head", "default"),
    "ao-int8wo-eager": ("ao-int8wo", None),
    "ao-int8wo-compile": ("ao-int8wo", "default"),
    "ao-int8dq-compile": ("ao-int8dq", "default"),
}
PROMPTS = [
    "Tell me about the ocean.",
    "Write a haiku about rain.",
    "What is 17 times 23?",
    "Describe a cat.",
    "Why is the sky blue?",
    "Name three rivers.",
    "Hi!",
    "Plan a trip.",
]


@dataclass
class Setup:
    """What every case shares: the fp32 model, its reduced copies, the hooks' tensors."""

    model: nn.Module
    tok: Any
    models: dict[str, nn.Module]
    notes: dict[str, str]
    texts: list[str]
    vector: torch.Tensor
    proj: dict[int, torch.Tensor]
    no_eos: Any
    tokens: int
    repeats: int


def fast_case(setup: Setup, key: str, enc: Any, reference: tuple) -> tuple[Callable, str]:
    """Build one prototype case; return its timed callable and its note (checks, timings)."""
    how, mode = VARIANTS[key]
    ids, mask, n = enc["input_ids"], enc["attention_mask"], setup.tokens
    torch._dynamo.reset()
    # a private copy, hooks registered for good: adding or removing a hook after compiling
    # fails a dynamo guard (len(_forward_hooks)) and compiles another graph
    m = copy.deepcopy(setup.models[how])
    hooks = TensorHooks(m, ids.shape[0], setup.vector, setup.proj)
    dec = StaticDecoder(m, ids.shape[0], ids.shape[1] + n + 1, mode)
    start = time.perf_counter()
    toks = dec.generate(ids, mask, n, hooks)[0]
    first = time.perf_counter() - start
    diverge = (toks != reference[0]).any(dim=0).nonzero()
    forced = compare(reference, dec.generate(ids, mask, n, hooks, forced=reference[0]))
    before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    hooks.coef.fill_(-STEER_COEF)  # the slider moves: a new value, same tensor
    start = time.perf_counter()
    dec.generate(ids, mask, 1, hooks)
    slider = time.perf_counter() - start
    recompiled = torch._dynamo.utils.counters["stats"]["unique_graphs"] - before
    hooks.coef.fill_(STEER_COEF)
    text = f"first run {first:.1f} s; greedy tokens == eager: {len(diverge) == 0}"
    text += f" (first differs at step {int(diverge[0])})" if len(diverge) else ""
    text += f"; {forced}; coef change -> 1st token {slider:.3f} s"
    text += f", new graphs after coef change: {recompiled}" if mode else ""
    return (lambda: dec.generate(ids, mask, n, hooks)), text


def compiled_case(
    setup: Setup, precision: str, enc: Any, eager: list
) -> tuple[Callable[[], object], str]:
    """``HookedGenerator(..., compile=True)`` at ``precision``: its timed callable and a note
    (first-call seconds, later compile seconds, greedy rows equal to the eager loop's)."""
    ids, mask, n = enc["input_ids"], enc["attention_mask"], setup.tokens
    gen = HookedGenerator(at_precision(setup.model, precision), compile=True)
    steer = [SteeringConfig(setup.vector, STEER_LAYER, STEER_COEF, positions="all")]
    spec = ProjectionSpec(setup.proj)

    def run(coef: float = STEER_COEF) -> list:
        steering = [replace(steer[0], coefficient=coef)]
        return gen.generate(ids, mask, n, eos_token_id=[], steering=steering, projection=spec)

    start = time.perf_counter()
    got = run()
    first = time.perf_counter() - start
    same = sum(a.token_ids == b.token_ids for a, b in zip(got, eager, strict=True))
    compiles = len(gen.compiled.compile_seconds) if gen.compiled else 0
    run(-STEER_COEF)  # the slider moves: new values, the same graph
    again = (len(gen.compiled.compile_seconds) if gen.compiled else 0) - compiles
    unavailable = gen.compiled.unavailable if gen.compiled else "off"
    note = f"first call {first:.1f} s (compile included); greedy rows == eager {precision}: "
    note += f"{same}/{len(eager)}; new graphs after a coefficient change: {again}"
    note += f"; NOT COMPILED: {unavailable}" if unavailable else ""
    return run, note


def bench_batch(setup: Setup, chosen: list[str], batch: int) -> None:
    """Time every chosen case at one batch size and print its table."""
    model, tok, n = setup.model, setup.tok, setup.tokens
    enc = tok(setup.texts[:batch], return_tensors="pt", padding=True)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    gen = HookedGenerator(model)
    steer = [SteeringConfig(setup.vector, STEER_LAYER, STEER_COEF, positions="all")]
    spec = ProjectionSpec(setup.proj)
    ref = gen.generate(ids, mask, n, eos_token_id=[], steering=steer, projection=spec)
    ref_tokens = torch.tensor([r.token_ids for r in ref])
    ref_hooks = TensorHooks(model, batch, setup.vector, setup.proj)  # the fp32 eager static loop
    reference = StaticDecoder(model, batch, ids.shape[1] + n + 1, None).generate(
        ids, mask, n, ref_hooks, forced=ref_tokens
    )
    ref_hooks.remove()
    if not bool((reference[0] == ref_tokens).all()):
        print("WARNING: the prototype's eager fp32 loop differs from HookedGenerator")

    def plain() -> None:
        with torch.no_grad():
            model.generate(
                **enc,
                max_new_tokens=n,
                do_sample=False,
                generation_config=setup.no_eos,
                pad_token_id=tok.pad_token_id,
            )

    def eager() -> None:
        gen.generate(ids, mask, n, eos_token_id=[], steering=steer, projection=spec)

    fast = HookedGenerator(at_precision(model, "bf16"))  # LocalBackend(precision="bf16")

    def eager_bf16() -> None:
        fast.generate(ids, mask, n, eos_token_id=[], steering=steer, projection=spec)

    got = fast.generate(ids, mask, n, eos_token_id=[], steering=steer, projection=spec)
    same = sum(a.token_ids == b.token_ids for a, b in zip(got, ref, strict=True))
    cases: dict[str, Callable[[], object]] = {
        "plain generate": plain,
        "HookedGenerator": eager,
        "HookedGenerator bf16": eager_bf16,
    }
    info = {
        "plain generate": "baseline, no hooks",
        "HookedGenerator": "eager fp32, reference",
        "HookedGenerator bf16": f"trait_lab's bf16 path; greedy rows == fp32: {same}/{batch}",
    }
    for precision in ("fp32", "bf16"):  # trait_lab's compiled decode step
        name = "HookedGenerator compiled" + ("" if precision == "fp32" else " bf16")
        cases[name], info[name] = compiled_case(
            setup, precision, enc, got if precision == "bf16" else ref
        )
    for key in chosen:
        how = VARIANTS[key][0]
        if how not in setup.models:
            info[key] = setup.notes[how]
            continue
        try:
            cases[key], info[key] = fast_case(setup, key, enc, reference)
        except Exception as exc:  # a path that does not work here: say why, keep going
            info[key] = f"FAILED: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
            traceback.print_exc()
    times = interleaved(cases, setup.repeats)
    base = times["plain generate"]
    print(f"\n## batch {batch}\n\n| case | tok/s (rows x tokens / s) | ratio vs plain | note |")
    print("|---|---|---|---|")
    for name, note in info.items():
        if name in times:
            rate = batch * n / times[name]
            print(f"| {name} | {rate:.1f} | {base / times[name]:.2f}x | {note} |")
        else:
            print(f"| {name} | - | - | {note} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument(
        "--cases", default="all", help="comma list of prototype case keys, 'all' or 'none'"
    )
    parser.add_argument(
        "--agreement-tokens", type=int, default=125, help="positions per prompt (8 prompts)"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    model, tok = load_model()
    rng = torch.Generator().manual_seed(0)
    vector = torch.randn(model.config.hidden_size, generator=rng)
    proj = {layer: torch.randn(5, vector.shape[0], generator=rng) for layer in PROJ_LAYERS}
    no_eos = copy.deepcopy(model.generation_config)
    no_eos.eos_token_id = None
    texts = [
        tok.apply_chat_template(
            [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
        )
        for p in PROMPTS
    ]
    chosen = {"all": list(VARIANTS), "none": []}.get(args.cases, args.cases.split(","))
    unknown = [key for key in chosen if key not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown cases {unknown}; choose from {list(VARIANTS)}")
    models: dict[str, nn.Module] = {"fp32": model}
    notes: dict[str, str] = {}
    for how in dict.fromkeys(VARIANTS[key][0] for key in chosen):
        if how in models:
            continue
        start = time.perf_counter()
        try:
            models[how] = quantize(model, how)
            notes[how] = f"quantize {time.perf_counter() - start:.1f} s"
        except Exception as exc:  # a path that does not work here: say why, keep going
            notes[how] = f"FAILED: {type(exc).__name__}: {str(exc)[:200]}"
    setup = Setup(
        model,
        tok,
        models,
        notes,
        texts,
        vector / vector.norm(),
        proj,
        no_eos,
        args.tokens,
        args.repeats,
    )
    print(
        f"# decode bench, torch {torch.__version__}, {platform.machine()}, "
        f"{torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads, "
        f"{args.tokens} tokens, {args.repeats} interleaved repeats"
    )
    for how, note in notes.items():
        print(f"- {how}: {note}")
    for batch in [int(b) for b in args.batches.split(",")]:
        bench_batch(setup, chosen, batch)

    # agreement: teacher-forced on fp32 greedy sequences (unsteered), every generated position
    enc = tok(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        seqs = model.generate(
            **enc,
            max_new_tokens=args.agreement_tokens,
            do_sample=False,
            generation_config=no_eos,
            pad_token_id=tok.pad_token_id,
        )
    positions = f"{len(texts)} prompts x {args.agreement_tokens} positions"
    print(f"\n## agreement vs fp32 ({positions}, teacher-forced)\n")
    for how, m in models.items():
        if how != "fp32":
            print(f"- {how}: {agreement(model, m, seqs, enc['attention_mask'])}")
    effect_sizes(setup, enc)


def effect_sizes(setup: Setup, enc: Any) -> None:
    """The steering vector's effect, fp32 vs bf16: the mean shift of the generated tokens'
    projection on it at layer ``PROJ_LAYERS[-1]`` when steering at ``STEER_LAYER``."""
    ids, mask, n = enc["input_ids"], enc["attention_mask"], setup.tokens
    layer = PROJ_LAYERS[-1]
    spec = ProjectionSpec({layer: setup.vector})
    effects = {}
    for how in ("fp32", "bf16"):
        gen = HookedGenerator(at_precision(setup.model, how))
        means = []
        for coef in (0.0, EFFECT_COEF):
            steer = [SteeringConfig(setup.vector, STEER_LAYER, coef, positions="all")]
            out = gen.generate(ids, mask, n, eos_token_id=[], steering=steer, projection=spec)
            means.append(torch.cat([r.projections[layer] for r in out]).float().mean())
        effects[how] = float(means[1] - means[0])
    ratio = effects["bf16"] / effects["fp32"]
    print(
        f"\n## steering effect size (projection shift at layer {layer}, coefficient "
        f"{EFFECT_COEF} at layer {STEER_LAYER}, {ids.shape[0]} prompts x {n} tokens)\n\n"
        f"- fp32 {effects['fp32']:.3f}, bf16 {effects['bf16']:.3f}: ratio {ratio:.3f}"
    )


if __name__ == "__main__":
    main()
