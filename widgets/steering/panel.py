"""``SteeringPanel``: drag a slider, watch the model change — baseline and steered text side by
side, streamed token by token, each token coloured by its cosine with a trait.

Every control change is debounced and restarts generation on a background thread (the one in
flight is cancelled), so the kernel stays responsive. The baseline is generated once per
prompt and sampling setting; a slider move regenerates only the steered text, and changing
only the colour trait or layer re-projects the texts shown (one forward pass, no
regeneration). The status line says queued / generating / done / stopped truthfully; errors
inside generation appear there too. Token colours use one fixed scale per (colour trait,
layer) unless "lock scale" is released (``widgets.steering.scale``); the legend states the
scale and the colour convention (red = positive pole).

Example:
    >>> from trait_lab.testing import tiny_model
    >>> from trait_lab.generation.backends import LocalBackend
    >>> import torch
    >>> backend = LocalBackend(tiny_model(), tokenizer=None, use_chat_template=False)
    >>> panel = SteeringPanel(backend, {"t": (torch.ones(32), 1)}, norms=10.0, autorun=False)
    >>> panel.sliders["t"].max
    1.0
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import ipywidgets as w
import plotly.graph_objects as go

from trait_lab.activations import typical_norms
from trait_lab.generation import GenerationConfig, LocalBackend, ProjectionSpec, SteeringSpec
from widgets.common.colours import pole_legend
from widgets.common.export import ExportBar, default_stem
from widgets.common.runner import LatestRunner
from widgets.common.token_stream import TokenStream
from widgets.steering.arguments import (
    check_arguments,
    check_norm_layers,
    panel_norms,
    start_values,
)
from widgets.steering.controls import (
    RANGES,
    colour_controls,
    mode_controls,
    readout_text,
    sampling_controls,
    target_rows,
)
from widgets.steering.labels import layers_text, run_title
from widgets.steering.recolour import recolour_rows
from widgets.steering.rows import Request, Row, absorb, finish, steering_figure, stream_columns
from widgets.steering.scale import ColourScale, Key, calibrated, neutral_texts
from widgets.steering.targets import (
    build_specs,
    selected_vectors,
    steering_targets,
)


class SteeringPanel(w.VBox):
    """Live steering for any ``LocalBackend``.

    Args:
        backend: the model to steer.
        vectors: ``{name: vector | (vector, layer) | {layer: vector} | [(vector, layer, w)]
            | VectorResult}``; one slider per name (see ``widgets.steering.targets``). A
            ``VectorResult`` from ``select_vector`` loads its vector at its layer, and a
            steering-validated one starts its slider at the recommended coefficient.
        prompt: the starting prompt.
        layer: default layer for bare vectors / the picker.
        value: starting slider value(s), a fraction (``{name: value}`` or one for all) in
            the mode's slider range (``RANGES``: -1 to 1, ablate 0 to 1).
        mode: ``add``, ``ablate``, ``cap`` (floor) or ``ceiling``.
        positions: ``"response"`` (generated tokens, from the last prompt token), ``"all"``
            or ``"prompt"`` (the prompt before its last token only).
        norms: typical residual norm per layer (positive, finite; at least at the layers
            the vectors start at), one number for all layers, or ``None`` to measure it on 16
            neutral prompts.
        readout_offset: tokens are coloured at ``layer + readout_offset`` (what the model
            carries forward rather than what was just added); pick another in the panel.
        debounce: seconds a control must rest before generation restarts (a restart is cheap).
        autorun: start generating at once.
        colour_scale: the cosine shown at full colour: one number, ``{(trait, layer): value}``,
            or ``None``: calibrated per (trait, layer) (``widgets.steering.scale``).

    Raises:
        ValueError / TypeError: an argument the panel cannot show truthfully (a NaN, zero or
            negative norm, a complex or NaN vector, a start value outside the slider, a layer
            the vectors do not have), named with the value, what is allowed and the fix.
    """

    def __init__(
        self,
        backend: LocalBackend,
        vectors: Mapping[str, Any],
        *,
        prompt: str = "What do you think the next ten years will bring?",
        layer: int | None = None,
        value: float | Mapping[str, float] = 0.0,
        mode: str = "add",
        positions: str = "response",
        max_new_tokens: int = 40,
        norms: Mapping[int, float] | float | None = None,
        readout_offset: int = 4,
        debounce: float = 0.05,
        autorun: bool = True,
        colour_scale: float | Mapping[Key, float] | None = None,
    ) -> None:
        check_arguments(backend, mode, positions, max_new_tokens)
        self._scale = ColourScale.from_argument(colour_scale)
        self.backend = backend
        vectors, recommended = selected_vectors(vectors)
        self.targets = steering_targets(vectors, backend.n_layers, backend.hidden_dim, layer)
        self._scale.calibrate = calibrated(backend, self.targets, colour_scale)
        self.norms = self._norms(norms)
        check_norm_layers(self.targets, self.norms)
        names = [t.name for t in self.targets]
        value = start_values(value, names, recommended, self.norms, mode)
        self.readout_offset = readout_offset
        self._baseline: tuple[tuple[Any, ...], Row] | None = None
        self._rows: dict[str, Row] = {"baseline": Row(), "steered": Row()}
        self._lock = threading.Lock()
        self.timing: dict[str, float] = {}
        self.error: BaseException | None = None
        self.state = "idle"  # queued, generating, recolouring, done, stopped or error
        self._shown: Request | None = None  # the request whose texts are shown
        self._finished_word = "done"  # how the texts shown ended: done or stopped
        self._ticket, self._final = 0, False  # _final: the texts shown are done or stopped
        super().__init__(self._build(prompt, value, mode, positions, max_new_tokens))
        self.add_class("tl-steering-panel")
        self._runner = LatestRunner(self._generate, debounce=debounce, on_error=self._failed)
        self._wire()
        self._update_readouts()
        if autorun:
            self.refresh()

    # ----- building -------------------------------------------------------------------------
    def _build(
        self,
        prompt: str,
        value: float | Mapping[str, float],
        mode: str,
        positions: str,
        max_new_tokens: int,
    ) -> list[w.Widget]:
        """Create every control (in display order) and return the panel's children."""
        self.prompt = w.Textarea(value=prompt, layout=w.Layout(width="100%", height="60px"))
        self.prompt.add_class("tl-prompt")
        self.mode, self.positions = mode_controls(mode, positions)
        self.sliders, self.layers, self.readouts, rows = target_rows(self.targets, value, mode)
        rows.insert(0, w.HBox([self.mode, self.positions]))
        colour = self._build_colour()
        sampling = sampling_controls(max_new_tokens)
        self._sampling = sampling
        self.max_new_tokens, self.temperature = sampling.max_new_tokens, sampling.temperature
        self.top_p, self.seed = sampling.top_p, sampling.seed
        self.run_button = w.Button(description="Generate", icon="play")
        self.run_button.add_class("tl-run")
        self.stop_button = w.Button(description="Stop", icon="stop")
        self.stop_button.add_class("tl-stop")
        self.stream = TokenStream()
        self.status = w.HTML()
        self.status.add_class("tl-status")
        self.export = ExportBar(self.figure, default_stem("steering", *self.sliders))
        return [
            self.prompt,
            *rows,
            w.HBox(
                [*colour, self.run_button, self.stop_button],
                layout=w.Layout(flex_flow="row wrap"),
            ),
            w.Accordion([sampling.box], titles=("sampling (temperature 0 = greedy)",)),
            self.status,
            self.stream,
            self.export,
        ]

    def _build_colour(self) -> list[w.Widget]:
        """Colour by the first target at its readout layer; the scale lock."""
        first = self.targets[0].name
        ctl = colour_controls(self.targets, self._readout_layer(first), self._scale.locked)
        self.colour_trait, self.colour_layer, self.lock_scale = ctl
        return list(ctl)

    def _norms(self, norms: Mapping[int, float] | float | None) -> dict[int, float]:
        if norms is None:
            texts = neutral_texts()
            return typical_norms(self.backend.model, texts, tokenizer=self.backend.tokenizer)
        return panel_norms(norms, self.backend.n_layers)

    def _readout_layer(self, name: str) -> int:
        target = next(t for t in self.targets if t.name == name)
        options = sorted(target.vectors)
        wanted = self.layers[name].value + self.readout_offset
        return max((o for o in options if o <= wanted), default=options[0])

    def _wire(self) -> None:
        self.prompt.observe(lambda _: self.refresh(), "value")
        self.mode.observe(self._mode_changed, "value")
        for name in self.sliders:
            self.sliders[name].observe(lambda _: self.refresh(), "value")
            self.layers[name].observe(lambda change, n=name: self._layer_changed(n), "value")
        self.colour_trait.observe(self._colour_trait_changed, "value")
        self.colour_layer.observe(lambda _: self.refresh(recolour=True), "value")
        self.lock_scale.observe(self._lock_changed, "value")
        sampling = (self.max_new_tokens, self.temperature, self.top_p, self.seed)
        for control in (self.positions, *sampling):
            control.observe(lambda _: self.refresh(), "value")
        self.run_button.on_click(lambda _: self.refresh())
        self.stop_button.on_click(lambda _: self.stop())

    def _mode_changed(self, change: dict[str, Any]) -> None:
        low, high = RANGES[change["new"]]
        for slider in self.sliders.values():  # every range ends at 1.0: clamp, then widen
            slider.value = min(max(slider.value, low), high)
            slider.min = low
        self.refresh()

    def _layer_changed(self, name: str) -> None:
        if self.colour_trait.value == name:
            self.colour_layer.value = self._readout_layer(name)
        self.refresh()

    def _colour_trait_changed(self, change: dict[str, Any]) -> None:
        target = next(t for t in self.targets if t.name == change["new"])
        self.colour_layer.options = sorted(target.vectors)
        self.colour_layer.value = self._readout_layer(target.name)
        self.refresh(recolour=True)

    def _lock_changed(self, change: dict[str, Any]) -> None:
        self._scale.lock((self.colour_trait.value, self.colour_layer.value), change["new"])
        if self._shown is not None:
            self._show(self._shown)

    def config(self) -> GenerationConfig:
        """The generation settings the controls show."""
        return self._sampling.config()

    def specs(self, rows: list[int] | None = None) -> list[SteeringSpec]:
        """The ``SteeringSpec`` list the sliders, pickers and mode stand for."""
        return build_specs(
            self.targets,
            {name: s.value for name, s in self.sliders.items()},
            {name: d.value for name, d in self.layers.items()},
            self.mode.value,
            self.norms,
            positions=self.positions.value,
            rows=rows,
        )

    def _update_readouts(self) -> None:
        for target in self.targets:
            fraction = self.sliders[target.name].value
            picked = self.layers[target.name].value
            text = html.escape(readout_text(target, fraction, picked, self.mode.value, self.norms))
            self.readouts[target.name].value = f"<span class='tl-readout'>{text}</span>"

    # ----- running --------------------------------------------------------------------------
    def refresh(self, recolour: bool = False) -> None:
        """Restart generation with the current settings (debounced, cancels the one running).

        ``recolour=True`` (the colour trait or layer changed): when the texts shown are
        finished and were made with the current settings, only re-project them.
        """
        self._update_readouts()
        try:
            prompt = self.prompt.value.strip()
            if not prompt:
                raise ValueError("the prompt is empty; type a question in the box above")
            settings = self._settings()
            same = self._final and self._shown is not None and self._shown.settings == settings
            request = Request(
                prompt,
                self.specs(),
                self.config(),
                (self.colour_trait.value, self.colour_layer.value),
                self._label(),
                kind="recolour" if recolour and same else "generate",
                settings=settings,
            )
        except (ValueError, TypeError, KeyError) as exc:
            self._failed(exc)
            return
        self.error = None
        self._ticket += 1
        request.ticket = self._ticket
        self._set_state("queued", request)
        self._runner.submit(request)

    def stop(self) -> None:
        """Stop the generation running or queued (the status then says stopped)."""
        if not self._runner.busy:
            return
        self._runner.cancel()
        self._set_state("stopped", None)

    def _settings(self) -> tuple[Any, ...]:
        """What the steered text depends on (not the colour)."""
        sliders = tuple((n, s.value, self.layers[n].value) for n, s in self.sliders.items())
        where = (self.prompt.value.strip(), self.mode.value, self.positions.value)
        return (*where, sliders, repr(self.config()))

    def _label(self) -> str:
        """The run in one line: mode, values and layers, position, sampling and prompt."""
        return run_title(
            self.mode.value,
            {name: slider.value for name, slider in self.sliders.items()},
            {t.name: layers_text(t, self.layers[t.name].value) for t in self.targets},
            self.positions.value,
            self.config(),
            self.prompt.value,
        )

    def wait(self, timeout: float | None = 300) -> bool:
        """Block until the current generation is done (for scripts and tests)."""
        return self._runner.wait(timeout)

    def close(self) -> None:
        """Stop generating and close the widgets."""
        runner = getattr(self, "_runner", None)  # absent when __init__ raised
        if runner is not None:
            runner.close()
        super().close()

    def _colour_spec(self, colour: tuple[str, int]) -> ProjectionSpec:
        target = next(t for t in self.targets if t.name == colour[0])
        return ProjectionSpec({colour[1]: target.vectors[colour[1]]})

    def _reproject(self, request: Request, keys: list[str]) -> None:
        """Recolour these rows' tokens with ``request.colour`` by one forward pass."""
        colour = self._colour_spec(request.colour)
        recolour_rows(self.backend, self._rows, keys, request, colour, self._lock)

    def _generate(self, request: Request, cancel: threading.Event) -> None:
        started = time.monotonic()
        self.timing = {"debounce_and_queue": started - request.submitted}
        self._scale.prepare(request.colour)  # here: no generation shares the model
        if request.kind == "recolour":
            self._set_state("recolouring", request)
            self._reproject(request, ["baseline", "steered"])
            self.timing["total"] = time.monotonic() - request.submitted
            self._shown = request
            self._show(request)
            self._set_state(self._finished_word, request)
            return
        self._set_state("generating", request)
        self._final = False
        cached = (
            self._baseline if self._baseline and self._baseline[0] == request.baseline_key else None
        )
        keys = ["steered"] if cached else ["baseline", "steered"]
        with self._lock:
            self._rows = {"baseline": cached[1] if cached else Row(), "steered": Row()}
        if cached and cached[1].colour != request.colour:
            self._reproject(request, ["baseline"])
        specs = request.specs
        if not cached:
            specs = [replace(s, rows=[1]) for s in specs]
        stream = self.backend.stream(
            [request.prompt] * len(keys),
            request.config,
            specs,
            projection=self._colour_spec(request.colour),
            cancel=cancel,
            reuse_prompt=True,  # a slider change re-steers the same prompt
        )
        self._shown = request
        for event in stream:
            with self._lock:
                for i, key in enumerate(keys):
                    absorb(self._rows[key], event, i, request.colour[1])
                    self._rows[key].colour = request.colour
            if "first_token" not in self.timing and any(t is not None for t in event.token_ids):
                self.timing["first_token"] = time.monotonic() - request.submitted
            self._show(request)
        elapsed = time.monotonic() - started
        word = "stopped" if cancel.is_set() else "done"
        with self._lock:
            finish([self._rows[k] for k in keys], word, elapsed, self.backend)
            if not cancel.is_set() and not cached:
                self._baseline = (request.baseline_key, self._rows["baseline"])
        self.timing["total"] = time.monotonic() - request.submitted
        self.timing["tokens"] = float(len(self._rows["steered"].ids))
        self._finished_word, self._final = word, True
        self._show(request)
        self._set_state(word, request)

    def _show(self, request: Request) -> None:
        with self._lock:
            rows = {k: (list(map(tuple, r.pieces)), r.status) for k, r in self._rows.items()}
            complete = self._rows["baseline"].complete
        scores = {k: [s for _, s in pieces] for k, (pieces, _) in rows.items()}
        scale = self._scale.current(request.colour, scores["baseline"], scores["steered"], complete)
        with self.stream.hold_sync():
            self.stream.scale, self.stream.scale_note = scale
            self.stream.label = f"cosine with {request.colour[0]} @ L{request.colour[1]}"
            self.stream.set_columns(stream_columns(rows, request))

    def _failed(self, exc: BaseException) -> None:
        self.error, self.state = exc, "error"
        message = html.escape(f"{type(exc).__name__}: {exc}")
        self._write_status("error", f"<span class='tl-error'>{message}</span>")

    def _set_state(self, state: str, request: Request | None) -> None:
        """Show ``state`` when ``request`` is the latest one (an older job keeps quiet)."""
        if request is None and self.state not in ("queued", "generating", "recolouring"):
            return  # the Stop button with nothing to stop: keep what the status says
        if request is not None and request.ticket != self._ticket:
            return
        shown = self._shown.label if self._shown else "nothing yet"
        label = f": {request.label}" if request else f": {shown}"
        if request is None and self.state == "queued":
            label = f" before it started · the texts below: {shown}"
        self.state = state
        self._write_status(state, html.escape(f"{state}{label}"))

    def _write_status(self, state: str, text: str) -> None:
        self.status.value = f"<div class='tl-status-text' data-state='{state}'>{text}</div>"

    # ----- results --------------------------------------------------------------------------
    @property
    def texts(self) -> dict[str, str]:
        """The baseline and steered replies shown now (decoded from their token ids)."""
        tok = self.backend.tokenizer
        with self._lock:
            ids = {k: list(r.ids) for k, r in self._rows.items()}
        return {k: tok.decode(v, skip_special_tokens=True) for k, v in ids.items()}

    def reference(self) -> str:
        """The steered reply computed straight by the library (``LocalBackend.generate``) for
        the current settings — what the panel must show once it is done."""
        return self.backend.generate([self.prompt.value.strip()], self.config(), self.specs())[0]

    def figure(self) -> go.Figure:
        """Per-token cosine of the baseline and steered replies (what the export bar saves)."""
        with self._lock:
            rows = {k: list(r.pieces) for k, r in self._rows.items()}
        made = self._shown.label if self._shown is not None else self._label()
        title = f"{made} — {pole_legend(self.stream.label)}"
        return steering_figure(rows, title)
