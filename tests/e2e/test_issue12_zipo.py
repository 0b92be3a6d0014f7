"""Issue 12 in headless Chromium, clicking like a user: load the demo, pick ZiPo on the Model page (fast preset, fewer
epochs through the form), train, open Explore and see one gene raw vs denoised on the cell map, then the library
size, zero inflation, first-layer sparsity and a gene program found through the search box.

One short ZiPo run (fast preset, 30 epochs: seconds on the demo) serves the tests, in this order.
"""

from __future__ import annotations

import re

import pytest
from e2e_helpers import SHOTS, go, load_demo, set_up_model, settle, view

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def zipo_run(page):
    """Demo → Model: ZiPo, preset fast, 30 epochs → Train → finished → Explore."""
    pg = page
    load_demo(pg)
    set_up_model(pg, "zipo", "fast", Max_epochs="30")
    go(pg, "Train")
    pg.get_by_role("button", name="Start training").click()
    pg.get_by_text("— finished").first.wait_for(timeout=400_000)
    go(pg, "Explore")
    pg.get_by_text("Macro F1 (test)").wait_for(timeout=60_000)  # labelled demo: it also annotates
    return pg


def _plot(pg, key: str) -> dict:
    """What a plotly chart drew: its traces' types and point counts, its title, panel titles and meta."""
    return pg.evaluate("""(key) => {
        const gd = document.querySelector(`.st-key-${key} .js-plotly-plot`);
        if (!gd) return null;
        return {types: gd._fullData.map(t => t.type), points: gd._fullData.map(t => (t.x || []).length),
                title: (gd.layout.title || {}).text || '', meta: gd.layout.meta || {},
                panels: (gd.layout.annotations || []).map(a => a.text),
                width: gd.getBoundingClientRect().width, height: gd.getBoundingClientRect().height};
    }""", key)


def test_explore_shows_a_gene_raw_vs_denoised_on_the_cell_map(zipo_run):
    pg = zipo_run
    view(pg, "Denoising")
    plot = pg.locator(".st-key-explore-dn-gene .js-plotly-plot").first
    plot.wait_for(timeout=180_000)
    settle(pg, 1)
    plot.evaluate("e => e.scrollIntoView({block: 'start'})")
    settle(pg, 0.5)
    pg.screenshot(path=str(SHOTS / "issue12-zipo-raw-vs-denoised.png"))
    info = _plot(pg, "explore-dn-gene")
    assert info is not None, "no raw-vs-denoised map on the Denoising view"
    g = info["meta"].get("gene")
    assert g, info
    assert info["types"] == ["scattergl", "scattergl"] and min(info["points"]) > 1000, info  # both maps drawn
    assert "raw counts" in info["panels"][0] and "denoised" in info["panels"][1], info["panels"]
    assert all(g in p for p in info["panels"][:2]), info["panels"]
    assert info["width"] > 900 and info["height"] >= 450, info  # side by side, not squashed
    # the gene is named in the select box the user can type into
    box = pg.locator("[data-testid='stSelectbox']", has=pg.get_by_text("Gene (type to search)")).first
    shown = box.inner_text() + " " + " ".join(i.input_value() for i in box.locator("input").all())
    assert g in shown, (g, shown)


def test_a_gene_typed_in_the_box_is_mapped(zipo_run):
    pg = zipo_run
    box = pg.locator("[data-testid='stSelectbox']", has=pg.get_by_text("Gene (type to search)")).first
    box.click()
    pg.keyboard.type("CD79A")
    pg.keyboard.press("Enter")
    settle(pg, 2)
    pg.wait_for_function("""() => {
        const gd = document.querySelector('.st-key-explore-dn-gene .js-plotly-plot');
        return gd && gd.layout.meta && gd.layout.meta.gene === 'CD79A';
    }""", timeout=120_000)
    assert all("CD79A" in p for p in _plot(pg, "explore-dn-gene")["panels"][:2])


def test_library_size_and_zero_inflation_panels(zipo_run):
    pg = zipo_run
    lib, zero = _plot(pg, "explore-dn-lib"), _plot(pg, "explore-dn-zero")
    assert lib and re.search(r"Pearson r of the logs = 0\.\d{3}", lib["title"]), lib
    assert sum(lib["points"][:-1]) == 2638, lib  # every demo cell (the last trace is the y = x line)
    assert zero and zero["points"][0] > 1000 and "Zero inflation" in zero["title"], zero
    pg.locator(".st-key-explore-dn-lib").evaluate("e => e.scrollIntoView({block: 'start'})")
    settle(pg, 0.5)
    pg.screenshot(path=str(SHOTS / "issue12-zipo-library-zero.png"))


def test_gene_programs_with_sparsity_and_a_gene_search(zipo_run):
    pg = zipo_run
    view(pg, "Gene programs")
    pg.locator(".st-key-explore-gp-sparsity .js-plotly-plot").first.wait_for(timeout=60_000)
    sp = _plot(pg, "explore-gp-sparsity")
    assert re.search(r"First-layer sparsity: [\d.]+% of the weights pruned at δ = 0\.0001", sp["title"]), sp
    pg.locator(".st-key-explore-gp-sparsity").evaluate("e => e.scrollIntoView({block: 'start'})")
    settle(pg, 0.5)
    pg.screenshot(path=str(SHOTS / "issue12-zipo-sparsity.png"))
    box = pg.locator("[data-testid='stSelectbox']", has=pg.get_by_text("Search a gene")).first
    box.click()
    pg.keyboard.type("LYZ")
    pg.keyboard.press("Enter")
    settle(pg, 2)
    found = pg.get_by_text(re.compile(r"LYZ is in \d+ first-layer units?"))
    found.first.wait_for(timeout=60_000)
    bar = _plot(pg, "explore-gp-bar")
    assert bar and "Gene program of first-layer unit" in bar["title"], bar
    labels = pg.evaluate("() => Array.from(document.querySelector('.st-key-explore-gp-bar .js-plotly-plot')"
                         "._fullData[0].y)")
    assert any(y.startswith("LYZ") for y in labels), labels  # the searched gene is on the unit's bars
    pg.evaluate("() => document.querySelector('.st-key-explore-gp-bar').scrollIntoView({block: 'end'})")
    settle(pg, 0.5)
    found.first.evaluate("e => e.scrollIntoView({block: 'start'})")
    settle(pg, 0.5)
    pg.screenshot(path=str(SHOTS / "issue12-zipo-programs.png"))


def test_the_gene_map_moves_to_the_runs_umap_once_it_is_computed(zipo_run):
    """The raw-vs-denoised maps reuse the run's cell map: a PCA at once, the stored UMAP when it is there."""
    pg = zipo_run
    view(pg, "Denoising")
    pg.locator(".st-key-explore-dn-gene .gtitle", has_text=re.compile(r"raw vs denoised on the UMAP")).wait_for(
        timeout=180_000)
    settle(pg, 1)
    info = _plot(pg, "explore-dn-gene")
    assert info["types"] == ["scattergl", "scattergl"] and min(info["points"]) == 2638, info
    pg.locator(".st-key-explore-dn-gene").evaluate("e => e.scrollIntoView({block: 'start'})")
    settle(pg, 0.5)
    pg.screenshot(path=str(SHOTS / "issue12-zipo-raw-vs-denoised-umap.png"))
