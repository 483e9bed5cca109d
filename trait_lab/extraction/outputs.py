"""Reading an extraction's outputs back: ``ExtractionSummary``.

The files are described in :mod:`trait_lab.extraction.pipeline`; their paths come from
:mod:`trait_lab.core.paths` (``extraction_dir`` and ``vector_path`` are re-exported here).

Example:
    >>> vector_path(Path("out"), "residual", "probe", 12).as_posix()
    'out/vectors/residual/probe/layer_12.safetensors'
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file

from trait_lab.core.paths import activations_path, extraction_dir, vector_path
from trait_lab.io.vectors import load_vector
from trait_lab.math.linalg import batch_cosine_similarity

__all__ = ["INPUTS", "ExtractionSummary", "extraction_dir", "vector_path"]

INPUTS = "inputs.json"


@dataclass
class ExtractionSummary:
    """Where the outputs are and the metrics table."""

    out_dir: Path
    metrics: pd.DataFrame
    computed: int = 0
    skipped: int = 0
    notes: list[str] = field(default_factory=list)

    def best(self, method: str | None = None, component: str = "residual") -> pd.Series:
        """The row with the largest validation effect size among polarity-correct rows."""
        rows = self.metrics[self.metrics["component"] == component]
        if method is not None:
            rows = rows[rows["method"] == method]
        rows = rows[rows["val_polarity_correct"]]
        if rows.empty:
            raise ValueError(f"no polarity-correct rows for method={method!r}, {component!r}")
        return rows.loc[rows["val_effect_size"].idxmax()]

    def vector_path(self, method: str, layer: int, component: str = "residual") -> Path:
        return vector_path(self.out_dir, component, method, layer)

    def best_by_method(self, component: str = "residual") -> pd.DataFrame:
        """One row per method: its best layer by validation effect size, with its metrics.

        When the random baseline ran, ``random_baseline_accuracy`` gives its held-out accuracy
        at the same layer (the random baseline's own row shows the best of its per-layer
        random directions, which is above chance by selection alone).
        """
        rows = self.metrics[self.metrics["component"] == component]
        best = rows.loc[rows.groupby("method")["val_effect_size"].idxmax()]
        columns = ["method", "layer", "val_accuracy", "val_effect_size", "val_polarity_correct"]
        table = best[columns].sort_values("val_effect_size", ascending=False)
        random = rows[rows["method"] == "random_baseline"].set_index("layer")["val_accuracy"]
        if not random.empty:
            # a random direction at the same layer: the chance level to compare against
            table["random_baseline_accuracy"] = table["layer"].map(random)
        return table.reset_index(drop=True)

    def validation_scores(
        self, method: str, layer: int, component: str = "residual"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cosine scores of the validation pairs' positive and negative examples on a vector."""

        inputs = json.loads((self.out_dir / INPUTS).read_text())
        layers = inputs["settings"]["layers"] or list(range(inputs["model"]["n_layers"]))
        acts = load_file(str(activations_path(self.out_dir, component)))
        val = torch.tensor([inputs["pair_ids"].index(pid) for pid in inputs["split"]["val"]])
        vector = load_vector(self.vector_path(method, layer, component))
        assert isinstance(vector, torch.Tensor)
        li = list(layers).index(layer)
        pos, neg = acts["pos"][val, li].float(), acts["neg"][val, li].float()
        return batch_cosine_similarity(pos, vector), batch_cosine_similarity(neg, vector)
