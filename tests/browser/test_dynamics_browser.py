"""TraitDynamics in a real browser: JupyterLab + Playwright driving Debian chromium on a scratch
notebook built from two synthetic 60-token records (6 layers, a huge first token) and a live
tiny random model (no extraction, no default model).

Every control is moved in the page (view buttons, record, mode, Clean, smoothing, centring,
skip-first-N, the layer list, the three analysis tabs, the prompt box and Run). After each
change the test reads what plotly.js holds (``el.data`` / ``el.layout`` of the
``.js-plotly-plot``) and what the page shows: the colour bar is red for positive and says so,
the figures fit their output area, all six layer rows are visible, skipping the first token
shrinks the colour range, the velocity and magnitude panels are drawn, and the browser console
never reports a NaN.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.pages import (
    assert_inside_output_area,
    open_notebook,
    run_all,
    shot,
    wait_until_idle,
)
from widgets.common.colours import POLE_NOTE

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.browser]

SETUP = """\
from types import SimpleNamespace
import torch
from trait_lab.dynamics import build_record
from trait_lab.testing import tiny_model, tiny_tokenizer
from widgets.dynamics import TraitDynamics
CALIBRATION = {"candidates": [3, 7, 11],
               "layers": [{"layer": i, "top_dims": [3, 7, 20 + i, 1, 5]} for i in range(3)]}
tok = SimpleNamespace(convert_ids_to_tokens=lambda ids: [f"w{i}" for i in ids])
gen = torch.Generator().manual_seed(0)
LAYERS = (0, 1, 2, 3, 4, 5)
def record(prompt, seed):
    acts = {layer: torch.randn(60, 32, generator=gen, dtype=torch.float64) for layer in LAYERS}
    for h in acts.values():
        h[0] *= 300.0  # an attention sink: huge first token
    traits = {name: {layer: [(1.0, torch.randn(32, generator=gen))] for layer in LAYERS}
              for name in ("optimism", "humor", "calm")}
    ids = list(range(1 + seed, 61 + seed))
    return build_record(prompt, "reply", ids[:15], ids[15:], tok, acts, traits, CALIBRATION)
records = [record("Tell me about rain", 0), record("Tell me about sun", 5)]
live_traits = {"optimism": {layer: torch.randn(32, generator=gen) for layer in (0, 1, 2)}}"""

VIEW = """\
view = TraitDynamics.live(tiny_model(), tiny_tokenizer(), live_traits, CALIBRATION,
                          records=records, mode="normalized", max_new_tokens=6,
                          sampling="greedy")
