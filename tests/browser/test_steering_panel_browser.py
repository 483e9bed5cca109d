"""SteeringPanel in a real browser (JupyterLab + Playwright + chromium), every control moved.

A scratch notebook builds the panel on the default model with two quickly made vectors (the
difference of two prompts' mean residuals; no extraction). The test asserts what the page
shows: a truthful status, whole labels, the legend's convention and scale, titles that name
position, prompt and sampling, the panel inside its output area, and baseline colours that
do not move with the slider. Screenshots go to the artifacts folder.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.pages import assert_inside_output_area, open_notebook, run_all, shot

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.browser]

PROMPT = "What do you think the next ten years will bring?"
CELLS = [
    """\
import torch
from trait_lab.generation import LocalBackend
from trait_lab.models import load_model
from widgets.steering import SteeringPanel

backend = LocalBackend.from_model(*load_model())

def direction(a, b, layer):
    acts = []
    for text in (a, b):
        ids = backend.tokenizer(text, return_tensors="pt")["input_ids"]
        acts.append(backend.forward_with_capture(ids)[layer]["residual"][0].mean(0))
    return acts[0] - acts[1]

joy = direction("I love this wonderful, happy, bright day!", "I hate this awful, sad day.", 12)
calm = {layer: direction("Relax, all is quiet and still.", "Panic! Run, hurry, now!", layer)
        for layer in (10, 14)}""",
    f"""\
panel = SteeringPanel(backend, {{"joy": (joy, 12), "calm": calm}}, prompt={PROMPT!r},
                      value={{"joy": 0.3}}, max_new_tokens=12)
panel""",
]


def _backgrounds(page: Any, role: str) -> list[str]:
    return page.eval_on_selector_all(
        f".tl-column[data-role='{role}'] .tl-token", "els => els.map(e => e.style.background)"
    )


def _cut_labels(panel: Any) -> list[str]:
    """Texts of description labels and buttons whose text does not fit their box."""
    return panel.evaluate(
        """root => [...root.querySelectorAll('.widget-label, .widget-toggle-button, button')]
            .filter(e => e.offsetParent !== null && e.textContent.trim())
            .filter(e => e.scrollWidth > e.clientWidth + 1)
            .map(e => e.textContent.trim())"""
    )


def test_every_control_of_the_steering_panel(browser, lab, artifacts) -> None:
    from playwright.sync_api import expect

    page = open_notebook(browser, lab.notebook("steering_panel.ipynb", CELLS))
    run_all(page, "steering_panel.ipynb")
    panel = page.locator(".tl-steering-panel")
    status = panel.locator(".tl-status-text")
    done = "[data-state='done']"
    expect(panel.locator(f".tl-status-text{done}")).to_be_visible(timeout=180_000)
    legend = panel.locator(".tl-legend-label")
    steered_title = panel.locator(".tl-column[data-role='steered'] .tl-column-title")
    expect(legend).to_contain_text("red = positive pole, blue = negative")
    expect(legend).to_contain_text("full colour at ±")
    expect(legend).to_contain_text("locked")
    for part in ("steer at response", "greedy", PROMPT, "@ L12"):
        expect(steered_title).to_contain_text(part)
    assert _cut_labels(panel) == []
    panel.scroll_into_view_if_needed()
    assert_inside_output_area(panel)
    shot(page, artifacts, "steering_panel_start", panel)

    # slider drag: the steered text regenerates, the baseline keeps its shades and the scale
    baseline = _backgrounds(page, "baseline")
    scale_text = legend.inner_text()
    readout = panel.locator(".tl-coef .widget-readout").first
    handle = panel.locator(".tl-coef .noUi-handle").first
    track = panel.locator(".tl-coef .noUi-target").first.bounding_box()
    box = handle.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] + track["width"] * 0.85, box["y"] + box["height"] / 2, steps=10)
    page.mouse.up()
    value = float(readout.inner_text().replace("\u2212", "-"))
    assert value > 0.5, value
    expect(status).to_contain_text(f"joy {value:+.2f}", timeout=60_000)
    expect(panel.locator(f".tl-status-text{done}")).to_be_visible(timeout=120_000)
    assert _backgrounds(page, "baseline") == baseline
    assert legend.inner_text() == scale_text
    shot(page, artifacts, "steering_panel_after_slider", panel)

    # mode buttons: floor / ceiling named as such in the readout and the title
    for label, unit in (("floor (cap)", "floor at"), ("ceiling", "ceiling at"), ("add", "add ×")):
        panel.locator(".tl-mode button", has_text=label).click()
        expect(panel.locator(".tl-readout").first).to_contain_text(unit)
        expect(status).to_contain_text(f"{label}: ", timeout=60_000)
        expect(panel.locator(f".tl-status-text{done}")).to_be_visible(timeout=120_000)
    shot(page, artifacts, "steering_panel_modes", panel)

    # position
    panel.locator(".tl-positions select").select_option("all")
    expect(steered_title).to_contain_text("steer at all", timeout=120_000)
    expect(panel.locator(f".tl-status-text{done}")).to_be_visible(timeout=120_000)

    # colour layer and trait: recoloured, not regenerated (the texts stay as they are)
    texts = panel.locator(".tl-text").all_inner_texts()
    panel.locator(".tl-colour-layer select").select_option("13")
    expect(legend).to_contain_text("cosine with joy @ L13", timeout=60_000)
    expect(panel.locator(f".tl-status-text{done}")).to_be_visible(timeout=60_000)
    panel.locator(".tl-colour-trait select").select_option("calm")
    expect(legend).to_contain_text("cosine with calm @ L14", timeout=60_000)
    expect(panel.locator(f".tl-status-text{done}")).to_be_visible(timeout=60_000)
    assert panel.locator(".tl-text").all_inner_texts() == texts
    shot(page, artifacts, "steering_panel_recoloured", panel)

    # lock scale: unlocked rescales per run, locking again keeps the scale shown
    lock = panel.locator(".tl-lock-scale")
    lock.click()
    expect(legend).to_contain_text("unlocked")
    lock.click()
    expect(legend).to_contain_text("locked at the scale shown when locked")

    # sampling fields: temperature by keyboard, seed typed
    panel.get_by_text("sampling (temperature 0 = greedy)").click()
    temperature = panel.locator(".tl-sampling.widget-slider", has_text="temperature")
    temperature.locator(".noUi-handle").focus()
    for _ in range(16):
        page.keyboard.press("ArrowRight")
    seed = panel.locator(".tl-sampling input[type='number']")
    seed.fill("3")
    seed.press("Enter")
    expect(steered_title).to_contain_text("temperature 0.8", timeout=120_000)
    expect(steered_title).to_contain_text("seed 3", timeout=120_000)
    expect(panel.locator(f".tl-status-text{done}")).to_be_visible(timeout=120_000)
    assert _cut_labels(panel) == []
    shot(page, artifacts, "steering_panel_sampling", panel)

    # stop: the status says stopped, and keeps saying it
    panel.locator(".tl-run").click()
    panel.locator(".tl-stop").click()
    expect(panel.locator(".tl-status-text[data-state='stopped']")).to_be_visible()
    page.wait_for_timeout(3000)
    expect(panel.locator(".tl-status-text[data-state='stopped']")).to_be_visible()
    expect(status).not_to_contain_text("queued")
    assert_inside_output_area(panel)
    shot(page, artifacts, "steering_panel_stopped", panel)
    lab.shutdown_kernels()
