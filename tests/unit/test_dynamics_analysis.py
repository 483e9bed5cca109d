"""The analyses of the trait-dynamics view against independent numpy formulas.

Records come from a tiny random model (``project_prompts``); every expected value is computed
here from the record's raw fields (projections, norms, dim values) with plain numpy loops,
not with the library's helpers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.helpers import CALIBRATION, make_tokenizer
from trait_lab.dynamics import (
    activation_magnitude,
    dims_to_clean,
    pearson_rows,
    skip_first,
    top_spans,
    trait_correlation,
    trait_matrix,
    variant_difference,
    velocity,
)
from trait_lab.dynamics.inference import project_prompts
from trait_lab.testing import tiny_model

PROMPTS = ["hello how are you", "the cat sat on the mat", "hello the cat"]


@pytest.fixture(scope="module")
def records():
    gen = torch.Generator().manual_seed(5)
    traits = {
        "t": {layer: torch.randn(32, generator=gen) for layer in (0, 1, 2)},
        "u": {layer: torch.randn(32, generator=gen) for layer in (1, 2)},
        "w": {layer: torch.randn(32, generator=gen) for layer in (1, 2)},
    }
    return project_prompts(
        tiny_model(), make_tokenizer(), PROMPTS, traits, CALIBRATION, max_new_tokens=8
    )


def cosine(record, trait: str, layer: int) -> np.ndarray:
    """Uncleaned cosine from the record's raw fields."""
    s = np.array(record.projections[trait][layer])
    n = np.array(record.norms[layer])
    return s / n


class TestSkipFirst:
    def test_normalized_mean_and_colour_range_lose_the_first_token(self, records) -> None:
        rec = records[0]
        for skip in (0, 1, 3):
            layers, values, norms = trait_matrix(rec, "t", mode="normalized", skip=skip)
            for row, layer in enumerate(layers):
                s = np.array(rec.projections["t"][layer])[skip:]
                n = np.array(rec.norms[layer])[skip:]
                response = np.arange(skip, rec.n_tokens) >= rec.boundary
                np.testing.assert_allclose(values[row], s / n[response].mean())
                np.testing.assert_allclose(norms[row], n)
            assert values.shape == (3, rec.n_tokens - skip)

    def test_boundary_moves_and_smoothing_stops_there(self, records) -> None:
        rec = records[1]
        _, smoothed, _ = trait_matrix(rec, "t", mode="raw", smoothing=3, skip=2, layers=[1])
        s = np.array(rec.projections["t"][1])[2:]
        b = rec.boundary - 2
        expected = np.empty_like(s)
        for i in range(len(s)):
            lo, hi = (0, b) if i < b else (b, len(s))
            expected[i] = s[max(i - 1, lo) : min(i + 2, hi)].mean()
        np.testing.assert_allclose(smoothed[0], expected)

    def test_bad_n(self) -> None:
        x = np.ones(3)
        with pytest.raises(ValueError, match=r"n=3 would drop all 3 tokens; pass n between 0"):
            skip_first(x, x, 1, 3)
        with pytest.raises((ValueError, TypeError), match="n"):
            skip_first(x, x, 1, -1)
        assert skip_first(x, x, 1, 2)[2] == 0


class TestVelocityAndMagnitude:
    def test_velocity_is_the_first_difference(self, records) -> None:
        rec = records[0]
        x = cosine(rec, "t", 1)
        expected = [x[i + 1] - x[i] for i in range(len(x) - 1)]
        np.testing.assert_allclose(velocity(x), expected)
        _, values, _ = trait_matrix(rec, "t")
        np.testing.assert_allclose(velocity(values)[2], np.diff(cosine(rec, "t", 2)))
        with pytest.raises(ValueError, match="at least 2 tokens"):
            velocity(np.array([1.0]))

    @pytest.mark.parametrize("clean", ["none", "top5", "all"])
    def test_magnitude_is_the_residual_norm_without_the_cleaned_dims(self, records, clean) -> None:
        rec = records[2]
        layers, norms = activation_magnitude(rec, clean=clean, skip=1)
        assert layers == sorted(rec.norms)
        dims = dims_to_clean(CALIBRATION, clean)
        for row, layer in enumerate(layers):
            n = np.array(rec.norms[layer])
            vals = np.array(rec.dim_values[layer])[:, [rec.candidate_dims.index(d) for d in dims]]
            expected = np.sqrt(np.maximum(n**2 - (vals**2).sum(1), 0))[1:]
            np.testing.assert_allclose(norms[row], expected)
        with pytest.raises(KeyError, match=r"no layer 9 in this record; layers: \[0, 1, 2\]"):
            activation_magnitude(rec, [9])


def brute_spans(records, trait, layer, width, part):
    """Every window (record, start, mean), by loops."""
    out = []
    for i, rec in enumerate(records):
        x = cosine(rec, trait, layer)
        first = rec.boundary if part == "response" else 0
        for start in range(first, rec.n_tokens - width + 1):
            out.append((i, start, float(np.mean(x[start : start + width]))))
    return out