view"""

READ = """el => {
  if (!el.data || !el.data.length) return {type: 'none', sig: 'none'};
  const t = el.data[0];
  const z = t.z ? Array.from(t.z).flat() : [];
  return {
    type: t.type, title: (el.layout.title && el.layout.title.text) || '',
    zmax: t.zmax === undefined ? null : t.zmax,
    ncols: t.x ? t.x.length : 0,
    scale: t.colorscale || null,
    colorbar: t.colorbar && t.colorbar.title ? t.colorbar.title.text : null,
    width: el._fullLayout.width,
    sig: (t.type + '|' + ((el.layout.title && el.layout.title.text) || '') + '|' +
          JSON.stringify(z.slice(0, 40)) + JSON.stringify(t.y ? Array.from(t.y).slice(0, 20) : [])),
  };
}"""


def _plot(view: Any, css: str = ".tl-dynamics-figure") -> Any:
    return view.locator(f"{css} .js-plotly-plot").first


def _read(view: Any) -> dict[str, Any]:
    return _plot(view).evaluate(READ)


def _changes(page: Any, view: Any, action: Any) -> dict[str, Any]:
    """Do ``action`` and wait until the heatmap/lines figure shows something else."""
    before = _read(view)["sig"]
    action()
    handle = _plot(view).element_handle()
    page.wait_for_function(
        f"([el, old]) => {{ const r = ({READ})(el); return r.type !== 'none' && r.sig !== old; }}",
        arg=[handle, before],
        timeout=60_000,
    )
    page.wait_for_timeout(300)
    return _read(view)


def _press(target: Any, key: str) -> None:
    target.focus()
    target.press(key)


def _red(rgb: str) -> bool:
    r, _, b = (int(float(x)) for x in rgb[rgb.index("(") + 1 : -1].split(","))
    return r > b


def test_trait_dynamics_in_the_browser(browser, lab, artifacts) -> None:
    from playwright.sync_api import expect

    page = open_notebook(browser, lab.notebook("dynamics_scratch.ipynb", [SETUP, VIEW]))
    console: list[str] = []
    step = ["setup"]
    page.on("console", lambda msg: console.append(f"{step[0]}: {msg.type}: {msg.text}"))
    run_all(page, "dynamics_scratch.ipynb")
    view = page.locator(".tl-trait-dynamics").first
    expect(_plot(view)).to_be_visible(timeout=120_000)
    wait_until_idle(page)
    expect(_plot(view, ".tl-dynamics-details")).to_be_visible()
    page.wait_for_timeout(1000)
    view.scroll_into_view_if_needed()
    shot(page, artifacts, "03d_initial", view)
    shot(page, artifacts, "03d_initial_heatmap", _plot(view))

    # Colour: RdBu_r (blue low, red high), the colour bar states it and is on the page.
    first = _read(view)
    assert first["type"] == "heatmap"
    assert _red(first["scale"][-1][1]) and not _red(first["scale"][0][1]), first["scale"]
    assert POLE_NOTE in first["colorbar"].replace("<br>", " ")
    expect(_plot(view).locator(".cbtitle")).to_contain_text("red = positive pole")
    expect(_plot(view).locator(".cbtitle")).to_contain_text("blue = negative")
    # Fit: both figures and the colour bar inside the output area.
    assert first["width"] <= 940
    assert_inside_output_area(_plot(view))
    assert_inside_output_area(_plot(view).locator(".colorbar").first)
    assert_inside_output_area(_plot(view, ".tl-dynamics-details"))
    # Every layer row of the multi-select visible.
    rows = view.locator(".tl-layers select").evaluate(
        "el => ({size: el.size, n: el.options.length, fits: el.scrollHeight <= el.clientHeight})"
    )
    assert rows["n"] == 6 and rows["size"] >= rows["n"] and rows["fits"], rows
    # Velocity and magnitude panels under the heatmap.
    details = _plot(view, ".tl-dynamics-details")
    expect(details.locator(".annotation-text", has_text="velocity")).to_be_visible()
    expect(details.locator(".annotation-text", has_text="activation magnitude")).to_be_visible()
    details.scroll_into_view_if_needed()
    shot(page, artifacts, "03d_velocity_magnitude", details)
    names = details.evaluate("el => el.data.map(t => t.name)")
    assert names[:6] == [f"Δ L{i}" for i in range(6)] and names[6:] == [
        f"‖h‖ L{i}" for i in range(6)
    ]

    # Skip first N: the sink token leaves the colour range and the columns.
    skip = view.locator(".tl-skip input")
    step[0] = "skip"
    after = _changes(page, view, lambda: (skip.fill("1"), skip.press("Enter")))
    assert after["ncols"] == first["ncols"] - 1
    assert after["zmax"] < first["zmax"] / 5, (first["zmax"], after["zmax"])
    assert "first 1 skipped" in after["title"]
    shot(page, artifacts, "03d_skip_first_1", _plot(view))

    # Every other control.
    buttons = view.locator(".tl-view button")
    steps = [
        ("lines", lambda: buttons.filter(has_text="lines").click()),
        ("tokens × traits", lambda: buttons.filter(has_text="tokens × traits").click()),
        ("layer", lambda: view.locator(".tl-layer select").select_option("L3")),
        ("tokens × layers", lambda: buttons.filter(has_text="tokens × layers").click()),
        ("mode", lambda: view.locator(".tl-mode select").select_option("raw")),
        ("clean", lambda: view.locator(".tl-clean select").select_option("All candidates")),
        ("smoothing", lambda: _press(view.locator(".tl-smoothing .noUi-handle"), "ArrowRight")),
        ("centre", lambda: view.locator(".tl-centre input").check()),
        ("record", lambda: view.locator(".tl-record select").select_option(index=1)),
        ("layers", lambda: view.locator(".tl-layers select").select_option(["L1", "L4"])),
    ]
    for name, action in steps:
        step[0] = name
        shown = _changes(page, view, action)
        assert_inside_output_area(_plot(view))
        if shown["type"] == "heatmap":
            assert _red(shown["scale"][-1][1]), name
            assert POLE_NOTE in shown["colorbar"].replace("<br>", " "), name
        if name == "lines":
            shot(page, artifacts, "03d_lines", _plot(view))
    assert "Tell me about sun" in shown["title"] and "greedy" in shown["title"]
    shot(page, artifacts, "03d_after_every_control", _plot(view))

    # Analysis tabs: top spans, difference, correlation.
    tabs = view.locator(".tl-analyses .lm-TabBar-tab")
    step[0] = "spans tab"
    tabs.filter(has_text="top spans").click()
    table = view.locator(".tl-spans table")
    expect(table).to_be_visible()
    assert table.locator("tr").count() == 6  # header + top 5
    shot(page, artifacts, "03d_top_spans", view.locator(".tl-analyses"))
    step[0] = "difference tab"
    tabs.filter(has_text="difference").click()
    diff = _plot(view, ".tl-difference-figure")
    expect(diff).to_be_visible()
    expect(diff.locator(".gtitle")).to_contain_text("A − B")
    expect(diff.locator(".cbtitle")).to_contain_text("red = positive pole")
    assert_inside_output_area(diff)
    shot(page, artifacts, "03d_difference", view.locator(".tl-analyses"))
    step[0] = "correlation tab"
    tabs.filter(has_text="correlation").click()
    corr = _plot(view, ".tl-correlation-figure")
    expect(corr).to_be_visible()
    expect(corr.locator(".gtitle")).to_contain_text("trait–trait correlation")
    assert corr.evaluate("el => el.data[0].z.length") == 3
    shot(page, artifacts, "03d_correlation", view.locator(".tl-analyses"))

    # Live mode: type a prompt, press Run, the new record is shown.
    step[0] = "live run"
    view.locator(".tl-prompt input").fill("hello there")
    shown = _changes(page, view, lambda: view.locator("button.tl-run").click())
    assert "hello there" in shown["title"] and "greedy, ≤ 6 new tokens" in shown["title"]
    expect(view.locator(".tl-record select option")).to_have_count(3)
    expect(_plot(view).locator(".gtitle")).to_contain_text("hello there")  # drawn, not only set
    expect(view.locator(".tl-layers select option")).to_have_count(3)
    view.scroll_into_view_if_needed()
    shot(page, artifacts, "03d_live_run", view)

    (artifacts / "03d_console.txt").write_text("\n".join(console))
    nan = [m for m in console if "NaN" in m]
    assert nan == [], nan
    errors = [m for m in console if ": error: " in m]  # e.g. "Error setting state: ..."
    assert errors == [], errors
    page.close()
    lab.shutdown_kernels()
