"""App latency in a real browser (Debian Chromium via Playwright).

* start: ``streamlit run`` → first painted Data page (title visible), against a bare one-line
  Streamlit app started the same way (the floor no app change can beat);
* page switches: each sidebar link → that page's script finished, with a run active;
* with ``--cells N`` (repeatable): a dataset of N real pbmc3k cells resampled with binomial
  thinning (``scapp.data.demo.resample_cells``), a run trained on it headless with the CLI, that
  dataset loaded on the Data page and that run active: the Data page's first load, page switches,
  Explore's cell map (first open, which computes the UMAP in the background, reported apart from
  later opens) and switching the colour-by.

    python bench/app_latency.py                                   # demo-sized: an empty runs folder
    python bench/app_latency.py --cells 100000 --cells 1000000    # big runs (cached in --work)

Datasets and runs are kept in ``--work`` and reused; the cell map cache of a run is deleted
before each session (``--keep-map`` keeps it) so the first open is measured every time.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import DATA, machine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
READY = "[data-testid='stApp'][data-test-script-state='notRunning']"
CHROMIUM = "/usr/bin/chromium"
PAGES = ["Model", "Train", "Explore", "Annotate", "Runs", "Compare", "Data"]
HEADINGS = {"Compare": "Compare runs"}
# set before a click: becomes true once the app's script has started running again
WATCH = """() => { window.__ran = false; window.__t0 = performance.now();
  const app = document.querySelector("[data-testid='stApp']");
  if (window.__obs) window.__obs.disconnect();
  window.__obs = new MutationObserver((records) => { for (const r of records)
    if (r.oldValue === 'running' || app.getAttribute('data-test-script-state') === 'running') window.__ran = true; });
  window.__obs.observe(app, {attributes: true, attributeFilter: ['data-test-script-state'], attributeOldValue: true});
}"""
# finished: a rerun was seen and is over (or, should its start have been missed, nothing ran for 3 s)
DONE = ("() => (window.__ran || performance.now() - window.__t0 > 3000) && document.querySelector("
        "\"[data-testid='stApp']\").getAttribute('data-test-script-state') === 'notRunning'")


def _port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def _serve(app_dir: Path, script: str, runs_dir: str) -> tuple[subprocess.Popen, int]:
    port = _port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port),
                             "--server.headless", "true", "--browser.gatherUsageStats", "false"],
                            cwd=app_dir, env={**os.environ, "SCAPP_RUNS_DIR": runs_dir},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, port


def _open(pg, port: int, timeout_s: float = 120) -> None:
    end = time.time() + timeout_s
    while True:
        try:
            pg.goto(f"http://127.0.0.1:{port}")
            return
        except Exception:  # noqa: BLE001 - not listening yet
            if time.time() > end:
                raise
            time.sleep(0.05)


def start_to_paint(browser, runs_dir: str, *, bare: bool = False) -> float:
    """Seconds from launching ``streamlit run`` to the Data heading painted (browser already running)."""
    if bare:
        d = Path(tempfile.mkdtemp())
        (d / "app.py").write_text('import streamlit as st\nst.title("Data")\n')
        app_dir, script = d, "app.py"
    else:
        app_dir, script = REPO, "app.py"
    t0 = time.perf_counter()
    proc, port = _serve(app_dir, script, runs_dir)
    try:
        pg = browser.new_page()
        _open(pg, port)
        pg.get_by_role("heading", name="Data").wait_for(timeout=120_000)
        dt = time.perf_counter() - t0
        pg.close()
        return dt
    finally:
        proc.terminate()
        proc.wait()


def _click(pg, locator, *, then: str | None = None, timeout: float = 600_000) -> float:
    """Click and return the seconds until the rerun it started has finished (and ``then`` is visible)."""
    pg.evaluate(WATCH)
    t0 = time.perf_counter()
    locator.click()
    pg.wait_for_function(DONE, timeout=timeout, polling=20)
    if then:
        pg.locator(then).first.wait_for(timeout=timeout)
    return time.perf_counter() - t0


def _switch(pg, name: str) -> float:
    pg.evaluate(WATCH)
    t0 = time.perf_counter()
    pg.get_by_role("link", name=name).first.click()
    pg.get_by_role("heading", name=HEADINGS.get(name, name)).first.wait_for(timeout=600_000)
    pg.wait_for_function(DONE, timeout=600_000, polling=20)
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- big runs


def resampled_dataset(n: int, work: Path) -> Path:
    import anndata as ad

    from scapp.data.demo import resample_cells

    out = work / "data" / f"pbmc3k_resampled_{n}.h5ad"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        src = ad.read_h5ad(DATA / "pbmc3k_seurat_hvg2000.h5ad")
        a = resample_cells(src, n, seed=0)
        a.obs = a.obs[["cell_type", "cell_type_coarse"]]
        tmp = out.with_suffix(".tmp.h5ad")
        a.write_h5ad(tmp)
        tmp.rename(out)
    return out


def trained_run(data: Path, model: str, runs_dir: Path) -> tuple[Path, float | None]:
    """A finished run of ``model`` on ``data`` in ``runs_dir`` (trained with the CLI if there is none)."""
    from scapp import runs

    runs_dir.mkdir(parents=True, exist_ok=True)
    for r in sorted(runs_dir.iterdir()):
        store = runs.RunStore(r)
        if r.is_dir() and (store.status() or {}).get("state") == "finished":
            c = store.config(missing_ok=True) or {}
            if c.get("model") == model and Path(c.get("data", "")).name == data.name:
                return r, None
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "scapp", "train", str(data), "--label", "cell_type", "--model", model,
                          "--epochs", "1", "--device", "cpu", "--quiet"], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "SCAPP_RUNS_DIR": str(runs_dir)}, check=True)
    return Path(out.stdout.strip().splitlines()[-1]), time.perf_counter() - t0


def big_session(browser, data: Path, run: Path, repeats: int = 3, shot: Path | None = None) -> dict:
    res: dict = {}
    proc, port = _serve(REPO, "app.py", str(run.parent))
    try:
        pg = browser.new_page(viewport={"width": 1500, "height": 1000})
        _open(pg, port)
        pg.wait_for_selector(READY, timeout=120_000)
        box = pg.locator(".st-key-data-path input")
        box.fill(str(data))
        pg.evaluate(WATCH)
        t0 = time.perf_counter()
        box.press("Enter")
        pg.get_by_role("heading", name=data.name).wait_for(timeout=900_000)
        pg.wait_for_function(DONE, timeout=900_000, polling=50)
        res["data_first"] = time.perf_counter() - t0
        sw: dict[str, list[float]] = {}
        for r in range(repeats + 1):  # the first round warms caches and imports and is not counted
            for name in PAGES:
                dt = _switch(pg, name)
                if r:
                    sw.setdefault(name, []).append(dt)
                elif name == "Explore":
                    res["explore_first"] = dt
        res["switch"] = {k: statistics.median(v) for k, v in sw.items()}
        _switch(pg, "Explore")
        view = pg.locator(".st-key-explore-view")
        plot = ".st-key-explore-umap .js-plotly-plot"
        res["map_first"] = _click(pg, view.get_by_text("Cell map", exact=True), then=plot)
        opens = []
        for _ in range(repeats):
            _click(pg, view.get_by_text("Per class", exact=True))
            opens.append(_click(pg, view.get_by_text("Cell map", exact=True), then=plot))
        res["map_later"] = statistics.median(opens)
        colour = pg.locator(".st-key-explore-color")
        res["colour"] = {what: _click(pg, colour.get_by_text(what, exact=True), then=plot)
                         for what in ["prediction", "confidence", "correct", "truth"]}
        caption = pg.get_by_text("Showing", exact=False)
        res["caption"] = caption.first.inner_text() if caption.count() else ""
        if shot is not None:
            time.sleep(1.5)
            pg.screenshot(path=str(shot), full_page=True)
        pg.close()
    finally:
        proc.terminate()
        proc.wait()
    return res


def small_switches(browser, runs_dir: str, repeats: int = 3) -> dict[str, float]:
    """The original measurement: demo dataset loaded, whatever run the runs folder holds."""
    proc, port = _serve(REPO, "app.py", runs_dir)
    out: dict[str, list[float]] = {}
    try:
        pg = browser.new_page(viewport={"width": 1400, "height": 900})
        _open(pg, port)
        pg.wait_for_selector(READY, timeout=120_000)
        _click(pg, pg.get_by_role("button", name="Load demo dataset"))
        for r in range(repeats + 1):
            for name in PAGES:
                dt = _switch(pg, name)
                if r:
                    out.setdefault(name, []).append(dt)
        pg.close()
    finally:
        proc.terminate()
        proc.wait()
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser()
    ap.add_argument("--runs-dir", help="runs folder for the demo-sized switches (default: a fresh one)")
    ap.add_argument("--cells", type=int, action="append", default=[], help="big run size (repeatable)")
    ap.add_argument("--model", default="sims", help="model of the big runs")
    ap.add_argument("--big-model", default="logreg", help="model of runs of --big-from cells or more")
    ap.add_argument("--big-from", type=int, default=500_000)
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "scapp_app_latency"))
    ap.add_argument("--keep-map", action="store_true", help="keep a run's cached cell maps")
    ap.add_argument("--starts", type=int, default=3)
    ap.add_argument("--shots", default=str(REPO / "bench" / "results"))
    ap.add_argument("--skip-start", action="store_true")
    a = ap.parse_args()
    work = Path(a.work)
    runs_dir = a.runs_dir or tempfile.mkdtemp()
    print(f"# scapp app latency — {machine()}; load average at start {os.getloadavg()[0]:.2f}", flush=True)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        if not a.skip_start:
            start_to_paint(b, runs_dir)  # cold: warms the file cache, not reported
            app = [start_to_paint(b, runs_dir) for _ in range(a.starts)]
            bare = [start_to_paint(b, runs_dir, bare=True) for _ in range(a.starts)]
            print(f"streamlit run → first painted Data page (warm): scapp {', '.join(f'{x:.2f}' for x in app)} s "
                  f"(median {statistics.median(app):.2f}); bare one-line Streamlit app "
                  f"{', '.join(f'{x:.2f}' for x in bare)} s (median {statistics.median(bare):.2f}); "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)
            if not a.cells:
                sw = small_switches(b, runs_dir)
                print("| page | switch (s, median of 3) |\n|---|---|")
                for k, v in sw.items():
                    print(f"| {k} | {v:.2f} |")
        for n in a.cells:
            model = a.big_model if n >= a.big_from else a.model
            data = resampled_dataset(n, work)
            run, t_train = trained_run(data, model, work / f"runs_{n}")
            if not a.keep_map:
                from scapp.runs import RunStore

                RunStore(run).delete_cell_maps()
            load0 = os.getloadavg()[0]
            r = big_session(b, data, run, shot=Path(a.shots) / f"app_latency_explore_{n}.png")
            print(f"\n## {n:,} cells, {model} run {run.name}" + (f" (trained in {t_train:.0f} s)" if t_train else "")
                  + f"; load average {load0:.2f} → {os.getloadavg()[0]:.2f}")
            print("| what | seconds |\n|---|---|")
            print(f"| Data page, first load of the file (read + QC) | {r['data_first']:.2f} |")
            print(f"| Explore, first open (tables read) | {r['explore_first']:.2f} |")
            for k, v in r["switch"].items():
                print(f"| switch to {k} (median of 3) | {v:.2f} |")
            print(f"| Explore cell map, first open (UMAP computed in the background) | {r['map_first']:.2f} |")
            print(f"| Explore cell map, later opens (median of 3) | {r['map_later']:.2f} |")
            for k, v in r["colour"].items():
                print(f"| colour by {k} | {v:.2f} |")
            print(f"caption: {r['caption']}", flush=True)
        b.close()


if __name__ == "__main__":
    main()
