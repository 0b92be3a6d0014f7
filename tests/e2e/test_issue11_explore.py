"""Issue 11 on the Explore page in headless Chromium, clicking like a user (no session-state shortcuts).

One SIMS run (fast preset, 10 epochs: seconds, and a matrix with something to click) on the demo serves the three tests, in this order:
- defect 10: "Cell map" shows a map at once, a PCA labelled as such while the UMAP is computed, then the UMAP;
- defect 2: a mouse click on a confusion-matrix cell lists those cells and highlights them on the map;
- defect 3: SIMS's per-cell view draws only the genes the cell's mask names, beside the cell's expression of them,
  and says what a mask means.
"""

from __future__ import annotations

import re
import time

import pytest
from e2e_helpers import SHOTS, go, load_demo, set_up_model, settle, view

pytestmark = pytest.mark.e2e

PCA_BUDGET_S = 15  # issue 11: a map within 15 s of the click on the demo
UMAP_BUDGET_S = 120  # the UMAP behind it; seconds when numba's cache is warm, generous for a busy shared machine


@pytest.fixture(scope="module")
def sims_run(page, server):
    """Demo → Model: SIMS, preset fast, 10 epochs → Train → finished."""
    pg = page
    load_demo(pg)
    set_up_model(pg, preset="fast", Max_epochs="10")
    go(pg, "Train")
    pg.get_by_role("button", name="Start training").click()
    pg.get_by_text("— finished").first.wait_for(timeout=300_000)
    go(pg, "Explore")
    pg.get_by_text("Macro F1 (test)").wait_for(timeout=60_000)
    return pg


def _title(pg, key: str) -> str:
    return pg.locator(f".st-key-{key} .gtitle").first.text_content() or ""


def test_cell_map_shows_a_pca_at_once_then_the_umap(sims_run):
    pg = sims_run
    t0 = time.monotonic()
    view(pg, "Cell map")
    plot = pg.locator(".st-key-explore-umap .js-plotly-plot").first
    plot.wait_for(timeout=PCA_BUDGET_S * 1000)
    t_first = time.monotonic() - t0
    first = _title(pg, "explore-umap")
    plot.evaluate("e => e.scrollIntoView({block: 'start'})")
    pg.screenshot(path=str(SHOTS / "issue11-map-pca.png"))
    if first.startswith("PCA"):  # the UMAP was not ready yet: the stand-in says what it is
        assert "UMAP computing" in first, first
        pg.locator(".st-key-explore-umap .gtitle", has_text=re.compile(r"^UMAP")).wait_for(
            timeout=UMAP_BUDGET_S * 1000)
    t_umap = time.monotonic() - t0
    assert _title(pg, "explore-umap").startswith("UMAP")
    assert pg.locator(".st-key-explore-umap").get_by_text("UMAP 1").count() >= 1
    settle(pg, 1)
    plot.evaluate("e => e.scrollIntoView({block: 'start'})")
    pg.screenshot(path=str(SHOTS / "issue11-map-umap.png"))
    print(f"\nfirst map after {t_first:.1f} s ({first.split(' ·')[0]}), UMAP after {t_umap:.1f} s")
    assert t_first <= PCA_BUDGET_S and first.startswith("PCA"), (t_first, first)


def test_clicking_a_confusion_cell_lists_and_highlights_its_cells(sims_run):
    pg = sims_run
    view(pg, "Per class")
    gd = pg.locator(".st-key-explore-cm .js-plotly-plot").first
    gd.wait_for(timeout=60_000)
    gd.scroll_into_view_if_needed()
    settle(pg, 1)
    # the biggest confusion off the diagonal (else the biggest cell): where a biologist would click first
    true_c, pred_c, n = pg.evaluate("""() => {
        const h = document.querySelector('.st-key-explore-cm .js-plotly-plot').data[0];
        let best = null;
        h.y.forEach((t, i) => h.x.forEach((p, j) => {
            const n = parseInt(String(h.text[i][j]).replace(/,/g, ''));
            const score = (t !== p ? 1e9 : 0) + n;
            if (n > 0 && (best === null || score > best[3])) best = [t, p, n, score];
        }));
        return best.slice(0, 3);
    }""")
    box = pg.evaluate("""([t, p]) => {
        const gd = document.querySelector('.st-key-explore-cm .js-plotly-plot');
        const fl = gd._fullLayout, r = gd.getBoundingClientRect();
        return [r.left + fl._size.l + fl.xaxis.d2p(p), r.top + fl._size.t + fl.yaxis.d2p(t)];
    }""", [true_c, pred_c])
    x, y = box[0] + 3, box[1] - 2  # a little off the centre, as a hand clicks
    pg.mouse.move(x, y)
    time.sleep(0.5)
    pg.mouse.click(x, y)
    listed = pg.get_by_text(f"{n:,} test cells of type {true_c} predicted as {pred_c}", exact=False)
    listed.first.wait_for(timeout=60_000)
    settle(pg, 1)
    pg.locator("[data-testid='stDataFrame']").first.wait_for(timeout=30_000)  # the cells, listed
    cmap = pg.locator(".st-key-explore-cm-map")
    cmap.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    cmap.get_by_text(f"highlighted ({n:,})").first.wait_for(timeout=30_000)
    # the clicked cell is outlined on the matrix
    assert pg.evaluate("() => document.querySelector('.st-key-explore-cm .js-plotly-plot').layout.shapes.length") == 1
    pg.locator(".st-key-explore-cm").evaluate("e => e.scrollIntoView({block: 'start'})")
    settle(pg, 1)
    pg.screenshot(path=str(SHOTS / "issue11-confusion-click.png"))
    listed.first.evaluate("e => e.scrollIntoView({block: 'start'})")
    settle(pg, 1)
    pg.screenshot(path=str(SHOTS / "issue11-confusion-click-map.png"))


def test_sims_cell_view_shows_only_the_looked_at_genes_beside_their_expression(sims_run):
    pg = sims_run
    view(pg, "Explanations")
    assert pg.get_by_text("looked at", exact=False).count() >= 1  # what a mask means, in one line
    bar = pg.locator(".st-key-explore-cellbar .js-plotly-plot").first
    bar.wait_for(timeout=120_000)
    # another type and another cell, as a user picks them
    box = pg.get_by_role("combobox", name="Cell type", exact=True)
    box.scroll_into_view_if_needed()
    settle(pg, 1)  # the figures above finish drawing (a click during layout shifts misses)
    box.click()
    pg.get_by_role("option", name="B", exact=True).click()
    settle(pg, 1)
    pg.locator(".st-key-explore-cell input").fill("2")
    pg.keyboard.press("Enter")
    settle(pg, 1.5)
    bar.wait_for(timeout=60_000)
    traces = pg.evaluate("""() => {
        const gd = document.querySelector('.st-key-explore-cellbar .js-plotly-plot');
        return gd._fullData.map(d => ({name: d.name, x: Array.from(d.x), y: Array.from(d.y)}));
    }""")
    assert len(traces) == 2, traces  # the mask and, beside it, the expression
    scores, expr = traces
    assert 0 < len(scores["y"]) <= 30 and all(v != 0 for v in scores["x"]), scores
    assert expr["y"] == scores["y"] and all(v >= 0 for v in expr["x"])
    title = _title(pg, "explore-cellbar")
    assert f"{len(scores['y'])} of " in title, title
    pg.get_by_text("One cell at a time").first.evaluate("e => e.scrollIntoView({block: 'start'})")
    settle(pg, 1)
    pg.screenshot(path=str(SHOTS / "issue11-sims-cell.png"))
