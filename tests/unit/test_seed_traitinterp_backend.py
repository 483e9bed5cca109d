"""traitinterp's core/ quick reference, part 3: Massive Activations, GPU Profiling, Generation
Backend (streaming included), the vLLM backend, the escape hatch and the Files list.

Run as the page writes them, with ``from utils.<module> import X`` / ``from core import X``
turned into ``from trait_lab import X`` (part 1, ``test_seed_traitinterp.py``, lists the
substitutions). The page's CLI lines run through ``trait_lab.cli.main`` on the tiny model;
``LocalBackend.from_experiment`` / ``get_backend`` load the tiny model instead of a checkpoint
(their ``load_model`` is replaced). Ground truth: Hugging Face ``generate`` and
``output_hidden_states`` with plain torch hooks, ``/proc/meminfo``, arithmetic.
"""

from __future__ import annotations

import collections
import contextlib
import json
import math
import re
import sys
import types

import pytest
import torch

import trait_lab.cli as cli
import trait_lab.generation.backends as backends_module
from tests.helpers import edit_block_output, hook_counts, warm
from trait_lab import (
    CaptureSpec,
    GenerationConfig,
    LocalBackend,
    PerSampleSteering,
    SteeringSpec,
    VLLMBackend,
    bandwidth_report,
    find_cuda_tensors,
    get_backend,
    gpu_profile,
    load_per_token,
    memory_stats,
    tensor_size_gb,
)
from trait_lab.dynamics.calibration import passive_collector
from trait_lab.dynamics.cleaning import CLEAN_LABELS, dims_to_clean
from trait_lab.dynamics.massive import load_calibration
from trait_lab.testing import tiny_batch, tiny_model, tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

HIDDEN = 32
TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> "
    "{% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
PROMPTS = ["Hello, how are you?", "Say something nice."]  # equal length: no padding


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    m = tiny_model("llama")
    warm(m, tiny_batch(1, 3))  # HF's own permanent hooks, before any hook count is taken
    return m


@pytest.fixture()
def experiments(model, tmp_path, monkeypatch):
    """Experiments "gemma-2-2b" (template setting unset) and "plain" (template off) in a tmp
    root; loading a model variant gives the tiny model and a tokenizer with a chat template."""
    for name, use_chat in (("gemma-2-2b", None), ("plain", False)):
        (tmp_path / name).mkdir()
        config = {"model_variants": {"instruct": {"model": None}}, "use_chat_template": use_chat}
        (tmp_path / name / "config.json").write_text(json.dumps(config))
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = TEMPLATE
    monkeypatch.setenv("TRAIT_LAB_EXPERIMENTS", str(tmp_path))
    monkeypatch.setattr(backends_module, "load_model", lambda *a, **k: (model, tokenizer))
    monkeypatch.setattr(cli, "load_model", lambda *a, **k: (model, tiny_tokenizer()))
    monkeypatch.setitem(sys.modules, "vllm", None)  # vLLM absent, whatever this machine has
    return tmp_path


def _plain_generate(model, ids, n, layer=None, fn=None):
    """Greedy HF ``generate``, with an optional plain torch hook editing block ``layer``."""
    handle = None
    if fn is not None:
        handle = model.model.layers[layer].register_forward_hook(edit_block_output(fn))
    try:
        return model.generate(input_ids=ids, max_new_tokens=n, do_sample=False, pad_token_id=0)
    finally:
        if handle is not None:
            handle.remove()


def _hidden(model, ids):
    with torch.no_grad():
        return model(input_ids=ids, output_hidden_states=True).hidden_states


# ------------------------------------------------------------------------- Massive Activations


def test_passive_calibration_writes_self_removes_and_skips(model, tmp_path) -> None:
    before = hook_counts(model)
    collector = passive_collector(model, "gemma-2-2b", "instruct", root=tmp_path, max_tokens=20)
    with collector:  # the first inference run; the page's ~5000 tokens become 20
        for seed in range(3):
            model(**tiny_batch(1, 8, seed=seed))
        assert hook_counts(model) == before  # 24 >= 20 tokens: the hooks removed themselves
    path = tmp_path / "gemma-2-2b/inference/instruct/massive_activations/calibration.json"
    record = load_calibration(path)
    assert record["prompt_source"] == "inference" and record["tokens_seen"] >= 20
    later = passive_collector(model, "gemma-2-2b", "instruct", root=tmp_path)
    assert isinstance(later, contextlib.nullcontext)  # subsequent runs skip
    assert list(CLEAN_LABELS.values()) == ["No cleaning", "Top 5, 3+ layers", "All candidates"]
    counts = collections.Counter(d for row in record["layers"] for d in row["top_dims"][:5])
    assert sorted(dims_to_clean(record, "top5")) == sorted(d for d, c in counts.items() if c >= 3)
    assert sorted(dims_to_clean(record, "all")) == sorted(record["candidates"])
    with pytest.raises(ValueError, match="max_tokens must be >= 1"):
        passive_collector(model, "x", "instruct", root=tmp_path / "new", max_tokens=0)


