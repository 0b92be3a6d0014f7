"""Issue 14 in the browser: the app survives its own restart while a job trains, and two sessions share the
machine (one training job at a time; the second waits in the queue, then runs, while the other session annotates).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from e2e_helpers import READY, REPO, SHOTS, go, load_demo, open_page, set_up_model, settle

pytestmark = pytest.mark.e2e

RUNNING = re.compile(r"— running")
PAST_FIRST_EPOCH = re.compile(r"epoch ([2-9]|\d{2,3})/400")


def _serve(runs_dir: Path, port: int, address: str = "127.0.0.1") -> subprocess.Popen:
    """``streamlit run app.py`` on ``port`` (so that a restarted server is found at the same address)."""
    env = {**os.environ, "SCAPP_RUNS_DIR": str(runs_dir)}
    return subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.address", address, "--server.headless", "true"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_healthy(port: int, timeout: float = 180) -> None:
    """Until the server answers its health check."""
    import urllib.request

    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"the restarted server did not answer within {timeout:.0f} s")


def _no_exception_shown(pg) -> None:
    shown = pg.locator("[data-testid='stException']")
    assert shown.count() == 0, shown.first.inner_text()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_app_restart_while_a_job_trains(tmp_path):
    """Kill the server mid-training (as a crash would) and start it again: the trainer, its own process, goes on;
    the reopened page finds the run on disk (its id is in the address), follows it and can stop it. The restarted
    server listens on every interface, and the sidebar says so."""
    from playwright.sync_api import sync_playwright

    from scapp import runs

    runs_dir = tmp_path / "runs"
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    server = _serve(runs_dir, port)
    try:
        with sync_playwright() as pw:
            browser, pg = open_page(pw, f"http://127.0.0.1:{port}")
            load_demo(pg)
            set_up_model(pg, Max_epochs="400", **{"Early-stopping_patience": "400"})  # runs until stopped
            go(pg, "Train")
            pg.get_by_role("button", name="Start training").click()
            pg.get_by_text(RUNNING).wait_for(timeout=180_000)
            pg.get_by_text(PAST_FIRST_EPOCH).first.wait_for(timeout=180_000)
            run = next(p for p in runs_dir.iterdir() if (runs.read_status(p) or {}).get("state") == "running")
            trainer = int(runs.read_status(run)["pid"])

            server.kill()  # a crash: no clean shutdown
            server.wait(timeout=30)
            time.sleep(2)
            assert _pid_alive(trainer) and runs.read_status(run)["state"] == "running"
            epoch_then = len(runs.RunStore(run).epochs())
            server = _serve(runs_dir, port, address="0.0.0.0")

            _wait_healthy(port)
            pg.reload()  # reopen the page, as a user does once the app is back
            pg.wait_for_selector(READY, timeout=120_000)
            try:
                pg.get_by_text("reachable from other machines").wait_for(timeout=120_000)  # drawn by the new server
            except Exception:
                pg.screenshot(path=str(SHOTS / "issue14-after-restart-failed.png"), full_page=True)  # what it was
                raise
            pg.get_by_text(RUNNING).wait_for(timeout=60_000)
            settle(pg, 2)
            pg.screenshot(path=str(SHOTS / "issue14-after-restart.png"), full_page=True)
            assert pg.get_by_text(f"Run `{run.name}`").count() or pg.get_by_text(run.name).count()
            _no_exception_shown(pg)
            t0 = time.time()
            while len(runs.RunStore(run).epochs()) <= epoch_then and time.time() - t0 < 120:
                time.sleep(1)
            assert len(runs.RunStore(run).epochs()) > epoch_then, "the trainer stopped with the server"
            pg.get_by_role("button", name="Stop").click()
            pg.get_by_text("— cancelled").wait_for(timeout=180_000)
            settle(pg, 1)
            _no_exception_shown(pg)
            browser.close()
    finally:
        server.kill()
        server.wait(timeout=30)


class _Watch(threading.Thread):
    """Reads every run's state twice a second and notes the most runs seen running at once."""

    def __init__(self, root: Path) -> None:
        super().__init__(daemon=True)
        self.root, self.most, self.stop, self.waited = root, 0, threading.Event(), set()

    def run(self) -> None:
        from scapp import runs

        while not self.stop.is_set():
            states = {}
            for p in list(self.root.iterdir()) if self.root.is_dir() else []:
                try:
                    states[p.name] = runs.read_status(p) or {}
                except Exception:  # noqa: BLE001, S112 - a folder being written or deleted
                    continue
            self.most = max(self.most, sum(s.get("state") == "running" for s in states.values()))
            self.waited |= {r for r, s in states.items() if "waiting for" in str(s.get("phase", ""))}
            time.sleep(0.5)


