"""TraitDynamics: per-token trait projections of projection records, as an interactive view.

Every number in the figure comes from :func:`trait_lab.dynamics.matrix.trait_matrix` (through
:mod:`widgets.dynamics.panels`), so what the view shows is what the library computes. Under the
heatmap, velocity and activation-magnitude panels (:mod:`widgets.dynamics.details`); below them,
tabs with the top activating spans, the difference of two records and the trait–trait
correlation (:mod:`widgets.dynamics.analyses`). Live mode adds a prompt box and a Run button
that project a new prompt with :func:`trait_lab.dynamics.inference.project_prompts` and show it.

Example:
    >>> from trait_lab.testing import tiny_record
    >>> rec = tiny_record(layers=[4])
    >>> view = TraitDynamics([rec])
    >>> view.clean.value = "all"  # a key; the dropdown shows its label, "All candidates"
    >>> view.shown().rows
    ['L4']
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as w
import plotly.graph_objects as go

from trait_lab.core import check_int
from trait_lab.dynamics import (
    MODES,
    ProjectionRecord,
    activation_magnitude,
    check_clean_option,
    project_prompts,
)
from widgets.common.export import ExportBar, default_stem
from widgets.common.figures import replace_figure
from widgets.dynamics.analyses import Analyses
from widgets.dynamics.controls import (
    MAX_SKIP,
    SMOOTHING_WINDOWS,
    RecordLike,
    as_record,
    check_live,
    choose,
    make_controls,
)
from widgets.dynamics.details import details_figure
from widgets.dynamics.figures import VIEWS, Shown, draw, read
from widgets.dynamics.panels import Panel, layers_panel, record_label, traits_panel

__all__ = ["SMOOTHING_WINDOWS", "RecordLike", "TraitDynamics"]


class TraitDynamics(w.VBox):
    """Records × traits × layers × tokens as a heatmap or lines, with a Clean dropdown.

    Args:
        records: projection records, or paths to record files (read with ``load_record``).
        trait: the trait shown first (default: the first record's first trait).
        clean: a key of ``CLEAN_OPTIONS``: ``"none"``, ``"top5"`` (recommended) or ``"all"``;
            the Clean dropdown shows their labels (``CLEAN_LABELS``).
        mode: ``"raw"``, ``"normalized"`` or ``"cosine"``.
        view: one of ``VIEWS`` (``"tokens × layers"``, ``"tokens × traits"``, ``"lines"``).
        smoothing: the first smoothing window (1, 3, 5, 7 or 9).
        centre: the first centring.
        model: live mode: give ``model``, ``tokenizer``, ``traits`` and ``calibration``, all
            four, for a prompt box and a Run button (see :meth:`live`).
        tokenizer: live mode (with ``model``, ``traits`` and ``calibration``).
        traits: live mode (with ``model``, ``tokenizer`` and ``calibration``):
            ``{name: {layer: vector}}``.
        calibration: live mode (with ``model``, ``tokenizer`` and ``traits``).
        max_new_tokens: response length in live mode.
        export_stem: default path (without extension) of the export bar (default
            ``figures/trait-dynamics_<trait>``).
        skip: the first "skip first N tokens" value (drops them from values, colour range and
            the normalized mean).
        details: show the velocity and activation-magnitude panels under the heatmap.
        compare: ``(a, b)`` record indices for the difference tab (default ``(0, 1)``).
        sampling: how the records' responses were sampled (one text for all, or one per
            record), shown in the titles; live runs say ``"greedy, ≤ N new tokens"``.

    Controls are attributes (``record``, ``trait``, ``view``, ``clean``, ``mode``,
    ``smoothing``, ``centre``, ``skip``, ``layers``, ``layer``); set their ``.value`` to drive
    the view from Python (``clean.value`` is a key, ``clean.label`` the label shown).
    ``figure`` is the plotly ``FigureWidget`` and :meth:`shown` what it shows; ``details`` the
    velocity / magnitude figure; ``analyses`` the tabs.

    Example:
        >>> from trait_lab.testing import tiny_record
        >>> rec = tiny_record(layers=[4])
        >>> TraitDynamics([rec], trait="x")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: unknown trait 'x'; choose one of ['t'] (...)
    """

    def __init__(
        self,
        records: Sequence[RecordLike] | RecordLike = (),
        *,
        trait: str | None = None,
        clean: str = "none",
        mode: str = "cosine",
        view: str = "tokens × layers",
        smoothing: int = 1,
        centre: bool = False,
        model: Any = None,
        tokenizer: Any = None,
        traits: Mapping[str, Any] | None = None,
        calibration: Mapping[str, Any] | None = None,
        max_new_tokens: int = 32,
        export_stem: str | None = None,
        skip: int = 0,
        details: bool = True,
        compare: tuple[int, int] | None = None,
        sampling: str | Sequence[str | None] | None = None,
    ) -> None:
        if isinstance(records, ProjectionRecord | str | os.PathLike):
            records = [records]
        self.records: list[ProjectionRecord] = [as_record(r, i) for i, r in enumerate(records)]
        live = dict(model=model, tokenizer=tokenizer, traits=traits, calibration=calibration)
        given = [k for k, v in live.items() if v is not None]
        if given and len(given) < len(live):
            missing = [k for k in live if k not in given]
            raise ValueError(
                f"live mode needs model, tokenizer, traits and calibration; {missing} missing "
                "(pass all four, or none to show records only)"
            )
        self._live = live if given else None
        if self._live is not None:
            check_live(model, self._live["traits"])
        self._max_new_tokens = check_int("TraitDynamics", "max_new_tokens", max_new_tokens, 1)
        if not self.records and self._live is None:
            raise ValueError(
                "no records to show; pass TraitDynamics([record, ...]) with ProjectionRecords or "
                "paths from run_inference(...), or use TraitDynamics.live(model, tokenizer, "
                "traits, calibration) to type prompts"
            )
        check_clean_option(clean)
        choose("mode", mode, MODES, "mode=")
        choose("view", view, VIEWS, "view=")
        choose("smoothing window", smoothing, SMOOTHING_WINDOWS, "smoothing=")
        check_int("TraitDynamics", "skip", skip, 0)
        self._sampling = self._sampling_list(sampling)
        if trait is not None:
            first = self.records[0].projections if self.records else live["traits"]
            choose("trait", trait, sorted(first), "trait= names a trait of the first record")
        self._syncing = False
        self._build_controls(clean, mode, view, smoothing, centre, skip)
        self.status = w.HTML("").add_class("tl-status")
        self.figure = go.FigureWidget()
        self.details = go.FigureWidget()
        self.analyses = Analyses(self.records, self._state, compare)
        stem = export_stem or default_stem("trait-dynamics", self.trait.value)
        self.export_bar = ExportBar(lambda: self.figure, stem)
        wrap = w.Layout(flex_flow="row wrap")
        body = [
            w.HBox([self.record, self.trait, self.layer], layout=wrap).add_class("tl-row"),
            w.HBox([self.view, self.clean, self.mode], layout=wrap).add_class("tl-row"),
            w.HBox([self.smoothing, self.centre, self.skip, self.layers], layout=wrap).add_class(
                "tl-row"
            ),
        ]
        if self._live is not None:
            self.prompt = w.Text(placeholder="type a prompt", layout=w.Layout(width="420px"))
            self.run_button = w.Button(description="Run", icon="play")
            self.prompt.add_class("tl-prompt")
            self.run_button.add_class("tl-run")
            self.run_button.on_click(lambda _: self.run())
            body.insert(0, w.HBox([self.prompt, self.run_button]).add_class("tl-row"))
        wrapper = w.Box([self.figure]).add_class("tl-dynamics-figure")
        under = w.Box([self.details]).add_class("tl-dynamics-details")
        under.layout.display = None if details else "none"
        self._details_on = details
        tail = [self.status, wrapper, under, self.export_bar, self.analyses.status, self.analyses]
        super().__init__([*body, *tail])
        self.add_class("tl-trait-dynamics")
        self._set_record_options(0 if self.records else None, trait)

    @classmethod
    def live(
        cls,
        model: Any,
        tokenizer: Any,
        traits: Mapping[str, Any],
        calibration: Mapping[str, Any],
        records: Sequence[RecordLike] = (),
        **kwargs: Any,
    ) -> TraitDynamics:
        """A view with a prompt box: Run projects the prompt and shows the new record.

        A trait vector that is not ``[hidden size]`` of ``model``, complex, NaN or all zeros is
        refused here, naming the trait and layer, before anything is generated.

        Example:
            >>> view = TraitDynamics.live(model, tok, {"t": {4: v}}, cal)  # doctest: +SKIP
            >>> view.prompt.value = "Hello!"; view.run()  # doctest: +SKIP
        """
        return cls(
            records,
            model=model,
            tokenizer=tokenizer,
            traits=traits,
            calibration=calibration,
            **kwargs,
        )

    def _sampling_list(self, sampling: str | Sequence[str | None] | None) -> list[str | None]:
        if sampling is None or isinstance(sampling, str):
            return [sampling] * len(self.records)
        if len(sampling) != len(self.records):
            raise ValueError(
                f"sampling has {len(sampling)} entries for {len(self.records)} records; pass one "
                "text for all records or one per record"
            )
        return list(sampling)

    # --- controls ---------------------------------------------------------------------------

    def _build_controls(
        self, clean: str, mode: str, view: str, smoothing: int, centre: bool, skip: int
    ) -> None:
        for name, control in make_controls(clean, mode, view, smoothing, centre, skip).items():
            setattr(self, name, control)
        self.record.observe(self._on_record, "value")
        self.trait.observe(self._on_trait, "value")
        self.view.observe(self._on_view, "value")
        self.smoothing.observe(self._on_smoothing, "value")
        for control in (self.layer, self.clean, self.mode, self.centre, self.skip, self.layers):
            control.observe(lambda _: self.refresh(), "value")

    @property
    def current(self) -> ProjectionRecord:
        """The record the view shows."""
        if self.record.value is None:
            raise ValueError("no record yet; type a prompt and press Run, or pass records")
        return self.records[self.record.value]

    def _state(self) -> dict[str, Any]:
        return {
            "trait": self.trait.value,
            "clean": self.clean.value,
            "mode": self.mode.value,
            "layers": sorted(self.layers.value),
            "record": self.record.value or 0,
            "skip": int(self.skip.value),
        }

    def _set_record_options(self, index: int | None, trait: str | None = None) -> None:
        options = [(f"{i}: {record_label(r)}", i) for i, r in enumerate(self.records)]
        self._syncing = True
        try:
            self.record.options = options
            self.record.value = index
        finally:
            self._syncing = False
        self._on_record(None, trait)

    def _on_record(self, _: Any, trait: str | None = None) -> None:
        if self._syncing or self.record.value is None:
            return
        rec = self.current
        names = sorted(rec.projections)
        keep = trait or self.trait.value
        layers = sorted({lay for per in rec.projections.values() for lay in per})
        self._syncing = True
        try:
            self.trait.options = names
            self.trait.value = keep if keep in names else names[0]
            self.layer.options = [(f"L{lay}", lay) for lay in layers]
            self.layer.value = self.layer.value if self.layer.value in layers else layers[0]
            self.skip.max = max(0, min(MAX_SKIP, rec.n_tokens - 1))
            self._set_layers()
        finally:
            self._syncing = False
        self._on_view(None)

    def _set_layers(self) -> None:
        available = sorted(self.current.projections[self.trait.value])
        before, options = set(self.layers.value), set(self.layers.options)
        keep = [lay for lay in available if lay in before]
        if not keep or (before == options and set(available) != options):
            keep = available  # all layers were shown: keep showing all of the new trait's
        with self.layers.hold_sync():  # one message: the page never sees an index of old rows
            self.layers.value = ()
            self.layers.options = [(f"L{lay}", lay) for lay in available]
            self.layers.rows = max(2, min(len(available), 16))  # every layer visible
            self.layers.value = tuple(keep)

    def _on_trait(self, _: Any) -> None:
        if self._syncing or self.trait.value is None:
            return
        self._syncing = True
        try:
            self._set_layers()
        finally:
            self._syncing = False
        self.refresh()

    def _on_view(self, _: Any) -> None:
        by_traits = self.view.value == "tokens × traits"
        self.layer.layout.display = None if by_traits else "none"
        self.trait.layout.display = "none" if by_traits else None
        self.layers.layout.display = "none" if by_traits else None
        self.refresh()

    def _on_smoothing(self, change: Any) -> None:
        if change["new"] % 2 == 0:  # the slider steps by 2, but Python may set any int
            self.smoothing.value = min(change["new"] + 1, SMOOTHING_WINDOWS[-1])
            return
        self.refresh()

    # --- figure -----------------------------------------------------------------------------

    def panel(self) -> Panel:
        """What the controls ask for, computed with ``trait_matrix`` (not yet drawn)."""
        index = self.record.value or 0
        options = dict(
            clean=self.clean.value,
            mode=self.mode.value,
            smoothing=int(self.smoothing.value),
            centre=bool(self.centre.value),
            skip=int(self.skip.value),
            sampling=self._sampling[index] if index < len(self._sampling) else None,
        )
        if self.view.value == "tokens × traits":
            return traits_panel(self.current, self.layer.value, **options)
        if not self.layers.value:
            raise ValueError("no layers selected; select at least one in the layers list")
        return layers_panel(
            self.current,
            self.trait.value,
            kind=self.view.value,
            layers=sorted(self.layers.value),
            **options,
        )

    def refresh(self) -> None:
        """Redraw the figures in place from the controls (called on every control change)."""
        if self._syncing or self.record.value is None:
            return
        try:
            panel = self.panel()
        except (ValueError, KeyError) as exc:
            self._say(str(exc).strip("\"'"), error=True)
            return
        draw(self.figure, panel)
        if self._details_on:
            by_traits = self.view.value == "tokens × traits"
            layers = [self.layer.value] if by_traits else sorted(self.layers.value)
            norms = activation_magnitude(
                self.current, layers, clean=self.clean.value, skip=int(self.skip.value)
            )
            replace_figure(self.details, details_figure(panel, *norms))
        self.analyses.refresh()
        self._say("")

    def shown(self) -> Shown:
        """Row labels, values ``[rows, tokens]`` and hover norms the figure shows now."""
        return read(self.figure)

    def _say(self, text: str, error: bool = False) -> None:
        color = "#b00020" if error else "#555"
        body = html.escape(text)
        self.status.value = f"<span style='color:{color}'>{body}</span>" if text else ""

    # --- live mode --------------------------------------------------------------------------

    def run(self, prompt: str | None = None) -> ProjectionRecord | None:
        """Project ``prompt`` (default: the prompt box) and show the new record.

        Returns the record, or ``None`` with the reason in the status line (no traceback).
        """
        if self._live is None:
            raise ValueError(
                "this view has no model; create it with TraitDynamics.live(model, tokenizer, "
                "traits, calibration) to run prompts"
            )

        text = (self.prompt.value if prompt is None else prompt).strip()
        if not text:
            self._say("type a prompt first, then press Run", error=True)
            return None
        self.run_button.disabled = True
        self._say(f"running “{text[:60]}” …")
        try:
            (record,) = project_prompts(
                self._live["model"],
                self._live["tokenizer"],
                [text],
                self._live["traits"],
                self._live["calibration"],
                max_new_tokens=self._max_new_tokens,
            )
        except Exception as exc:  # shown to the user in the status line, not swallowed
            self._say(f"run failed: {type(exc).__name__}: {exc}", error=True)
            return None
        finally:
            self.run_button.disabled = False
        self.records.append(record)
        self._sampling.append(f"greedy, ≤ {self._max_new_tokens} new tokens")
        self._set_record_options(len(self.records) - 1)
        return record
