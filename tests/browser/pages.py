"""Shared Playwright steps for the browser tests: open a notebook, run it, screenshot, and check
that a widget's figure fits inside its notebook output area.

Example (inside a test with the ``browser``, ``lab`` and ``artifacts`` fixtures):
    page = open_notebook(browser, lab.notebook("geometry.ipynb", cells))
    run_all(page, "geometry.ipynb")
    wait_until_idle(page)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook tab on show
RUN_TIMEOUT_MS = 600_000  # a fresh machine extracts the trait first (~1 min on 2 cores)


def open_notebook(browser: Any, url: str) -> Any:
    """A new 1600×1000 page on ``url`` once its kernel is idle."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(url)
    status = page.locator(".jp-StatusBar-Widget", has_text="ipykernel) | Idle")
    expect(status.first).to_be_visible(timeout=120_000)
    return page


def run_all(page: Any, name: str) -> None:
    """Run All Cells of the one open notebook ``name`` (fails if it did not start)."""
    from playwright.sync_api import expect

    tabs = page.locator(".jp-NotebookPanel")
    expect(tabs).to_have_count(1)  # only this notebook is open: Run All cannot hit another
    expect(page.locator(".lm-TabBar-tab.lm-mod-current", has_text=name).first).to_be_visible()
    for _ in range(2):
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
        page.wait_for_timeout(1500)
        if page.locator(f"{NOTEBOOK} .jp-InputPrompt").first.inner_text().strip() != "[ ]:":
            return
    pytest.fail(f"Run All Cells did not start {name}")


def wait_until_idle(page: Any, timeout_ms: int = RUN_TIMEOUT_MS) -> None:
    """Wait until no cell of the notebook shows the running prompt ``[*]``."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('.jp-NotebookPanel .jp-InputPrompt')].every("
        "p => !p.textContent.includes('*'))",
        timeout=timeout_ms,
    )


def shot(page: Any, artifacts: Path, name: str, target: Any = None) -> None:
    """Save a PNG of ``target`` (default: the whole page) as ``artifacts/<name>.png``."""
    (target or page).screenshot(path=str(artifacts / f"{name}.png"))


def assert_inside_output_area(element: Any) -> None:
    """The element's box lies within its cell's output area (nothing hidden off to the right)."""
    boxes = element.evaluate(
        "el => { const area = el.closest('.jp-OutputArea-output') || el.closest('.jp-OutputArea');"
        " if (!area) return null; const a = el.getBoundingClientRect(),"
        " b = area.getBoundingClientRect(); return [a.left, a.right, b.left, b.right]; }"
    )
    assert boxes is not None, "the element is not inside a notebook output area"
    left, right, outer_left, outer_right = boxes
    assert left >= outer_left - 1 and right <= outer_right + 1, (
        f"element spans x={left:.0f}..{right:.0f}, "
        f"output area x={outer_left:.0f}..{outer_right:.0f}"
    )
