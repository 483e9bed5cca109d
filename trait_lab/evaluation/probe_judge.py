"""The classifier judge: a calibrated probe on the unsteered model's reading of an answer.

:meth:`ProbeJudge.fit` builds labelled answers from a trait's pairs — the pairs' own replies
for ``prefix`` traits, the model's greedy replies under each pole's system prompt for
``system_prompt`` traits — lets the **unsteered** model read each (question, answer) and
averages its residual stream over the answer's tokens. A logistic regression per layer on
standardised readings is scored by stratified cross-validated log loss; the best layer and
regularisation are refitted on everything. ``score_trait`` is ``100 · P(positive pole)``.

What it can judge: how much an answer *reads like* the trait's positive pole, as the model
itself represents it — fast (one batched forward per call), offline, deterministic. What it
cannot: coherence (``score_coherence`` returns ``None``: the offline NLL rule decides), traits
without pairs, or text far outside what it was fitted on (gibberish gets an arbitrary score —
which is why coherence is scored separately and gates every result).

Example:
    >>> from trait_lab.evaluation.judges import run_sync
    >>> from trait_lab.testing import tiny_model, tiny_tokenizer
    >>> X = [("q", "good day"), ("q", "good sun"), ("q", "bad day"), ("q", "bad rain")] * 3
    >>> judge = ProbeJudge.fit_texts(tiny_model(), tiny_tokenizer(), X, [1, 1, 0, 0] * 3,
    ...                              trait="optimism", folds=3)
    >>> 0 <= run_sync(judge.score_trait([JudgeItem("q", "good")]))[0] <= 100
    True
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from torch import nn

from trait_lab.activations.capture import capture_at_position
from trait_lab.core.atomic import atomic_write_json
from trait_lab.core.schema import Schema
from trait_lab.evaluation.batched import steered_answers
from trait_lab.evaluation.judges import JudgeItem
from trait_lab.hooks.base import active_edits
from trait_lab.models.identity import model_identity
from trait_lab.traits.dataset import TraitDataset
from trait_lab.traits.format import TraitPair

__all__ = ["MIN_CV_ACCURACY", "PROBE_JUDGE_SCHEMA", "ProbeJudge", "labelled_answers"]

PROBE_JUDGE_SCHEMA = Schema("trait_lab.probe_judge", 1, remake="fit the judge again")
C_GRID = (0.01, 0.1, 1.0)
"""Inverse regularisation strengths tried for every layer."""
MIN_CV_ACCURACY = 0.75
"""Cross-validated accuracy on its own training poles below which a probe judge is refused."""


def labelled_answers(
    model: nn.Module,
    tokenizer: Any,
    dataset: TraitDataset,
    pairs: Sequence[TraitPair],
    *,
    max_new_tokens: int = 48,
) -> tuple[list[tuple[str, str]], list[int]]:
    """``(question, answer)`` texts with labels (1 = positive pole) from ``pairs``.

    ``prefix`` traits use the pairs' replies; ``system_prompt`` traits have none, so the
    model answers each question greedily under each pole's system prompt (without steering).

    Example:
        >>> from trait_lab.traits.dataset import load_trait
        >>> ds = load_trait("refusal")
        >>> texts, labels = labelled_answers(None, None, ds, ds.pairs[:2])
        >>> labels
        [1, 1, 0, 0]
    """
    questions = [p.question for p in pairs]
    if not questions:
        raise ValueError(f"no pairs given for trait {dataset.name!r}; pass at least one pair")
    answers: dict[str, list[str]] = {}
    for label, pole in ((1, "positive"), (0, "negative")):
        replies = dataset.responses(pole, pairs)  # type: ignore[arg-type]
        if replies is None:
            conversations = dataset.prompts(pole, pairs)  # type: ignore[arg-type]
            rows = steered_answers(
                model, tokenizer, conversations, [{}], {}, max_new_tokens=max_new_tokens
            )
            replies = [a.text for a in rows[0]]
        answers[str(label)] = replies
    texts = [(q, a) for q, a in zip(questions, answers["1"], strict=True)]
    texts += [(q, a) for q, a in zip(questions, answers["0"], strict=True)]
    return texts, [1] * len(questions) + [0] * len(questions)


def _read(
    model: nn.Module, tokenizer: Any, texts: Sequence[tuple[str, str]], layers: Any
) -> torch.Tensor:
    """Mean residual over each answer's tokens, read by the unsteered model."""
    if (edits := active_edits(model)) != 0:
        raise RuntimeError(
            f"{edits} steering/ablation/capping hook(s) are active on the model; the probe "
            "judge reads answers with the unsteered model. Remove the hooks first."
        )
    out = capture_at_position(
        model,
        tokenizer,
        [q for q, _ in texts],
        layers,
        "response[:]",
        responses=[a for _, a in texts],
    )
    assert isinstance(out, torch.Tensor)
    return out