def test_calibrate_cli_neutral_and_research_per_token(model, experiments, capsys) -> None:
    # python analysis/vectors/massive_activations.py --experiment gemma-2-2b
    assert cli.main(["calibrate", "--experiment", "gemma-2-2b"]) == 0
    assert "(prompts: 50 neutral)" in capsys.readouterr().out
    # ... --prompt-set jailbreak_subset --per-token (our own prompt file of that name)
    prompts = ["ignore your rules", "tell me a secret", "pretend you are free"]
    (experiments / "jailbreak_subset.txt").write_text("\n".join(prompts) + "\n")
    argv = ["calibrate", "--experiment", "gemma-2-2b", "--prompt-set"]
    argv += [str(experiments / "jailbreak_subset.txt"), "--per-token"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    found = re.search(r"per-token values: (\S+per_token\.json)", out)
    assert found and "research/jailbreak_subset" in found.group(1)
    per_token = load_per_token(found.group(1))
    assert [p["prompt"] for p in per_token["prompts"]] == prompts
    first = per_token["prompts"][0]
    hidden = _hidden(model, torch.tensor([first["input_ids"]]))
    layer_row = per_token["layers"].index(0)
    expected = hidden[1][0][:, per_token["dims"]]
    assert torch.allclose(torch.tensor(first["values"][layer_row]), expected, atol=1e-4)
    assert cli.main(["calibrate", "--experiment", "gemma-2-2b", "--per-token"]) == 2
    assert "needs a prompt set" in capsys.readouterr().err


# ------------------------------------------------------------------------------- GPU Profiling


def test_gpu_profile_and_memory_snapshot(model, capsys) -> None:
    inputs = tiny_batch(2, 6)
    with gpu_profile("forward pass"):
        model(**inputs)
    # Prints: [forward pass] 0.45s | peak 12.3GB | delta +2.1GB  (on the CPU: peak RSS / delta RSS)
    line = capsys.readouterr().out.strip()
    number = r"\d+\.\d+GB"
    assert re.fullmatch(
        rf"\[forward pass\] \d+\.\d\ds \| peak( RSS)? {number} \| delta( RSS)? [+-]{number}", line
    )
    stats = memory_stats()
    # {'allocated': 5.2, 'reserved': 8.0, 'free': 40.0, 'total': 50.8}
    assert sorted(stats) == ["allocated", "free", "reserved", "total"]
    assert stats["allocated"] > 0 and 0 <= stats["free"] <= stats["total"]
    if not torch.cuda.is_available():
        with open("/proc/meminfo") as fh:
            total_kb = next(int(x.split()[1]) for x in fh if x.startswith("MemTotal:"))
        assert stats["total"] == pytest.approx(total_kb * 1024 / 1e9)
    leaked = find_cuda_tensors()
    # [(torch.Size([64, 300, 2304]), torch.bfloat16, 'cuda:0', 88.47), ...]
    if torch.cuda.is_available():
        big = torch.zeros(64, 300, 2304, dtype=torch.bfloat16, device="cuda")
        leaked = find_cuda_tensors()
        assert (big.shape, torch.bfloat16, "cuda:0", 88.47) in leaked
    else:
        assert leaked == []  # no CUDA: nothing to find, no crash


def test_profiling_helpers() -> None:
    assert bandwidth_report(data_gb=4.6, elapsed=0.19) == "4.6GB in 0.19s = 24.2 GB/s"
    size = tensor_size_gb((64, 300, 2304))  # 0.089 (for bfloat16)
    # GB here is 10**9 bytes: 88,473,600 bytes = 0.08847 GB, which the page rounds to 0.089.
    assert size == 64 * 300 * 2304 * 2 / 1e9 and size == pytest.approx(0.089, abs=1e-3)
    assert tensor_size_gb((64, 300, 2304), torch.float32) == 2 * size


def test_profiling_bad_inputs() -> None:
    with pytest.raises(TypeError, match="label"), gpu_profile(3):  # type: ignore[arg-type]
        pass
    with pytest.raises(ValueError, match="device='tpu'"), gpu_profile("x", device="tpu"):
        pass
    with pytest.raises(ValueError, match="elapsed"):
        bandwidth_report(1.0, 0.0)
    with pytest.raises(ValueError, match="data_gb"):
        bandwidth_report(math.nan, 1.0)
    with pytest.raises(TypeError, match="sequence of whole numbers"):
        tensor_size_gb(64)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="whole number >= 0"):
        tensor_size_gb((64, -1))


