"""App latency in a real browser (Debian Chromium via Playwright).

* start: ``streamlit run`` → first painted Data page (title visible), cold and warm;
* page switches: each sidebar link → that page's script finished, with a run loaded.

    python bench/app_latency.py [--runs-dir DIR]   # DIR: a runs folder to load (default: a fresh one)
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
from bench._common import machine  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
READY = "[data-testid='stApp'][data-test-script-state='notRunning']"


def _port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_to_paint(runs_dir: str) -> float:
    from playwright.sync_api import sync_playwright

    port = _port()
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
                            cwd=REPO, env={**os.environ, "SCAPP_RUNS_DIR": runs_dir},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            pg = b.new_page()
            while True:
                try:
                    pg.goto(f"http://127.0.0.1:{port}")
                    break
                except Exception:  # noqa: BLE001 - not listening yet
                    time.sleep(0.05)
            pg.get_by_role("heading", name="Data").wait_for(timeout=120_000)
            dt = time.perf_counter() - t0
            b.close()
        return dt
    finally:
        proc.terminate()
        proc.wait()


def page_switches(runs_dir: str, repeats: int = 3) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    port = _port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port)],
                            cwd=REPO, env={**os.environ, "SCAPP_RUNS_DIR": runs_dir},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out: dict[str, list[float]] = {}
    try:
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            pg = b.new_page(viewport={"width": 1400, "height": 900})
            for _ in range(200):
                try:
                    pg.goto(f"http://127.0.0.1:{port}")
                    break
                except Exception:  # noqa: BLE001
                    time.sleep(0.1)
            pg.wait_for_selector(READY, timeout=120_000)
            pg.get_by_role("button", name="Load demo dataset").click()
            time.sleep(1)
            pg.wait_for_selector(READY, timeout=120_000)
            for r in range(repeats + 1):  # first round warms caches and is not counted
                for name in ["Model", "Train", "Explore", "Annotate", "Runs", "Data"]:
                    t0 = time.perf_counter()
                    pg.get_by_role("link", name=name).first.click()
                    pg.get_by_role("heading", name=name).first.wait_for(timeout=120_000)
                    pg.wait_for_selector(READY, timeout=120_000)
                    if r:
                        out.setdefault(name, []).append(time.perf_counter() - t0)
            b.close()
    finally:
        proc.terminate()
        proc.wait()
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs-dir")
    a = ap.parse_args()
    runs_dir = a.runs_dir or tempfile.mkdtemp()
    print(f"# scapp app latency — {machine()}; runs folder {runs_dir}")
    cold = start_to_paint(runs_dir)
    warm = [start_to_paint(runs_dir) for _ in range(2)]
    print(f"streamlit run → first painted page: first {cold:.2f} s, then {', '.join(f'{w:.2f}' for w in warm)} s")
    sw = page_switches(runs_dir)
    print("| page | switch (s, median of 3) |\n|---|---|")
    for k, v in sw.items():
        print(f"| {k} | {v:.2f} |")


if __name__ == "__main__":
    main()
