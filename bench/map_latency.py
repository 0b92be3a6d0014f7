"""Explore's cell map in a real browser: seconds from the click on "Cell map" to a map on screen, and to the UMAP.

Issue 11 (defect 10). Serves a checkout (``--repo``, default this one) on a copy of one finished run (its stored
maps removed, so the map is computed), opens Explore, clicks "Cell map" and times

* ``first``: any map plotted (this checkout: the PCA stand-in, labelled "PCA … UMAP computing…");
* ``umap``: the UMAP plotted (a checkout without the stand-in shows nothing before it).

``--cold`` points numba's cache at an empty folder (``NUMBA_CACHE_DIR``): the first map after an install, when
umap-learn's functions are compiled (and, as the folder is new, pynndescent's too). Without it, whatever cache the
machine has is used. A 20k-cell sample of a 100k-cell run needs a run of 100k cells: ``--fake-cells 100000``
resamples the run's predictions and latent space to that many cells (with a little noise), which is all the map
reads; the other views of such a run are not meaningful.

    python bench/map_latency.py --run runs/<id>                    # demo run, this checkout, warm cache
    python bench/map_latency.py --run runs/<id> --cold
    python bench/map_latency.py --run runs/<id> --repo ../before    # the same for another checkout
    python bench/map_latency.py --run runs/<id> --fake-cells 100000
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
READY = "[data-testid='stApp'][data-test-script-state='notRunning']"


def _fake_cells(run: Path, n: int) -> None:
    """Resample a run's predictions and latent to ``n`` cells (what its map reads)."""
    import numpy as np

    from scapp.runs import RunStore

    store = RunStore(run)
    pred, emb = store.predictions(), store.embedding()
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(pred), n)
    p = pred.iloc[pick].reset_index(drop=True)
    p["cell_id"] = [f"cell{i}" for i in range(n)]
    store.write_predictions(p)
    if emb is not None:
        noise = rng.normal(0, 0.05, (n, emb.shape[1])) * emb.std(0)
        store.write_embedding((emb[pick] + noise).astype(np.float32))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True, type=Path, help="a finished run folder (copied, never changed)")
    ap.add_argument("--repo", type=Path, default=REPO, help="the checkout to serve")
    ap.add_argument("--cold", action="store_true", help="an empty numba cache folder")
    ap.add_argument("--fake-cells", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=600)
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = Path(tmp) / "runs"
        run = runs_dir / a.run.resolve().name
        shutil.copytree(a.run, run)
        from scapp.runs import RunStore

        for f in RunStore(run).cell_map_path(0).parent.glob("umap*"):  # drop the cached maps: time a fresh one
            f.unlink()
        if a.fake_cells:
            _fake_cells(run, a.fake_cells)
        env = {**os.environ, "SCAPP_RUNS_DIR": str(runs_dir)}
        if a.cold:
            env["NUMBA_CACHE_DIR"] = str(Path(tmp) / "numba")
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                                 "--server.headless", "true"], cwd=a.repo, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with sync_playwright() as pw:
                b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
                pg = b.new_page(viewport={"width": 1400, "height": 900})
                for _ in range(120):
                    try:
                        pg.goto(f"http://127.0.0.1:{port}/explore")
                        break
                    except Exception:  # noqa: BLE001 - server still starting
                        time.sleep(0.5)
                pg.wait_for_selector(READY, timeout=120_000)
                pg.get_by_text("Macro F1 (test)").wait_for(timeout=120_000)
                t0 = time.monotonic()
                pg.locator(".st-key-explore-view").get_by_text("Cell map", exact=True).click()
                plot = pg.locator(".st-key-explore-umap .js-plotly-plot").first
                plot.wait_for(timeout=a.timeout * 1000)
                first = time.monotonic() - t0
                title = pg.locator(".st-key-explore-umap .gtitle").first.text_content() or ""
                if title.startswith("PCA"):
                    pg.locator(".st-key-explore-umap .gtitle", has_text="UMAP ·").wait_for(timeout=a.timeout * 1000)
                umap = time.monotonic() - t0
                b.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    n = a.fake_cells or "run's"
    print(f"{a.repo.resolve().name} · {n} cells · {'cold' if a.cold else 'warm'} numba cache · first map "
          f"{first:.1f} s ({title.split(' ·')[0][:40]!r}) · UMAP {umap:.1f} s · load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
