"""The GeometryExplorer (and the steering-evaluation figure) in a real browser: JupyterLab +
Playwright driving Debian chromium on a scratch notebook built from small synthetic vectors.

Every control is moved in the page (view buttons, the three pickers, the k slider, Save). After
each change the test reads what plotly.js draws (``el.layout`` and ``el._fullLayout`` of the
``.js-plotly-plot``) and asserts that it is what that view should show and nothing of the view
before: cluster outlines only in the clusters view, the "RSA needs" message only while it
applies, axes that span the data drawn. The colour bar states the pole convention, the figure
fits its output area, and the console never reports a NaN attribute.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.pages import (
    NOTEBOOK,
    assert_inside_output_area,
    open_notebook,
    run_all,
    shot,
    wait_until_idle,
)
from widgets.common.colours import POLE_NOTE

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.browser]

SETUP = """\
import numpy as np
from widgets.geometry import GeometryExplorer
rng = np.random.default_rng(0)
TRAITS = ["joy", "calm", "rage", "fear", "hope"]
base = {t: rng.normal(size=32) for t in TRAITS}
vectors = {(t, layer, m): base[t] + 0.6 * rng.normal(size=32)
           for t in TRAITS for layer in (4, 8, 12) for m in ("mean_diff", "probe")}
explorer = GeometryExplorer(vectors, view="cosine")
explorer"""

EVALUATION = """\
from trait_lab.core import JudgeResult
from trait_lab.evaluation import SteeringEntry, SteeringResults, SteeringRunRecord
from widgets import steering_curves
run = SteeringRunRecord("demo", "optimism", "instruct", "f" * 16, {"kind": "synthetic"})
entries = [SteeringEntry((layer,), (sign * c,), "residual", "probe", 50 + sign * 5 * c,
                         95 - 4 * c, 4, 95 - 4 * c >= 70, sign * 5 * c, fraction=sign * 0.02 * c)
           for layer in (8, 12) for sign in (1, -1) for c in (1.0, 2.0, 4.0, 8.0)]
steering_curves(SteeringResults(run, JudgeResult(50.0, 92.0, 4), entries))"""

READ_PLOT = """el => {
  const fl = el._fullLayout, heat = el.data.find(t => t.type === 'heatmap');
  const ann = (el.layout.annotations || []).map(a => a.text);
  return {
    title: (el.layout.title && el.layout.title.text) || '',
    shapes: (el.layout.shapes || []).length,
    annotations: ann,
    xvisible: fl.xaxis.visible,
    xrange: fl.xaxis.range, yrange: fl.yaxis.range,
    ncols: heat ? heat.x.length : null,
    colorbar: heat && heat.colorbar && heat.colorbar.title ? heat.colorbar.title.text : null,
    points: el.data.filter(t => t.type === 'scatter' && t.x && t.x[0] !== null)
                   .flatMap(t => Array.from(t.x)),
    width: fl.width,
  };
}"""

VIEW_TITLES = {
    "cosine": "cosine similarity of",
    "PCA": "PCA of",
    "RSA": "RSA: Spearman",
    "clusters": "k-means clusters",
}


def _plot(explorer: Any) -> Any:
    return explorer.locator(".js-plotly-plot").first


def _read(explorer: Any) -> dict[str, Any]:
    return _plot(explorer).evaluate(READ_PLOT)


def _wait_title(page: Any, explorer: Any, text: str) -> dict[str, Any]:
    """Wait until the figure's title contains ``text``; return what the plot shows."""
    handle = _plot(explorer).element_handle()
    try:
        page.wait_for_function(
            "([el, t]) => el.layout && el.layout.title && (el.layout.title.text || '').includes(t)",
            arg=[handle, text],
            timeout=30_000,
        )
    except Exception:
        pytest.fail(f"the title never showed {text!r}; it shows {_read(explorer)['title']!r}")
    page.wait_for_timeout(300)  # let plotly finish the redraw it started
    return _read(explorer)


def _check_view(explorer: Any, shown: dict[str, Any], view: str, k: int | None = None) -> None:
    """What ``view`` must show, and nothing any other view left behind."""
    message = f"{view}: nothing to show" in shown["title"]
    if message:
        assert len(shown["annotations"]) == 1 and shown["shapes"] == 0, shown
        assert shown["xvisible"] is False, shown
        return
    assert shown["annotations"] == [], shown  # no leftover message
    assert shown["xvisible"] is not False, shown  # the message view hides axes: not leftover
    if view == "clusters":
        assert shown["shapes"] == k, shown  # one outline per cluster
    else:
        assert shown["shapes"] == 0, shown  # no cluster outlines on other views
    if view in ("cosine", "RSA", "clusters"):
        assert POLE_NOTE in (shown["colorbar"] or ""), shown
        n = shown["ncols"]
        width = abs(shown["xrange"][1] - shown["xrange"][0])
        slack = 0.2 if view == "clusters" else 0.01  # outlines' line width pads the range a bit
        assert width == pytest.approx(n, abs=slack), shown  # axes span the matrix, no stretch
    if view == "PCA":
        low, high = min(shown["points"]), max(shown["points"])
        span = max(high - low, 1e-9)
        lo, hi = sorted(shown["xrange"])
        assert lo <= low and hi >= high and (hi - lo) <= 2 * span, shown  # fits the points
    assert shown["width"] <= 940, shown
    assert_inside_output_area(_plot(explorer))


def _assert_inside(element: Any, area: Any) -> None:
    """Like ``assert_inside_output_area`` for plotly's static renderer, whose element is the
    output area itself (so it has no such ancestor)."""
    box, outer = element.bounding_box(), area.bounding_box()
    right, outer_right = box["x"] + box["width"], outer["x"] + outer["width"]
    assert box["x"] >= outer["x"] - 1 and right <= outer_right + 1, (box, outer)


