"""Shared browser-test plumbing: a streamlit server per test module, one headless Chromium page, and helpers
that click like a user (no session-state shortcuts)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
READY = "[data-testid='stApp'][data-test-script-state='notRunning']"


def settle(pg, seconds: float = 1.0) -> None:
    """Wait a moment, then until the script has finished its rerun."""
    time.sleep(seconds)
    pg.wait_for_selector(READY, timeout=120_000)


def go(pg, name: str) -> None:
    """Open a page from the sidebar's navigation."""
    pg.get_by_role("link", name=name).first.click()
    settle(pg, 1.5)


def view(pg, name: str) -> None:
    """Open one Explore view, whether the page shows its views as tabs or as a segmented control."""
    tab = pg.get_by_role("tab", name=name)
    if tab.count():
        tab.first.click()
    else:
        pg.get_by_role("button", name=name).or_(pg.get_by_role("radio", name=name)).first.click()
    settle(pg, 1)


def load_demo(pg) -> None:
    """Data page → the built-in demo dataset."""
    go(pg, "Data")
    pg.get_by_role("button", name="Load demo dataset").click()
    settle(pg, 2)
    pg.get_by_text("2,638").first.wait_for()


def set_up_model(pg, model: str | None = None, preset: str | None = None, **fields: str) -> None:
    """Model page like a user: pick ``model`` (its card), click ``preset``, fill labelled number inputs
    (``Max_epochs="3"`` fills "Max epochs") and press Save settings."""
    go(pg, "Model")
    if model:
        pg.locator(f".st-key-model-pick-{model} button").first.click()
        settle(pg)
    if preset:
        pg.get_by_text(re.compile(rf"^{preset} \(")).first.click()
        settle(pg)
    for label, value in fields.items():
        pg.get_by_label(label.replace("_", " "), exact=True).fill(value)
    pg.get_by_role("button", name="Save settings").click()
    settle(pg)


def start_server(runs_dir: Path, extra_env: dict | None = None):
    """``streamlit run app.py`` on a free port with its own runs folder; returns (process, url)."""
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed (scripts/test.sh installs it: apt-get install chromium)")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    env = {**os.environ, "SCAPP_RUNS_DIR": str(runs_dir), **(extra_env or {})}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.headless", "true"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}"


def open_page(pw, url: str):
    """A 1400×900 Chromium page on ``url`` once the app has painted; returns (browser, page)."""
    SHOTS.mkdir(exist_ok=True)
    b = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
    pg = b.new_page(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    for _ in range(120):
        try:
            pg.goto(url)
            break
        except Exception:  # noqa: BLE001 - server still starting
            time.sleep(0.5)
    pg.wait_for_selector(READY, timeout=120_000)
    return b, pg