def _cross_validate(
    features: np.ndarray, labels: np.ndarray, c: float, folds: int
) -> tuple[float, float]:
    """Stratified cross-validated (log loss, accuracy) of a standardised logistic regression."""
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
    losses, hits = [], 0
    for train, test in split.split(features, labels):
        mean, scale = features[train].mean(0), features[train].std(0) + 1e-6
        clf = LogisticRegression(C=c, max_iter=2000)
        clf.fit((features[train] - mean) / scale, labels[train])
        p = clf.predict_proba((features[test] - mean) / scale)[:, 1].clip(1e-6, 1 - 1e-6)
        y = labels[test]
        losses.append(float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()))
        hits += int(((p > 0.5) == (y == 1)).sum())
    return float(np.mean(losses)), hits / len(labels)


class ProbeJudge:
    """Scores how much an answer reads like a trait's positive pole (see the module docstring).

    Build one with :meth:`fit` (from a trait) or :meth:`fit_texts`; :meth:`save` /
    :meth:`load` keep a fitted judge beside the results it produced.

    Args:
        model: the unsteered model that reads answers.
        tokenizer: its tokenizer.
        state: the fitted probe (layer, weights, bias, standardisation, provenance).
    """

    def __init__(self, model: nn.Module, tokenizer: Any, state: dict[str, Any]) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.state = state
        self.layer = int(state["layer"])
        self._w = torch.tensor(state["weights"], dtype=torch.float64)
        self._mean = torch.tensor(state["mean"], dtype=torch.float64)
        self._scale = torch.tensor(state["scale"], dtype=torch.float64)
        self._bias = float(state["bias"])

    @classmethod
    def fit(
        cls,
        model: nn.Module,
        tokenizer: Any,
        dataset: TraitDataset,
        pairs: Sequence[TraitPair] | None = None,
        **options: Any,
    ) -> ProbeJudge:
        """Fit on ``pairs`` (default: the dataset's training split) of a trait."""
        pairs = list(dataset.split()[0] if pairs is None else pairs)
        max_new = int(options.pop("max_new_tokens", 48))
        texts, labels = labelled_answers(model, tokenizer, dataset, pairs, max_new_tokens=max_new)
        return cls.fit_texts(model, tokenizer, texts, labels, trait=dataset.name, **options)

    @classmethod
    def fit_texts(
        cls,
        model: nn.Module,
        tokenizer: Any,
        texts: Sequence[tuple[str, str]],
        labels: Sequence[int],
        *,
        trait: str,
        layers: Sequence[int] | None = None,
        folds: int = 5,
    ) -> ProbeJudge:
        """Fit on labelled ``(question, answer)`` texts; the layer and C are chosen by CV."""
        y = np.asarray(labels, dtype=np.int64)
        if len(texts) != len(y) or set(y.tolist()) != {0, 1}:
            raise ValueError(
                f"{len(texts)} texts with labels {sorted(set(y.tolist()))}: pass one label "
                "per text, both 1 (positive pole) and 0 (negative) present"
            )
        if min(int(y.sum()), int((1 - y).sum())) < folds:
            raise ValueError(f"each pole needs at least folds={folds} answers to fit the probe")
        readings = _read(model, tokenizer, texts, None)  # [n, layers, hidden]
        candidates = list(range(readings.shape[1])) if layers is None else list(layers)
        scores = {
            (layer, c): _cross_validate(readings[:, layer].double().numpy(), y, c, folds)
            for layer in candidates
            for c in C_GRID
        }
        (layer, c), (loss, cv_accuracy) = min(scores.items(), key=lambda kv: kv[1][0])
        x = readings[:, layer].double().numpy()
        mean, scale = x.mean(0), x.std(0) + 1e-6
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = LogisticRegression(C=c, max_iter=2000).fit((x - mean) / scale, y)
        digest = hashlib.sha256(json.dumps([list(texts), y.tolist()]).encode()).hexdigest()
        state = {
            "trait": trait,
            "model": model_identity(model),
            "layer": layer,
            "C": c,
            "cv_log_loss": loss,
            "cv_accuracy": cv_accuracy,
            "n": len(y),
            "data": digest[:16],
            "weights": clf.coef_[0].tolist(),
            "bias": float(clf.intercept_[0]),
            "mean": mean.tolist(),
            "scale": scale.tolist(),
        }
        return cls(model, tokenizer, state)

    def check_reliable(self, min_accuracy: float = MIN_CV_ACCURACY) -> None:
        """Raise when the probe cannot tell its own training poles apart well enough.

        A ``system_prompt`` trait that the model barely follows gives answers that read alike
        under both system prompts; a probe fitted on them judges noise.
        """
        accuracy = float(self.state["cv_accuracy"])
        if accuracy < min_accuracy:
            raise ValueError(
                f"the probe judge for {self.state['trait']!r} tells the two poles' answers apart "
                f"with cross-validated accuracy {accuracy:.2f} < {min_accuracy} (layer "
                f"{self.layer}): the model's answers for the two poles read alike, so its scores "
                "would be noise. Judge this trait with an LLM judge instead (OpenAIJudge on any "
                "OpenAI-compatible server; `trait-lab evaluate --judge-url URL --judge-model M`)"
            )

    @property
    def identity(self) -> dict[str, Any]:
        """What the judge is: kind, model, trait, layer, C and a hash of its training data."""
        keys = ("trait", "model", "layer", "C", "n", "data")
        return {"kind": "probe", **{k: self.state[k] for k in keys}}

    async def score_trait(self, items: Sequence[JudgeItem]) -> list[float | None]:
        """``100 · P(positive pole)`` per item; ``None`` for an empty answer."""
        return self.probabilities(items)

    async def score_coherence(self, items: Sequence[JudgeItem]) -> list[float | None]:
        """A probe cannot judge coherence: ``None`` for every item (the offline rule decides)."""
        return [None] * len(items)

    def probabilities(self, items: Sequence[JudgeItem]) -> list[float | None]:
        """The trait scores (0–100) of :meth:`score_trait`, synchronously."""
        keep = [i for i, item in enumerate(items) if item.answer.strip()]
        out: list[float | None] = [None] * len(items)
        if keep:
            texts = [(items[i].question, items[i].answer) for i in keep]
            x = _read(self.model, self.tokenizer, texts, self.layer).double()
            logits = ((x - self._mean) / self._scale) @ self._w + self._bias
            for i, p in zip(keep, torch.sigmoid(logits).tolist(), strict=True):
                out[i] = 100.0 * float(p)
        return out

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fitted probe as JSON (atomically)."""
        atomic_write_json(Path(path), PROBE_JUDGE_SCHEMA.stamp(dict(self.state)))

    @classmethod
    def load(cls, path: str | os.PathLike[str], model: nn.Module, tokenizer: Any) -> ProbeJudge:
        """Read a probe written by :meth:`save`; it must have been fitted on this model."""
        state = json.loads(Path(path).read_text())
        PROBE_JUDGE_SCHEMA.check(state, Path(path))
        if state["model"] != model_identity(model):
            raise ValueError(
                f"{path} was fitted on {state['model']}, not on this model "
                f"({model_identity(model)}); fit the judge again for this model"
            )
        return cls(model, tokenizer, state)