class TestTopSpans:
    @pytest.mark.parametrize("part", ["response", "all"])
    def test_overlapping_top_k_equals_brute_force(self, records, part) -> None:
        brute = sorted(brute_spans(records, "u", 2, 3, part), key=lambda s: -s[2])[:5]
        spans = top_spans(records, "u", 2, width=3, k=5, part=part, overlap=True)
        assert [(s.record, s.start) for s in spans] == [(r, st) for r, st, _ in brute]
        np.testing.assert_allclose([s.mean for s in spans], [m for *_, m in brute])
        for s in spans:
            assert s.tokens == records[s.record].tokens[s.start : s.stop]

    def test_non_overlapping_and_lowest(self, records) -> None:
        spans = top_spans(records, "t", 0, width=2, k=20)
        for a in spans:
            for b in spans:
                if a is not b and a.record == b.record:
                    assert a.stop <= b.start or b.stop <= a.start
        means = [s.mean for s in spans]
        assert means == sorted(means, reverse=True)
        best = max(brute_spans(records, "t", 0, 2, "response"), key=lambda s: s[2])
        assert (spans[0].record, spans[0].start) == best[:2]
        low = top_spans(records, "t", 0, width=2, k=1, lowest=True)[0]
        worst = min(brute_spans(records, "t", 0, 2, "response"), key=lambda s: s[2])
        assert (low.record, low.start) == worst[:2]

    def test_bad_input(self, records) -> None:
        with pytest.raises(ValueError, match="unknown part 'middle'"):
            top_spans(records, "t", 0, part="middle")
        with pytest.raises((ValueError, TypeError), match="width"):
            top_spans(records, "t", 0, width=0)
        assert top_spans(records, "t", 0, width=999) == []


class TestVariantDifference:
    def test_start_alignment(self, records) -> None:
        a, b = records[0], records[1]
        d = variant_difference(a, b, "u", align="start")
        n = min(a.n_tokens, b.n_tokens)
        assert d.layers == [1, 2] and d.values.shape == (2, n)
        for row, layer in enumerate(d.layers):
            np.testing.assert_allclose(
                d.values[row], cosine(a, "u", layer)[:n] - cosine(b, "u", layer)[:n]
            )
        ids_a, ids_b = a.prompt_ids + a.response_ids, b.prompt_ids + b.response_ids
        assert d.same.tolist() == [ids_a[i] == ids_b[i] for i in range(n)]

    def test_response_alignment_pairs_response_tokens(self, records) -> None:
        a, b = records[1], records[2]
        d = variant_difference(a, b, "t", align="response", layers=[0])
        before = min(a.boundary, b.boundary)
        after = min(a.n_tokens - a.boundary, b.n_tokens - b.boundary)
        x, y = cosine(a, "t", 0), cosine(b, "t", 0)
        expected = [x[a.boundary + i] - y[b.boundary + i] for i in range(-before, after)]
        np.testing.assert_allclose(d.values[0], expected)
        assert d.boundary == before
        assert d.tokens_a[before] == a.response_tokens[0]
        assert d.tokens_b[before] == b.response_tokens[0]

    @pytest.mark.parametrize("align", ["start", "response"])
    def test_skip_drops_the_first_paired_positions(self, records, align) -> None:
        a, b = records[1], records[2]
        full = variant_difference(a, b, "t", align=align)
        cut = variant_difference(a, b, "t", align=align, skip=2)
        drop = max(2 - full.start_a, 2 - full.start_b, 0)
        np.testing.assert_array_equal(cut.values, full.values[:, drop:])
        assert min(cut.start_a, cut.start_b) == max(2, min(full.start_a, full.start_b))
        assert cut.tokens_a == full.tokens_a[drop:]
        assert cut.boundary == max(full.boundary - drop, 0)
        with pytest.raises(ValueError, match="skip=99 leaves no paired position"):
            variant_difference(a, b, "t", skip=99)

    def test_same_record_differs_by_zero_and_bad_input(self, records) -> None:
        d = variant_difference(records[0], records[0], "t", mode="raw", clean="all")
        assert not d.values.any() and d.same.all()
        with pytest.raises(ValueError, match="unknown align 'end'"):
            variant_difference(records[0], records[1], "t", align="end")
        with pytest.raises(ValueError, match=r"layers of trait 'u' in both: \[1, 2\]"):
            variant_difference(records[0], records[1], "u", layers=[0])
        with pytest.raises(KeyError, match=r"record a has no trait 'x'; traits: \['t', 'u', 'w'\]"):
            variant_difference(records[0], records[1], "x")


class TestCorrelation:
    @pytest.mark.parametrize("part", ["response", "all"])
    def test_equals_numpy_corrcoef_over_pooled_tokens(self, records, part) -> None:
        names, r = trait_correlation(records, 2, part=part)
        assert names == ["t", "u", "w"]
        pooled = []
        for rec in records:
            first = rec.boundary if part == "response" else 0
            pooled.append(np.stack([cosine(rec, t, 2)[first:] for t in names]))
        np.testing.assert_allclose(r, np.corrcoef(np.concatenate(pooled, 1)), atol=1e-12)

    def test_constant_trait_is_nan_off_the_diagonal(self) -> None:
        x = np.array([[1.0, 2.0, 4.0], [5.0, 5.0, 5.0], [3.0, 1.0, 0.0]])
        r = pearson_rows(x)
        assert np.isnan(r[0, 1]) and np.isnan(r[1, 2]) and r[1, 1] == 1.0
        np.testing.assert_allclose(r[[0, 2]][:, [0, 2]], np.corrcoef(x[[0, 2]]))

    def test_bad_input(self, records) -> None:
        with pytest.raises(ValueError, match="at least one record"):
            trait_correlation([], 1)
        with pytest.raises(ValueError, match=r"lack layer 0 in some record; .* \['t'\]"):
            trait_correlation(records, 0, traits=["t", "u"])