def _click_view(page: Any, explorer: Any, view: str) -> dict[str, Any]:
    explorer.locator(".tl-geo-view button", has_text=view).first.click()
    return _wait_title(page, explorer, VIEW_TITLES[view])


def _k(explorer: Any) -> int:
    return int(explorer.locator(".tl-geo-k .widget-readout").inner_text())


def test_geometry_explorer_every_control(browser, lab, artifacts) -> None:
    from playwright.sync_api import expect

    console: list[str] = []
    page = open_notebook(browser, lab.notebook("geometry_scratch.ipynb", [SETUP, EVALUATION]))
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    run_all(page, "geometry_scratch.ipynb")
    wait_until_idle(page)
    explorer = page.locator(".tl-geometry-explorer")
    expect(_plot(explorer)).to_be_visible(timeout=60_000)
    explorer.scroll_into_view_if_needed()

    shown = _wait_title(page, explorer, VIEW_TITLES["cosine"])
    _check_view(explorer, shown, "cosine")
    shot(page, artifacts, "geo_01_cosine", explorer)

    shown = _click_view(page, explorer, "clusters")
    _check_view(explorer, shown, "clusters", _k(explorer))
    shot(page, artifacts, "geo_02_clusters", explorer)

    handle = explorer.locator(".tl-geo-k .noUi-handle")  # k + 1 with the keyboard
    before = _k(explorer)
    handle.focus()
    page.keyboard.press("ArrowRight")
    expect(explorer.locator(".tl-geo-k .widget-readout")).to_have_text(str(before + 1))
    shown = _wait_title(page, explorer, f"{before + 1} k-means clusters")
    _check_view(explorer, shown, "clusters", before + 1)
    assert int(handle.get_attribute("aria-valuemax").split(".")[0]) <= 29  # ≤ n − 1 (30 vectors)

    for view in ("cosine", "PCA", "RSA"):  # straight from clusters: no outlines left
        shown = _click_view(page, explorer, view)
        _check_view(explorer, shown, view)
        shot(page, artifacts, f"geo_03_{view.lower()}_after_clusters", explorer)

    explorer.locator(".tl-geo-traits select").select_option(["joy", "calm"])  # RSA: too few
    shown = _wait_title(page, explorer, "RSA: nothing to show")
    assert "RSA needs at least 3 traits" in shown["annotations"][0], shown
    _check_view(explorer, shown, "RSA")
    shot(page, artifacts, "geo_04_rsa_message", explorer)

    shown = _click_view(page, explorer, "PCA")  # the message must not stay on PCA
    _check_view(explorer, shown, "PCA")
    shot(page, artifacts, "geo_05_pca_after_message", explorer)

    shown = _click_view(page, explorer, "clusters")  # fewer vectors: k clamps to n − 1 or less
    k = _k(explorer)
    assert k <= 11, k  # 2 traits × 3 layers × 2 methods = 12 vectors
    _check_view(explorer, shown, "clusters", k)

    explorer.locator(".tl-geo-traits select").select_option(["joy", "calm", "rage", "fear", "hope"])
    _wait_title(page, explorer, "of 30 vectors")  # 5 traits × 3 layers × 2 methods
    explorer.locator(".tl-geo-layers select").select_option(label=["L8", "L12"])
    _wait_title(page, explorer, "of 20 vectors")
    explorer.locator(".tl-geo-methods select").select_option(label=["probe"])
    _wait_title(page, explorer, "of 10 vectors")
    explorer.locator(".tl-geo-layers select").select_option(label=["L4", "L8", "L12"])
    shown = _wait_title(page, explorer, "of 15 vectors")
    _check_view(explorer, shown, "clusters", _k(explorer))
    shown = _click_view(page, explorer, "RSA")
    _check_view(explorer, shown, "RSA")
    shot(page, artifacts, "geo_06_rsa_all_layers", explorer)
    shown = _click_view(page, explorer, "cosine")
    _check_view(explorer, shown, "cosine")
    assert "layers L4, L8, L12" in shown["title"] and "methods probe" in shown["title"]
    shot(page, artifacts, "geo_07_cosine_probe", explorer)

    save_as = explorer.locator(".tl-export input[type='text']")
    assert save_as.input_value() == "figures/geometry_cosine"
    explorer.locator(".tl-export select").select_option("html")  # format changed right before
    explorer.locator(".tl-export button", has_text="Save").click()
    status = explorer.locator(".tl-export .widget-html-content").last
    expect(status).to_contain_text("saved figures/geometry_cosine.html", timeout=30_000)

    # The steering-evaluation figure: static, must fit its output area and carry its legend.
    cells = page.locator(f"{NOTEBOOK} .jp-Cell")
    cells.nth(1).scroll_into_view_if_needed()  # JupyterLab draws cells only near the view
    errors = cells.nth(1).locator('[data-mime-type="application/vnd.jupyter.stderr"]')
    assert errors.count() == 0, errors.first.inner_text()
    curves = cells.nth(1).locator(".js-plotly-plot").first
    expect(curves).to_be_visible()
    _assert_inside(curves, cells.nth(1).locator(".jp-OutputArea").first)
    legend = curves.locator(".legend").first.text_content() or ""
    assert "L8 probe" in legend and "baseline" in legend, legend
    shot(page, artifacts, "geo_08_steering_curves", cells.nth(1))

    nan = [line for line in console if "nan" in line.lower()]
    assert not nan, nan
    page.close()
    lab.shutdown_kernels()