def test_two_sessions_train_and_annotate_at_once(page, server):
    """Session A trains SIMS; session B queues a logistic regression, which waits, and meanwhile annotates with
    A's earlier run; once A stops, B's job runs and finishes. Never two jobs running at once."""
    from scapp import runs

    a, runs_dir = page, server[1]
    watch = _Watch(runs_dir)
    watch.start()
    try:
        load_demo(a)
        set_up_model(a, "logreg")
        go(a, "Train")
        a.get_by_role("button", name="Start training").click()
        a.get_by_text("— finished").wait_for(timeout=180_000)  # a run to annotate with

        set_up_model(a, "sims", Max_epochs="400", **{"Early-stopping_patience": "400"})  # runs until stopped
        go(a, "Train")
        a.get_by_role("button", name="Start training").click()
        a.get_by_text(RUNNING).wait_for(timeout=180_000)

        b = a.context.browser.new_page(viewport={"width": 1400, "height": 900})
        b.goto(server[0])
        b.wait_for_selector(READY, timeout=120_000)
        load_demo(b)
        set_up_model(b, "logreg")
        go(b, "Train")
        b.get_by_role("button", name="Start training").click()
        b.get_by_text("— queued").wait_for(timeout=60_000)
        b.get_by_text(re.compile(r"waiting for 1 job")).first.wait_for(timeout=60_000)
        queued = re.search(r"run=([\w-]+)", b.url).group(1)  # B's job (its id is in the address)
        b.screenshot(path=str(SHOTS / "issue14-second-session-queued.png"), full_page=True)

        go(b, "Annotate")  # while A trains and B's job waits
        b.get_by_role("button", name="Use demo query").click()
        settle(b, 2)
        b.get_by_role("button", name="Predict").click()
        b.get_by_text("Cells annotated").wait_for(timeout=180_000)
        settle(b, 1)
        _no_exception_shown(b)
        b.screenshot(path=str(SHOTS / "issue14-second-session-annotates.png"))
        states = [(runs.read_status(p) or {}).get("state") for p in runs_dir.iterdir()]
        assert states.count("running") == 1 and states.count("queued") == 1, states  # A trains, B waits

        a.get_by_role("button", name="Stop").click()
        a.get_by_text("— cancelled").wait_for(timeout=180_000)
        t0 = time.time()  # B's job runs once A's has stopped, and finishes
        while (runs.read_status(runs_dir / queued) or {}).get("state") != "finished" and time.time() - t0 < 240:
            time.sleep(1)
        go(b, "Runs")
        row = b.locator("[data-testid='stDataFrame']")
        row.wait_for(timeout=60_000)
        assert (runs.read_status(runs_dir / queued) or {}).get("state") == "finished"
        b.get_by_role("combobox").first.click()  # the run picker lists it; pick it to see its state
        b.get_by_role("option", name=queued).click()
        settle(b, 1)
        _no_exception_shown(a)
        _no_exception_shown(b)
        b.screenshot(path=str(SHOTS / "issue14-second-session-finished.png"), full_page=True)
        b.close()
    finally:
        watch.stop.set()
        watch.join(timeout=5)
    assert watch.most == 1, f"{watch.most} jobs ran at once"
    assert watch.waited, "the second job never waited in the queue"
