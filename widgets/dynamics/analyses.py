"""The trait-dynamics view's analysis tabs: top activating spans, the difference of two
variants, and trait–trait correlation over tokens.

Each tab computes with the library (:func:`trait_lab.dynamics.top_spans`,
:func:`~trait_lab.dynamics.variant_difference`, :func:`~trait_lab.dynamics.trait_correlation`)
using the view's trait, cleaning and mode (``state()``), and only the tab on show is
recomputed. Errors go to the tab's status line.

Example:
    >>> from trait_lab.testing import tiny_record
    >>> recs = [tiny_record(), tiny_record(seed=1)]
    >>> tabs = Analyses(recs, lambda: {"trait": "t", "clean": "none", "mode": "cosine",
    ...                                "layers": [4, 8], "record": 0})
    >>> tabs.selected_index = 1; tabs.refresh(); [t.name for t in tabs.difference.data] == []
    False
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as w
import plotly.graph_objects as go

from trait_lab.dynamics import (
    ALIGNMENTS,
    PARTS,
    ProjectionRecord,
    top_spans,
    trait_correlation,
    variant_difference,
)
from widgets.common.figures import replace_figure
from widgets.dynamics.analysis_figures import correlation_figure, difference_figure, spans_table
from widgets.dynamics.panels import VALUE_TITLES, record_label

__all__ = ["TABS", "Analyses"]

TABS: tuple[str, ...] = ("top spans", "difference", "correlation")


class Analyses(w.Tab):
    """Tabs over ``records`` (the view's list, shared: live runs appear here too).

    ``state()`` returns the view's ``trait``, ``clean``, ``mode``, selected ``layers`` and
    current ``record`` index. ``compare`` picks the difference tab's records A and B.
    """

    def __init__(
        self,
        records: list[ProjectionRecord],
        state: Callable[[], dict[str, Any]],
        compare: Sequence[int] | None = None,
    ) -> None:
        self.records, self._state = records, state
        small = {"description_width": "initial"}
        self.span_layer = w.Dropdown(description="layer", layout=w.Layout(width="150px"))
        self.span_width = w.IntSlider(value=3, min=1, max=12, description="width", style=small)
        self.span_k = w.IntSlider(value=5, min=1, max=20, description="top k", style=small)
        self.span_part = w.ToggleButtons(options=list(PARTS), value="response")
        self.span_lowest = w.Checkbox(value=False, description="lowest (negative pole)")
        self.spans = w.HTML("")
        self.diff_a = w.Dropdown(description="A", layout=w.Layout(width="300px"))
        self.diff_b = w.Dropdown(description="B", layout=w.Layout(width="300px"))
        self.diff_align = w.ToggleButtons(options=list(ALIGNMENTS), value="response")
        self.difference = go.FigureWidget()
        self.corr_layer = w.Dropdown(description="layer", layout=w.Layout(width="150px"))
        self.corr_scope = w.ToggleButtons(
            options=["this record", "all records"], value="all records"
        )
        self.corr_part = w.ToggleButtons(options=list(PARTS), value="response")
        self.correlation = go.FigureWidget()
        self.status = w.HTML("").add_class("tl-analysis-status")
        self._pair = tuple(compare) if compare is not None else (0, 1)
        wrap = w.Layout(flex_flow="row wrap")
        pages = [
            w.VBox(
                [
                    w.HBox([self.span_layer, self.span_width, self.span_k], layout=wrap),
                    w.HBox([self.span_part, self.span_lowest], layout=wrap),
                    self.spans,
                ]
            ),
            w.VBox(
                [
                    w.HBox([self.diff_a, self.diff_b, self.diff_align], layout=wrap),
                    w.Box([self.difference]).add_class("tl-difference-figure"),
                ]
            ),
            w.VBox(
                [
                    w.HBox([self.corr_layer, self.corr_scope, self.corr_part], layout=wrap),
                    w.Box([self.correlation]).add_class("tl-correlation-figure"),
                ]
            ),
        ]
        super().__init__(pages, titles=list(TABS))
        self.add_class("tl-analyses")
        names = "span_layer span_width span_k span_part span_lowest spans diff_a diff_b "
        for name in (names + "diff_align corr_layer corr_scope corr_part").split():
            getattr(self, name).add_class(f"tl-{name.replace('_', '-')}")
        self._busy = False
        for name in (names + "diff_align corr_layer corr_scope corr_part").split():
            if name != "spans":
                getattr(self, name).observe(lambda _: self.refresh(), "value")
        self.observe(lambda _: self.refresh(), "selected_index")

    # --- computing the tab on show ----------------------------------------------------------

    def refresh(self) -> None:
        """Recompute the tab on show from the view's state (errors go to ``status``)."""
        if self._busy or not self.records:
            return
        self._busy = True
        try:
            state = self._state()
            [self._spans, self._difference, self._correlation][self.selected_index or 0](state)
            self.status.value = ""
        except (ValueError, KeyError) as exc:
            message = html.escape(str(exc).strip("\"'"))
            self.status.value = f"<span style='color:#b00020'>{message}</span>"
        finally:
            self._busy = False

    @staticmethod
    def _set(dropdown: w.Dropdown, options: list[Any], default: Any) -> None:
        keep = dropdown.value
        values = [o[1] if isinstance(o, tuple) else o for o in options]
        if list(dropdown.options) != options:
            dropdown.options = options
        dropdown.value = keep if keep in values else default

    def _spans(self, state: dict[str, Any]) -> None:
        trait = state["trait"]
        have = [r for r in self.records if trait in r.projections]
        layers = sorted(set.intersection(*(set(r.projections[trait]) for r in have)))
        if not layers:
            raise ValueError(f"no layer of trait {trait!r} is in every record")
        self._set(self.span_layer, [(f"L{x}", x) for x in layers], max(layers))
        spans = top_spans(
            self.records,
            trait,
            self.span_layer.value,
            width=self.span_width.value,
            k=self.span_k.value,
            clean=state["clean"],
            mode=state["mode"],
            part=self.span_part.value,
            lowest=self.span_lowest.value,
        )
        labels = [record_label(r, 40) for r in self.records]
        self.spans.value = spans_table(spans, labels, VALUE_TITLES[state["mode"]])

    def _difference(self, state: dict[str, Any]) -> None:
        options = [(f"{i}: {record_label(r, 36)}", i) for i, r in enumerate(self.records)]
        a, b = self._pair
        self._set(self.diff_a, options, a if a < len(options) else 0)
        self._set(self.diff_b, options, b if b < len(options) else len(options) - 1)
        if len(self.records) < 2:
            raise ValueError("the difference needs two records (or variants): pass both")
        a, b = self.diff_a.value, self.diff_b.value
        if a == b:
            raise ValueError("A and B are the same record; pick two different ones")
        trait = state["trait"]
        diff = variant_difference(
            self.records[a],
            self.records[b],
            trait,
            align=self.diff_align.value,
            skip=state.get("skip", 0),
            clean=state["clean"],
            mode=state["mode"],
        )
        title = (
            f"{trait} · A − B · {state['mode']} · aligned at {self.diff_align.value}<br><sup>"
            f"A = {a}: {html.escape(record_label(self.records[a], 40))} · "
            f"B = {b}: {html.escape(record_label(self.records[b], 40))}</sup>"
        )
        replace_figure(self.difference, difference_figure(diff, title, "A − B"))

    def _correlation(self, state: dict[str, Any]) -> None:
        records = (
            self.records
            if self.corr_scope.value == "all records"
            else [self.records[state["record"]]]
        )
        layers = sorted({x for r in records for per in r.projections.values() for x in per})
        self._set(self.corr_layer, [(f"L{x}", x) for x in layers], max(layers))
        names, r = trait_correlation(
            records,
            self.corr_layer.value,
            clean=state["clean"],
            mode=state["mode"],
            part=self.corr_part.value,
        )
        title = (
            f"trait–trait correlation over {self.corr_part.value} tokens · "
            f"L{self.corr_layer.value} · {state['mode']} · {self.corr_scope.value}"
        )
        replace_figure(self.correlation, correlation_figure(names, r, title))