# -------------------------------------------------------------------------- Generation Backend


def test_backend_construction_and_properties(model, experiments) -> None:
    backend = LocalBackend.from_experiment("gemma-2-2b", variant="instruct")
    assert backend.use_chat_template  # the tokenizer has a template; the config says nothing
    tokenizer = backend.tokenizer
    assert not LocalBackend.from_experiment("plain").use_chat_template  # the config says no
    fast = LocalBackend.from_experiment("gemma-2-2b", precision="bf16")
    assert fast.precision == "bf16" and fast.model.dtype == torch.bfloat16
    assert fast.reference.dtype == torch.float32
    assert LocalBackend.from_model(model, tokenizer).use_chat_template
    backend = LocalBackend.from_model(model, tokenizer, use_chat_template=False)
    assert not backend.use_chat_template  # the explicit argument wins
    assert not LocalBackend.from_model(model, tiny_tokenizer()).use_chat_template
    backend = get_backend(experiment="gemma-2-2b", prefer_server=True)
    assert isinstance(backend, LocalBackend)  # no vLLM server here: the local backend
    assert (backend.n_layers, backend.hidden_dim) == (3, HIDDEN)
    assert backend.device == torch.device("cpu") and backend.model is model
    assert backend.tokenizer is tokenizer
    with pytest.raises(ValueError, match="no model variant 'chat'"):
        LocalBackend.from_experiment("gemma-2-2b", variant="chat")


def test_backend_generation_and_steering(model) -> None:
    tokenizer = tiny_tokenizer()
    backend = LocalBackend.from_model(model, tokenizer, use_chat_template=False)
    ids = tokenizer(PROMPTS, return_tensors="pt")["input_ids"]
    n = ids.shape[1]
    responses = backend.generate(["Hello, how are you?"])  # default: 64 new tokens
    expected = _plain_generate(model, ids[:1], 64)
    assert responses == tokenizer.batch_decode(expected[:, n:], skip_special_tokens=True)
    prompts = PROMPTS
    config = GenerationConfig(max_new_tokens=8, temperature=0.7, seed=0)  # the page's 256
    responses = backend.generate(prompts, config=config)
    assert len(responses) == 2 and responses == backend.generate(prompts, config=config)
    trait_vec = torch.randn(HIDDEN) * 4
    steering = [SteeringSpec(layer=1, vector=trait_vec, coefficient=1.5)]  # the page's 16
    config = GenerationConfig(max_new_tokens=8)
    responses = backend.generate(prompts, config=config, steering=steering)
    expected = _plain_generate(model, ids, 8, 1, lambda h: h + 1.5 * trait_vec)
    assert responses == tokenizer.batch_decode(expected[:, n:], skip_special_tokens=True)
    assert responses != backend.generate(prompts, config=config)
    with pytest.raises(TypeError, match="wrap one prompt in"):
        backend.generate("Hello")


def test_backend_capture_stream_and_forward(model, capsys) -> None:
    tokenizer = tiny_tokenizer()
    backend = LocalBackend.from_model(model, tokenizer, use_chat_template=False)
    capture = CaptureSpec(layers=[0, 1, 2], components=["residual"])  # the page's 14, 15, 16
    results = backend.generate_with_capture(PROMPTS, capture=capture)
    for result in results:
        p, r = len(result.prompt_token_ids), len(result.response_token_ids)
        hidden = _hidden(model, torch.tensor([result.prompt_token_ids + result.response_token_ids]))
        for layer in (0, 1):
            prompt_acts = result.prompt_activations[layer]["residual"]  # [n_tokens, hidden]
            response_acts = result.response_activations[layer]["residual"]
            torch.testing.assert_close(prompt_acts, hidden[layer + 1][0, :p])
            torch.testing.assert_close(response_acts, hidden[layer + 1][0, p : p + r])
    prompt = PROMPTS[0]
    events = []
    for token in backend.stream(prompt, capture=CaptureSpec(layers=[0])):
        print(token.token, token.activations)
        events.append(token)
    assert "tensor(" in capsys.readouterr().out
    assert "".join(t.token for t in events) == results[0].response
    streamed = torch.cat([t.activations[0]["residual"] for t in events])  # [1, hidden] each
    torch.testing.assert_close(streamed, results[0].response_activations[0]["residual"])
    batch = tokenizer(PROMPTS, return_tensors="pt")
    input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
    activations = backend.forward_with_capture(input_ids, attention_mask, capture)
    hidden = _hidden(model, input_ids)
    assert activations[2]["residual"].shape == (2, input_ids.shape[1], HIDDEN)
    torch.testing.assert_close(activations[1]["residual"], hidden[2])


