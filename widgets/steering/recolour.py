"""Re-project texts the panel already generated onto another trait or layer: one forward pass
over prompt + generated tokens, with the same steering hooks the generation used, and no
regeneration.

The hooks are the generator's own (``StepHooks``) with the same absolute positions, so a
token's cosine is the one generation with that colour layer would have streamed (up to float
rounding: one full forward instead of the KV-cached steps).

Example:
    >>> from trait_lab.testing import tiny_model, tiny_tokenizer
    >>> from trait_lab.generation import LocalBackend, ProjectionSpec
    >>> import torch
    >>> backend = LocalBackend(tiny_model(), tiny_tokenizer(), use_chat_template=False)
    >>> spec = ProjectionSpec({1: torch.ones(32)})
    >>> [len(r) for r in reproject(backend, "hi", [[5, 6, 7], [8]], [], spec, 1)]
    [3, 1]
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace

import torch

from trait_lab.generation import LocalBackend, ProjectionSpec, SteeringSpec, StepHooks
from trait_lab.models import padded_positions
from widgets.steering.rows import Request, Row, token_cosine


def reproject(
    backend: LocalBackend,
    prompt: str,
    rows: Sequence[Sequence[int]],
    specs: Sequence[SteeringSpec],
    projection: ProjectionSpec,
    layer: int,
) -> list[list[float]]:
    """Cosine of each generated token with the projection's vector at ``layer``, per row.

    Args:
        rows: each row's generated token ids (row ``i`` is batch row ``i``, as generated).
        specs: the steering the rows were generated with (``rows=`` selects batch rows).
        projection: ``ProjectionSpec({layer: vector})``.
    """
    head = backend.encode([prompt])["input_ids"][0].tolist()  # as stream() encodes it
    length = max(len(r) for r in rows)
    pad = backend.tokenizer.pad_token_id or 0
    ids = torch.tensor([head + list(r) + [pad] * (length - len(r)) for r in rows])
    mask = torch.ones_like(ids)  # pads only follow a row's tokens: causal, never seen by them
    model = backend.model
    hooks = StepHooks(model, len(rows), len(head), None, list(specs), projection)
    with hooks, torch.no_grad():
        model(
            input_ids=ids.to(backend.device),
            attention_mask=mask.to(backend.device),
            position_ids=padded_positions(mask).to(backend.device),
        )
    fields = hooks.collect(0)
    scores, norms = fields["prompt_projections"][layer], fields["prompt_norms"][layer]
    out = []
    for i, row in enumerate(rows):
        at = slice(len(head), len(head) + len(row))
        pairs = zip(scores[i, at].tolist(), norms[i, at].tolist(), strict=True)
        out.append([token_cosine(p, n) for p, n in pairs])
    return out


def recolour_rows(
    backend: LocalBackend,
    rows: Mapping[str, Row],
    keys: Sequence[str],
    request: Request,
    projection: ProjectionSpec,
    lock: threading.Lock,
) -> None:
    """Give the panel's rows ``keys`` (``"baseline"``, ``"steered"``) the cosines of
    ``request.colour``; the steered row is re-run with ``request.specs``, the baseline without.

    A row whose tokens changed meanwhile (a newer run started) is left alone.
    """
    with lock:
        ids = [list(rows[k].ids) for k in keys]
    steered = [i for i, k in enumerate(keys) if k == "steered"]
    specs = [replace(s, rows=steered) for s in request.specs] if steered else []
    layer = request.colour[1]
    cosines = reproject(backend, request.prompt, ids, specs, projection, layer)
    with lock:
        for key, row_ids, scores in zip(keys, ids, cosines, strict=True):
            row = rows[key]
            if row.ids == row_ids:
                row.pieces = [[text, c] for (text, _), c in zip(row.pieces, scores, strict=True)]
                row.colour = request.colour
