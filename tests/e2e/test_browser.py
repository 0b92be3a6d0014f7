"""End to end in headless Chromium: demo data → train SIMS 2 epochs → Explore plots → annotate → CSV.

Screenshots of every page land in ``test-artifacts/`` for a person to look at.
"""

from __future__ import annotations

import re
import time

import pandas as pd
import pytest
from e2e_helpers import READY, SHOTS
from e2e_helpers import go as _go
from e2e_helpers import settle as _settle
from e2e_helpers import view as _view

pytestmark = pytest.mark.e2e


def test_demo_train_explore_annotate(page, server, tmp_path):
    pg = page
    pg.get_by_role("button", name="Load demo dataset").click()
    _settle(pg, 2)
    pg.get_by_text("2,638").first.wait_for()
    pg.screenshot(path=str(SHOTS / "data.png"), full_page=True)

    _go(pg, "Model")
    epochs = pg.get_by_label("Max epochs", exact=True)
    epochs.fill("2")
    pg.get_by_role("button", name="Save settings").click()
    _settle(pg)
    pg.screenshot(path=str(SHOTS / "model.png"), full_page=True)

    _go(pg, "Train")
    pg.get_by_role("button", name="Start training").click()
    pg.get_by_text("— finished").wait_for(timeout=300_000)
    time.sleep(1.5)
    pg.screenshot(path=str(SHOTS / "train.png"), full_page=True)

    _go(pg, "Explore")
    pg.get_by_text("Macro F1 (test)").wait_for(timeout=60_000)
    pg.wait_for_selector(".js-plotly-plot", timeout=60_000)
    assert pg.get_by_text("Confusion matrix", exact=False).count() >= 1
    pg.screenshot(path=str(SHOTS / "explore.png"), full_page=True)
    pg.locator(".st-key-explore-view").get_by_text("Cell map", exact=True).click()
    # the UMAP is computed in a background process the first time
    pg.locator(".st-key-explore-umap .js-plotly-plot").first.wait_for(timeout=300_000)
    _settle(pg, 2)
    pg.screenshot(path=str(SHOTS / "explore-map.png"), full_page=True)
    pg.locator(".st-key-explore-view").get_by_text("Explanations", exact=True).click()
    dot = pg.locator(".st-key-explore-dot")
    dot.wait_for(timeout=60_000)
    dot.scroll_into_view_if_needed()
    _settle(pg, 1)
    pg.screenshot(path=str(SHOTS / "explore-explain.png"), full_page=True)
    dot.screenshot(path=str(SHOTS / "explore-dotplot.png"))

    _go(pg, "Annotate")
    pg.get_by_role("button", name="Use demo query").click()  # PBMC 4k: another donor, chemistry and lab
    _settle(pg, 2)
    pg.get_by_text("1,500").first.wait_for(timeout=60_000)
    pg.get_by_role("button", name="Predict").click()
    pg.get_by_role("button", name="Download CSV").wait_for(timeout=180_000)
    with pg.expect_download() as dl:
        pg.get_by_role("button", name="Download CSV").click()
    path = tmp_path / "pred.csv"
    dl.value.save_as(path)
    df = pd.read_csv(path)
    assert list(df.columns[:4]) == ["cell_id", "label", "confidence", "unassigned"] and len(df) == 1500
    pg.screenshot(path=str(SHOTS / "annotate.png"), full_page=True)

    # a second model on the same data (logistic regression trains in seconds), then compare the two
    _go(pg, "Model")
    pg.locator(".st-key-model-pick-logreg button").click()
    _settle(pg)
    _go(pg, "Train")
    pg.get_by_role("button", name="Start training").click()
    pg.locator("h3", has_text=re.compile(r"logreg.*finished")).wait_for(timeout=300_000)
    _go(pg, "Runs")
    pg.screenshot(path=str(SHOTS / "runs.png"), full_page=True)
    _go(pg, "Compare")
    pg.get_by_text("Cells they disagree on").wait_for(timeout=60_000)
    pg.locator(".st-key-compare-agree .js-plotly-plot").wait_for(timeout=60_000)
    _settle(pg, 1.5)
    pg.screenshot(path=str(SHOTS / "compare.png"), full_page=True)
    for key in ("compare-metrics", "compare-agree"):
        el = pg.locator(f".st-key-{key}")
        el.scroll_into_view_if_needed()
        el.screenshot(path=str(SHOTS / f"{key}.png"))
    table = pg.get_by_text("Cells where the runs disagree")
    table.scroll_into_view_if_needed()
    _settle(pg, 0.5)
    pg.screenshot(path=str(SHOTS / "compare-disagreements.png"))


