"""Issue 13 in headless Chromium at 1400×900, clicking like a user: the demo → Model: self-supervised pretraining,
fast preset with 2 epochs, "Pretrain on unlabeled cells first" on the demo's query and the demo itself (2 epochs),
"Also train from scratch for comparison" left on → Train: the job's three steps, the pretraining run's
reconstruction-loss curve → Explore: "What pretraining changed", per-class recall from scratch beside pretrained.

Kept short for CI: tiny epochs on the demo's 2,638 + 1,500 cells (each step takes seconds; process starts dominate).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from e2e_helpers import SHOTS, go, load_demo, set_up_model, settle, view

pytestmark = pytest.mark.e2e


def _run_dirs(runs_dir: Path) -> set[Path]:
    return {p for p in runs_dir.iterdir() if p.is_dir()}


def test_pretrain_on_demo_and_query_then_fine_tune_and_see_what_pretraining_changed(page, server):
    from scapp import runs

    pg = page
    _, runs_dir = server
    load_demo(pg)
    set_up_model(pg, "ssl", "fast", Max_epochs="2")

    # the pretraining choice: the demo's query is offered (and picked) first; add the demo's own cells
    pg.get_by_text("Pretrain on unlabeled cells first").click()
    settle(pg)
    files = pg.locator(".st-key-model-pre-files")
    assert "demo_pbmc4k_query.h5ad" in files.inner_text()
    files.locator("input").click()
    pg.get_by_role("option", name=re.compile(r"demo_pbmc3k\.h5ad")).click()
    pg.keyboard.press("Escape")
    settle(pg)
    epochs = pg.get_by_label("Pretraining epochs", exact=True)
    epochs.fill("2")
    epochs.press("Enter")
    settle(pg)
    assert pg.get_by_label("Also train from scratch for comparison", exact=True).is_checked()
    plan = pg.get_by_text(re.compile(r"The Train page will run: pretraining \(masked autoencoder, up to 2 epochs\) "
                                     r"on demo_pbmc4k_query\.h5ad, demo_pbmc3k\.h5ad"))
    plan.wait_for()
    # how long the pretraining takes, from the two files' cell counts (read without loading them)
    assert pg.get_by_text(re.compile(r"Pretraining at most about \d+ s \(2 epochs over 4,138 cells; (built-in "
                                     r"calibration|median of \d+ past pretraining run)")).is_visible()
    plan.evaluate("e => e.scrollIntoView({block: 'center'})")
    time.sleep(0.5)
    pg.screenshot(path=str(SHOTS / "issue13-model-pretraining.png"))

    before = _run_dirs(runs_dir)
    go(pg, "Train")
    pg.get_by_text("Runs pretraining (masked autoencoder").wait_for()
    pg.get_by_role("button", name="Start training").click()
    # the job's steps are listed at once; the run followed is the fine-tune, which waits for the other two
    pg.locator("h3", has_text=re.compile(r"step \d of 3")).wait_for(timeout=60_000)
    new = _run_dirs(runs_dir) - before
    assert len(new) == 3, new
    pre = next(p for p in new if p.name.split("-")[2] == "pretrain")
    pg.get_by_text("Pretraining on unlabelled cells: run").wait_for()
    # the pretraining run's own loss curve, live or just finished
    pg.get_by_text("Reconstruction loss (hidden genes)").first.wait_for(timeout=300_000)
    pg.screenshot(path=str(SHOTS / "issue13-train-steps.png"))
    pg.locator("h3", has_text=re.compile(r"— finished")).wait_for(timeout=600_000)
    assert runs.read_status(pre)["state"] == "finished" and runs.RunStore(pre).config()["kind"] == "pretraining"
    assert all(runs.read_status(p)["state"] == "finished" for p in new)
    assert pg.get_by_text("From scratch, for comparison: run").is_visible()
    assert pg.get_by_text("Fine-tuning from the pretrained encoder: run").is_visible()
    curve = pg.get_by_text("Reconstruction loss (hidden genes)").first
    curve.evaluate("e => e.scrollIntoView({block: 'center'})")
    time.sleep(1)
    pg.screenshot(path=str(SHOTS / "issue13-train-pretraining-curve.png"))
    assert pg.get_by_text(re.compile(r"genes hidden from each cell")).first.is_visible()

    go(pg, "Explore")
    view(pg, "What pretraining changed")
    pg.get_by_text("Recall per cell type: from scratch vs pretrained").wait_for(timeout=120_000)
    assert pg.get_by_text(re.compile(r"Started from pretraining run .*: \d[\d,]* cells from "
                                     r"demo_pbmc4k_query\.h5ad, demo_pbmc3k\.h5ad")).is_visible()
    assert pg.get_by_text("Macro F1, pretrained").is_visible()
    ft = next(p for p in new if runs.RunStore(p).config().get("from_run"))
    scratch = next(p for p in new if p not in (pre, ft))
    picked = pg.locator(f".st-key-explore-scratch-{ft.name} input").input_value()
    assert scratch.name in picked and "trained alongside" in picked, picked  # the comparison run queued with it
    pg.get_by_text("Recall per cell type: from scratch vs pretrained").evaluate(
        "e => e.scrollIntoView({block: 'center'})")
    time.sleep(1)
    pg.screenshot(path=str(SHOTS / "issue13-explore-what-pretraining-changed.png"))


def test_no_label_choice_survives_a_reload_and_leaves_only_label_free_methods(page, server):
    """Data page → "no label": the address remembers it, and the Model page offers only methods that need no
    labels (chosen by capability)."""
    pg = page
    load_demo(pg)
    select = pg.get_by_role("combobox", name="Label column (the cell types to learn)")
    select.scroll_into_view_if_needed()
    select.click()
    pg.get_by_role("option", name=re.compile(r"no label \(denoising")).click()
    settle(pg, 1.5)
    pg.get_by_text("only methods that learn without labels can be trained").wait_for()
    assert "nolabel=1" in pg.url and "label=" not in pg.url.replace("nolabel=", "")
    pg.reload()
    settle(pg, 2)
    assert "no label" in pg.locator(".st-key-data-label input").input_value()
    go(pg, "Model")
    pg.get_by_text("No label column was chosen on the Data page").wait_for()
    assert pg.locator(".st-key-model-pick-logreg button").first.is_disabled()
    assert pg.locator(".st-key-model-pick-sims button").first.inner_text() == "Needs a label column"
    assert pg.locator(".st-key-model-pick-ssl button").first.is_enabled()
    assert pg.locator(".st-key-model-pick-zipo button").first.is_enabled()
    assert pg.get_by_text("Pretraining on unlabelled cells").count() == 0  # nothing to fine-tune on
    pg.screenshot(path=str(SHOTS / "issue13-model-no-label.png"))
    go(pg, "Train")
    pg.get_by_text("no labels (every cell is used, nothing is scored)").wait_for()
