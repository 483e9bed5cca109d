"""Widget latency on the default model: slider change → first streamed token, streaming speed,
and figure export time.

Measured in one run on the SteeringPanel (no browser: the time until the Python side has the
token to send; the page draws it a few ms later):

* slider change → first streamed steered token (includes the panel's debounce; also shown
  without it), with the prompt's KV cache kept between slider positions (the panel's default,
  ``reuse_prompt``) and, interleaved, recomputed each time (as before issue 17),
* tokens/s while streaming the steered reply vs plain ``model.generate`` and vs HF's own
  streaming (``TextIteratorStreamer``) run for exactly as many tokens as the panel made (it
  stops at EOS) (goal ≥ 0.9×),
* the same for a new prompt (baseline and steered streamed together as a batch of 2),
* export time per PNG / SVG / HTML (first PNG includes starting kaleido's chromium).

Run: ``python bench/bench_widgets.py [--tokens 32 --repeats 5]``.
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path

import torch
from transformers import TextIteratorStreamer

from trait_lab.generation.backends import LocalBackend
from trait_lab.models.loading import load_model
from widgets.common.export import export_figure, find_chromium
from widgets.steering.panel import SteeringPanel

PROMPT = "Write a long story about a lighthouse keeper and the sea."


class _Recompute:
    """The backend with the prompt's KV cache recomputed at every slider change."""

    def __init__(self, backend: LocalBackend) -> None:
        self._backend = backend

    def __getattr__(self, name: str):
        return getattr(self._backend, name)

    def stream(self, *args, **kwargs):
        return self._backend.stream(*args, **{**kwargs, "reuse_prompt": False})


def _exactly(config, n: int):
    config = copy.deepcopy(config)
    config.max_new_tokens = config.min_new_tokens = n
    return config


def _plain(model, batch, n, no_eos) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        model.generate(**batch, generation_config=_exactly(no_eos, n))
    return time.perf_counter() - start


def _hf_stream(model, tokenizer, batch, n, no_eos) -> float:
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True)
    kwargs = dict(**batch, generation_config=_exactly(no_eos, n))
    start = time.perf_counter()
    thread = threading.Thread(target=model.generate, kwargs={**kwargs, "streamer": streamer})
    thread.start()
    for _ in streamer:
        pass
    thread.join()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    n = args.tokens

    model, tokenizer = load_model()
    backend = LocalBackend.from_model(model, tokenizer)
    vector = torch.randn(backend.hidden_dim, generator=torch.Generator().manual_seed(0))
    panel = SteeringPanel(backend, {"trait": (vector, 12)}, prompt=PROMPT, max_new_tokens=n)
    assert panel.wait() and panel.error is None, panel.error
    batch = tokenizer([backend.format(PROMPT)], return_tensors="pt", add_special_tokens=False)
    no_eos = copy.deepcopy(model.generation_config)
    no_eos.eos_token_id = None
    _plain(model, batch, n, no_eos)  # warm up

    first, stream_rate, e2e_rate, plain_rate, hf_rate, new_prompt = [], [], [], [], [], []
    after_debounce, recomputed = [], []
    for i in range(args.repeats):
        panel.backend = _Recompute(backend)  # the same change, the prompt computed again
        panel.sliders["trait"].value = [0.3, -0.3][i % 2] + 0.01 * i
        panel.wait()
        recomputed.append(panel.timing["first_token"] - panel.timing["debounce_and_queue"])
        panel.backend = backend
        panel.sliders["trait"].value = [0.3, -0.3][i % 2] + 0.02 * i  # what a drag ends on
        panel.wait()
        t, tokens = panel.timing, int(panel.timing["tokens"])  # may stop at EOS before n
        first.append(t["first_token"])
        after_debounce.append(t["first_token"] - t["debounce_and_queue"])
        stream_rate.append((tokens - 1) / (t["total"] - t["first_token"]))
        e2e_rate.append(tokens / (t["total"] - t["debounce_and_queue"]))
        plain_rate.append(tokens / _plain(model, batch, tokens, no_eos))  # same token count
        hf_rate.append(tokens / _hf_stream(model, tokenizer, batch, tokens, no_eos))
        panel.prompt.value = f"{PROMPT} ({i})"  # new prompt: baseline + steered, batch of 2
        panel.wait()
        new_prompt.append(panel.timing["first_token"])
    med = statistics.median
    plain, hf = med(plain_rate), med(hf_rate)
    print(
        f"# widgets bench — {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, {n} tokens, "
        f"medians of {args.repeats}\n"
    )
    print("| measure | value | goal |\n|---|---|---|")
    print(f"| slider change → first steered token | {med(first):.3f} s | ≤ 0.2 s |")
    print(f"| the same after the debounce (prompt kept) | {med(after_debounce):.3f} s | |")
    print(f"| the same, prompt computed again each change | {med(recomputed):.3f} s | |")
    print(f"| new prompt → first token (baseline + steered, batch 2) | {med(new_prompt):.3f} s | |")
    print(f"| plain model.generate | {plain:.1f} tok/s | |")
    print(f"| HF TextIteratorStreamer (peer) | {hf:.1f} tok/s ({hf / plain:.2f}×) | |")
    print(
        f"| panel streaming, steady state | {med(stream_rate):.1f} tok/s "
        f"({med(stream_rate) / plain:.2f}× plain, {med(stream_rate) / hf:.2f}× HF stream) "
        "| ≥ 0.9× |"
    )
    print(
        f"| panel, change → last token | {med(e2e_rate):.1f} tok/s "
        f"({med(e2e_rate) / plain:.2f}× plain) | |"
    )
    panel.close()

    if find_chromium() is None:
        print("\nno chromium: PNG/SVG export not measured (apt-get install -y chromium)")
        return
    figure = panel.figure()
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for ext in ("png", "png", "png", "svg", "html"):
            start = time.perf_counter()
            export_figure(figure, Path(tmp) / f"f.{ext}")
            rows.append((ext, time.perf_counter() - start))
    print("\n| export | seconds |\n|---|---|")
    print(f"| first PNG (starts kaleido + chromium) | {rows[0][1]:.2f} |")
    print(f"| PNG after that | {med([rows[1][1], rows[2][1]]):.2f} |")
    print(f"| SVG | {rows[3][1]:.2f} |\n| HTML (self-contained, ~5 MB) | {rows[4][1]:.2f} |")


if __name__ == "__main__":
    main()
