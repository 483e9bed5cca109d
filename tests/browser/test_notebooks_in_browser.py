"""The notebooks in a real browser: JupyterLab + Playwright driving Debian chromium.

01_extract: run every cell, drag the steering slider, and check that the steered text on the
page changes and equals what the kernel's library call returns for the new slider value.
03_trait_dynamics: change the Clean dropdown and check the heatmap's data changed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.browser.pages import (
    NOTEBOOK,
    RUN_TIMEOUT_MS,
    open_notebook as _open,
    run_all,
    shot,
    wait_until_idle,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.browser]


def test_steering_slider_in_01_extract(browser, lab, artifacts) -> None:
    from playwright.sync_api import expect

    page = _open(browser, lab.url("01_extract.ipynb"))
    run_all(page, "01_extract.ipynb")
    panel = page.locator(".tl-steering-panel")
    status = panel.locator(".tl-status-text")
    expect(status).to_contain_text("done:", timeout=RUN_TIMEOUT_MS)
    steered = panel.locator(".tl-column[data-role='steered'] .tl-text")
    baseline = panel.locator(".tl-column[data-role='baseline'] .tl-text")
    before = steered.text_content()
    assert before and before != baseline.text_content()
    panel.scroll_into_view_if_needed()
    shot(page, artifacts, "01_panel_before", panel)

    # Drag the handle to a quarter of the track: from +0.40 to about -0.5 of the typical norm.
    readout = panel.locator(".tl-coef .widget-readout")
    old_value = readout.inner_text()
    handle = panel.locator(".tl-coef .noUi-handle")
    track = panel.locator(".tl-coef .noUi-target").bounding_box()
    box = handle.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] + track["width"] * 0.25, box["y"] + box["height"] / 2, steps=12)
    page.mouse.up()
    expect(readout).not_to_have_text(old_value)
    new_value = float(readout.inner_text().replace("\u2212", "-"))  # d3 format: a real minus
    assert new_value < 0, new_value
    expect(status).to_contain_text(f"optimism {new_value:+.2f}", timeout=RUN_TIMEOUT_MS)
    expect(status).to_contain_text("done:", timeout=RUN_TIMEOUT_MS)
    after = steered.text_content()
    assert after and after != before
    coloured = panel.locator(".tl-column[data-role='steered'] .tl-token[data-score]")
    assert coloured.count() > 5
    shot(page, artifacts, "01_panel_after_drag", panel)

    # The last cell asks the kernel's library for the reply at the slider's value; run it again.
    cells = page.locator(f"{NOTEBOOK} .jp-Cell")
    last = cells.nth(cells.count() - 1)  # fixed index: Shift+Enter adds a new cell below
    # what the cell printed (stdout), not stderr or any other output element
    output = last.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stdout"]')
    old_output = output.inner_text()
    last.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    expect(output).not_to_have_text(old_output, timeout=RUN_TIMEOUT_MS)
    kernel_text = output.inner_text()
    assert "Error" not in kernel_text, kernel_text
    assert kernel_text.strip() == after.strip()
    shot(page, artifacts, "01_notebook_end")
    page.close()
    lab.shutdown_kernels()


def _heatmap_z(page: Any) -> str:
    return page.locator(".tl-dynamics-figure .js-plotly-plot").first.evaluate(
        "el => JSON.stringify(el.data[0].z)"
    )


def test_clean_dropdown_in_03_trait_dynamics(browser, lab, artifacts) -> None:
    from playwright.sync_api import expect

    page = _open(browser, lab.url("03_trait_dynamics.ipynb"))
    run_all(page, "03_trait_dynamics.ipynb")
    view = page.locator(".tl-trait-dynamics").first
    clean = view.locator(".tl-clean select")
    expect(clean).to_be_visible(timeout=RUN_TIMEOUT_MS)
    plot = view.locator(".tl-dynamics-figure .js-plotly-plot")
    expect(plot).to_be_visible(timeout=RUN_TIMEOUT_MS)
    wait_until_idle(page)  # the notebook's own cells ran to the end
    assert clean.input_value() == "No cleaning"
    before = _heatmap_z(page)
    view.scroll_into_view_if_needed()
    shot(page, artifacts, "03_dynamics_no_cleaning", view)
    clean.select_option("Top 5, 3+ layers")
    page.wait_for_function(
        "old => JSON.stringify(document.querySelector("
        "'.tl-trait-dynamics .tl-dynamics-figure .js-plotly-plot').data[0].z) !== old",
        arg=before,
        timeout=60_000,
    )
    after = json.loads(_heatmap_z(page))
    assert after != json.loads(before)
    title = plot.locator(".gtitle").first.text_content() or ""
    assert "Top 5" in title, title
    shot(page, artifacts, "03_dynamics_cleaned", view)
    page.close()
    lab.shutdown_kernels()
