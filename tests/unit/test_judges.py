"""Judges: the local logprob judge's number distribution against a no-cache brute force."""

from __future__ import annotations

import asyncio
import concurrent.futures

import pytest
import torch

from trait_lab.evaluation.judges import (
    Judge,
    JudgeItem,
    LocalLogprobJudge,
    coherence_prompt,
    number_sequences,
    run_sync,
    trait_prompt,
)
from trait_lab.evaluation.scoring import expected_score
from trait_lab.testing import tiny_model, tiny_tokenizer


def _brute_force(model, prompt: list[int], spelling: tuple[int, ...], digits: list[int]) -> float:
    """p(spelling, then no digit | prompt) from one no-cache forward over the whole sequence."""
    ids = torch.tensor([prompt + list(spelling)])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids, use_cache=False).logits[0].double(), -1)
    start = len(prompt) - 1
    total = sum(float(logp[start + j, tok]) for j, tok in enumerate(spelling))
    stop = 1.0 - float(logp[start + len(spelling), digits].exp().sum())
    return float(torch.tensor(total).exp()) * stop


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma3"])
def test_number_probs_equal_a_no_cache_brute_force(arch: str) -> None:
    model, tok = tiny_model(arch), tiny_tokenizer()
    judge = LocalLogprobJudge(model, tok, min_mass=1e-12)
    request = "Rate this."
    probs = judge.number_probs(request)
    prompt = tok(request + "\nAnswer: ", add_special_tokens=True)["input_ids"]
    digits = list(range(4, 14))
    spellings = number_sequences(tok)
    assert set(probs) == set(range(101))
    for value in (0, 1, 7, 10, 42, 99, 100):
        assert probs[value] == pytest.approx(_brute_force(model, prompt, spellings[value], digits))
    assert 0.0 < sum(probs.values()) <= 1.0 + 1e-9
    score = judge.score_text(request)
    assert score == pytest.approx(expected_score(probs, 1e-12))


def test_a_model_that_always_says_73_scores_73() -> None:
    """Logits set from each input token: ' ' → '7', '7' → '3', '3' → EOS. The score is 73."""
    model, tok = tiny_model("llama"), tiny_tokenizer()
    space, seven, three = tok(" ")["input_ids"][0], 4 + 7, 4 + 3
    follow = {space: seven, seven: three, three: tok.eos_token_id}
    seen: list[torch.Tensor] = []

    def record(module, args, output):
        seen.append(args[0])

    def decide(module, args, output):
        ids = seen.pop()
        logits = torch.full_like(output, -30.0)
        for current, nxt in follow.items():
            logits[..., nxt] = torch.where(ids == current, 30.0, logits[..., nxt])
        return logits

    hooks = [
        model.model.embed_tokens.register_forward_hook(record),
        model.lm_head.register_forward_hook(decide),
    ]
    try:
        probs = LocalLogprobJudge(model, tok).number_probs("Rate this.")
    finally:
        for hook in hooks:
            hook.remove()
    assert probs[73] == pytest.approx(1.0, abs=1e-6)
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-6)
    assert expected_score(probs) == pytest.approx(73.0, abs=1e-4)


def test_protocol_items_and_sync_runner() -> None:
    judge = LocalLogprobJudge(tiny_model("llama"), tiny_tokenizer(), min_mass=1e-12)
    assert isinstance(judge, Judge)
    items = [JudgeItem("q one", "a one", "optimism", "Hope."), JudgeItem("q two", "a two", "x")]
    trait = run_sync(judge.score_trait(items))
    coherence = run_sync(judge.score_coherence(items))
    assert len(trait) == len(coherence) == 2 and all(0 <= s <= 100 for s in trait + coherence)
    assert trait[0] == pytest.approx(judge.score_text(trait_prompt(items[0])))
    assert coherence[1] == pytest.approx(judge.score_text(coherence_prompt(items[1])))
    assert judge.identity["kind"] == "local-logprob"

    async def inside_a_running_loop() -> list[float | None]:
        return run_sync(judge.score_coherence(items[:1]))  # as in a Jupyter cell

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:  # a thread of its own:
        got = pool.submit(asyncio.run, inside_a_running_loop()).result()  # the suite may run a loop
    assert got == pytest.approx(coherence[:1])


def test_bad_input() -> None:
    with pytest.raises(ValueError, match=r"needs JudgeItem\.trait"):
        trait_prompt(JudgeItem("q", "a"))
    with pytest.raises(TypeError, match=r"JudgeItem\.answer must be a str"):
        JudgeItem("q", None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_mass"):
        LocalLogprobJudge(tiny_model("llama"), tiny_tokenizer(), min_mass=0.0)