def test_reload_reattaches_to_a_running_job_and_stop_stops_it(page, server):
    pg = page
    pg.goto(server[0])
    _settle(pg, 1)
    pg.get_by_role("button", name="Load demo dataset").click()
    _settle(pg, 2)
    _go(pg, "Model")
    pg.get_by_label("Max epochs", exact=True).fill("400")
    pg.get_by_role("button", name="Save settings").click()
    _settle(pg)
    _go(pg, "Train")
    pg.get_by_role("button", name="Start training").click()
    pg.get_by_text("— running").wait_for(timeout=180_000)
    # the page polls once a second, so a fast machine may skip a given epoch: wait for any epoch past the first
    pg.get_by_text(re.compile(r"epoch ([2-9]|\d{2,3})/400")).first.wait_for(timeout=180_000)
    pg.reload()  # a new browser session: nothing in session state, the job is found on disk
    pg.wait_for_selector(READY, timeout=120_000)
    _go(pg, "Train")
    pg.get_by_text("— running").wait_for(timeout=60_000)
    pg.screenshot(path=str(SHOTS / "train-running-after-reload.png"), full_page=True)
    pg.get_by_role("button", name="Stop").click()
    pg.get_by_text("— cancelled").wait_for(timeout=180_000)
    time.sleep(1.5)
    assert pg.get_by_text("best model so far").count() >= 1
    pg.screenshot(path=str(SHOTS / "train-stopped.png"), full_page=True)


def test_hydra_trains_and_shows_its_marker_heatmap(page, server):
    pg = page
    _go(pg, "Data")
    pg.get_by_role("button", name="Load demo dataset").click()
    _settle(pg, 2)
    _go(pg, "Model")
    pg.locator(".st-key-model-pick-hydra button").click()
    _settle(pg)
    pg.get_by_text(re.compile(r"^fast \(")).click()
    _settle(pg)
    for label, value in (("Max epochs", "3"), ("Ensemble size", "3"), ("Refinement epochs", "2"),
                         ("IG cells per class", "20")):
        pg.get_by_label(label, exact=True).fill(value)
    pg.get_by_role("button", name="Save settings").click()
    _settle(pg)
    pg.screenshot(path=str(SHOTS / "model-hydra.png"), full_page=True)
    _go(pg, "Train")
    pg.get_by_role("button", name="Start training").click()
    pg.locator("h3", has_text=re.compile(r"hydra.*finished")).wait_for(timeout=400_000)
    _go(pg, "Explore")
    pg.get_by_text("Macro F1 (test)").wait_for(timeout=60_000)
    _view(pg, "Explanations")
    pg.get_by_text("Integrated-Gradients markers per cell type").wait_for(timeout=60_000)
    heat = pg.locator(".st-key-explore-heat .js-plotly-plot")
    heat.wait_for(timeout=60_000)
    heat.scroll_into_view_if_needed()
    _settle(pg, 1)
    pg.locator(".st-key-explore-heat").screenshot(path=str(SHOTS / "explore-hydra-ig-heatmap.png"))
    over = pg.locator(".st-key-explore-overlap .js-plotly-plot")
    over.wait_for(timeout=60_000)
    over.scroll_into_view_if_needed()
    _settle(pg, 0.5)
    pg.locator(".st-key-explore-overlap").screenshot(path=str(SHOTS / "explore-hydra-overlap.png"))
    rare = pg.locator(".st-key-explore-rare")
    rare.scroll_into_view_if_needed()
    rare.screenshot(path=str(SHOTS / "explore-hydra-rare.png"))
    assert pg.get_by_text("Model markers vs Wilcoxon markers").count() >= 1


def test_compare_combines_two_runs_into_an_ensemble_and_explores_it(page, server):
    """The Compare page's button combines the newest two runs on the demo (same seed and split); Explore then shows
    the members' scores beside the ensemble's and a member's explanations."""
    pg = page
    _go(pg, "Compare")
    pg.get_by_text("Same call by every run").wait_for(timeout=60_000)
    button = pg.get_by_role("button", name="Combine into an ensemble")
    button.scroll_into_view_if_needed()
    button.click()
    pg.get_by_text(re.compile(r"^Ensemble .*: weights")).wait_for(timeout=120_000)
    pg.screenshot(path=str(SHOTS / "compare-ensemble.png"), full_page=True)
    pg.get_by_role("link", name="Explore the ensemble").click()
    _settle(pg, 1.5)
    pg.get_by_text("Macro F1 (test)").wait_for(timeout=60_000)
    assert pg.get_by_text(re.compile(r"ensemble on demo_pbmc3k")).count() >= 1
    _view(pg, "Members")
    bars = pg.locator(".st-key-explore-members .js-plotly-plot")
    bars.wait_for(timeout=60_000)
    _settle(pg, 1)
    pg.locator(".st-key-explore-members").screenshot(path=str(SHOTS / "explore-ensemble-members.png"))
    _view(pg, "Explanations")
    pg.get_by_text("Member", exact=True).first.wait_for(timeout=60_000)
    pg.locator(".st-key-explore-heat .js-plotly-plot").wait_for(timeout=60_000)
    pg.screenshot(path=str(SHOTS / "explore-ensemble-explain.png"), full_page=True)