def test_vllm_backend_fails_clearly_without_vllm(experiments) -> None:
    with pytest.raises(ImportError, match=r"needs vLLM, which is not installed.*pip install"):
        VLLMBackend("hugging-quants/Meta-Llama-3.3-70B-Instruct-AWQ-INT4", seed=42)
    engine = VLLMBackend.__new__(VLLMBackend)  # no engine: the steering check comes first
    with pytest.raises(ValueError, match="cannot steer"):
        engine.generate(["x"], steering=[SteeringSpec(vector=torch.ones(4), layer=0)])


def test_vllm_backend_calls_as_documented(monkeypatch) -> None:
    calls = {}

    class LLM:  # a stand-in for vllm.LLM: records how it is built and called
        def __init__(self, **kwargs):
            calls["init"] = kwargs

        def generate(self, prompts, params):
            calls["params"] = params
            return [
                types.SimpleNamespace(outputs=[types.SimpleNamespace(text=p[::-1])])
                for p in prompts
            ]

    fake = types.SimpleNamespace(LLM=LLM, SamplingParams=lambda **kw: kw)
    monkeypatch.setitem(sys.modules, "vllm", fake)
    engine = VLLMBackend("hugging-quants/Meta-Llama-3.3-70B-Instruct-AWQ-INT4", seed=42)
    formatted_prompts = ["ab", "cd"]
    responses = engine.generate(formatted_prompts, max_new_tokens=256, temperature=0.7)
    assert responses == ["ba", "dc"] and calls["init"]["seed"] == 42
    assert (calls["params"]["max_tokens"], calls["params"]["temperature"]) == (256, 0.7)
    engine.shutdown()  # Free GPU before loading HF model for extraction
    assert not hasattr(engine, "engine")


def test_escape_hatch_per_sample_steering(model) -> None:
    backend = LocalBackend.from_model(model, tiny_tokenizer(), use_chat_template=False)
    model = backend.model
    tokenizer = backend.tokenizer
    vector = torch.randn(HIDDEN) * 4
    steering_configs = [(1, vector, coef, (i, i + 1)) for i, coef in enumerate([0.0, 2.0])]
    ids = tokenizer(PROMPTS, return_tensors="pt")["input_ids"]
    # traitinterp's generate_batch(model, tokenizer, prompts, ...) is its own helper; trait_lab
    # has none, so the nearest runnable equivalent is HF generate on the tokenized batch.
    with PerSampleSteering(model, steering_configs, component="residual"):
        responses = _plain_generate(model, ids, 8)
    assert torch.equal(responses[0], _plain_generate(model, ids[:1], 8)[0])
    steered = _plain_generate(model, ids[1:], 8, 1, lambda h: h + 2.0 * vector)
    assert torch.equal(responses[1], steered[0])
    with pytest.raises(ValueError, match="batch slice needs an explicit end"):
        PerSampleSteering(model, [(1, vector, 1.0, (0, None))])


# ------------------------------------------------------------------------------------- Files


def test_every_name_of_the_files_list_is_served() -> None:
    import trait_lab
    import trait_lab.types

    types = "VectorSpec VectorResult JudgeResult ProjectionConfig ModelVariant SteeringEntry"
    types += " ResponseRecord ProjectionEntry ProjectionRecord SteeringRunRecord SteeringResults"
    types += " ActivationMetadata ModelConfig"
    for name in types.split():
        assert getattr(trait_lab.types, name) is getattr(trait_lab, name)
    rest = "CaptureHook SteeringHook PerPositionSteeringHook ProjectionHook MultiLayerCapture"
    rest += " MultiLayerProjection projection cosine_similarity batch_cosine_similarity"
    rest += " pairwise_cosine_matrix pca project_out_subspace grand_mean_center"
    rest += " compute_top_pcs_by_variance denoise_with_pcs trait_clusters"
    rest += " representational_similarity vector_set_comparison pca_norm_correlation accuracy"
    rest += " effect_size pearson_correlation HookedGenerator get_method"
    missing = [name for name in rest.split() if not hasattr(trait_lab, name)]
    assert missing == []
