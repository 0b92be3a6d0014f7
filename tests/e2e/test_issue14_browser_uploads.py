"""Issue 14 in the browser: a corrected file uploaded again under the same name, with the same size, is the one the
Data page reads (it used to show the first file's data), and an upload can be kept beyond the session."""

from __future__ import annotations

import hashlib
import json
import time

import numpy as np
import pytest
from e2e_helpers import REPO, SHOTS, settle

pytestmark = pytest.mark.e2e


def _tables() -> tuple[bytes, bytes]:
    """Two CSVs of the same 60 real cells × 300 genes, the same name and size: counts 1-4 in the first, the same
    counts + 5 (6-9) in the corrected one, so every cell's total differs and every number keeps one digit."""
    import anndata as ad

    a = ad.read_h5ad(REPO / "assets" / "demo_pbmc3k.h5ad")
    X = np.asarray(a.X[:60, :300].todense(), dtype=np.int64)
    X = np.where(X > 0, np.clip(X, 1, 4), 0)
    cols = ",".join(a.var_names[:300])

    def csv(M: np.ndarray) -> bytes:
        rows = [f"{c}," + ",".join(map(str, r)) for c, r in zip(a.obs_names[:60], M)]
        return ("cell," + cols + "\n" + "\n".join(rows) + "\n").encode()

    first, fixed = csv(X), csv(np.where(X > 0, X + 5, 0))
    assert len(first) == len(fixed) and first != fixed
    return first, fixed


def _median_counts(pg) -> str:
    metric = pg.locator("[data-testid='stMetric']", has_text="Median counts")
    metric.first.wait_for(timeout=120_000)
    return metric.first.locator("[data-testid='stMetricValue']").inner_text().strip()


def _upload(pg, data: bytes) -> None:
    pg.locator("[data-testid='stFileUploaderDropzoneInput']").first.set_input_files(
        {"name": "cells.csv", "mimeType": "text/csv", "buffer": data})
    settle(pg, 2)


def test_a_corrected_reupload_of_the_same_name_and_size_is_what_the_page_shows(page, server):
    pg, runs_dir = page, server[1]
    first, fixed = _tables()
    _upload(pg, first)
    before = _median_counts(pg)
    _upload(pg, fixed)
    t0 = time.time()
    while _median_counts(pg) == before and time.time() - t0 < 30:
        time.sleep(0.5)
    after = _median_counts(pg)
    pg.screenshot(path=str(SHOTS / "issue14-reupload.png"), full_page=True)
    assert after != before, f"the corrected upload still shows the first file's median counts ({before})"
    X = np.array([[int(v) for v in line.split(",")[1:]] for line in fixed.decode().splitlines()[1:]])
    assert after == f"{np.median(X.sum(axis=1)):,.0f}"

    # keep it: the box marks the stored upload as kept (the sweep then leaves it after the session)
    uploads = runs_dir.parent / "uploads"
    box = pg.get_by_text("Keep this upload after this session")
    box.click()
    settle(pg, 1)
    metas = {json.loads(p.read_text())["sha256"][:8]: json.loads(p.read_text()) for p in uploads.glob("*/.scapp-*.json")}
    assert metas[hashlib.sha256(fixed).hexdigest()[:8]]["keep"] is True
    assert metas[hashlib.sha256(first).hexdigest()[:8]]["keep"] is False
    pg.screenshot(path=str(SHOTS / "issue14-upload-kept.png"))
