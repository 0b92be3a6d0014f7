"""Issue 14: a run whose trainer died reads as failed, with the reason, on the Train and the Runs pages (AppTest).

The liveness rule lives in ``scapp.runs`` (the process id, and a heartbeat the trainer writes every few seconds);
the pages only show what it says.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "app.py")


@pytest.fixture
def app(runs_dir, monkeypatch):
    monkeypatch.chdir(REPO)
    return AppTest.from_file(APP, default_timeout=300)


def _wait(cond, timeout: float, what: str):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = cond()
        if v:
            return v
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _errors(at) -> list[str]:
    return [str(e.value) for e in at.error]


def test_a_killed_trainer_reads_failed_with_its_reason_on_train_and_runs(app, runs_dir):
    from scapp import runs

    app.session_state["model"] = "sims"
    app.session_state["model_overrides"] = {"max_epochs": 400, "early_stopping_patience": 400}
    app.session_state["overrides_model"] = "sims"
    app.run()
    app.button(key="data-demo").click().run()
    app.switch_page("pages/train.py").run()
    app.button(key="train-start").click().run()
    assert not app.exception, app.exception
    run = runs_dir / app.session_state["run_id"]
    st = _wait(lambda: (s := runs.read_status(run)) and s.get("state") == "running" and s.get("pid") and s,
               240, "the job to run")
    os.kill(int(st["pid"]), signal.SIGKILL)
    t0 = time.time()
    _wait(lambda: (runs.read_status(run) or {}).get("state") == "failed", 20, "the run to read as failed")
    app.run()  # the Train page as it polls
    assert any("The run failed" in e and "without finishing" in e for e in _errors(app)), _errors(app)
    assert any(f"`{run.name}` — failed" in str(m.value) for m in app.markdown)
    assert time.time() - t0 < 30
    app.switch_page("pages/runs.py").run()
    assert not app.exception, app.exception
    assert any(run.name in e and "without finishing" in e for e in _errors(app)), _errors(app)
    table = app.dataframe[0].value
    assert table.loc[table["run_id"] == run.name, "state"].item() == "failed"


def test_a_trainer_whose_process_id_was_reused_reads_failed_once_it_stops_beating(app, runs_dir, monkeypatch):
    """The run's recorded process id now belongs to another, live process (ids are reused): only the heartbeat
    tells that the trainer is gone."""
    from scapp import runs

    monkeypatch.setenv("SCAPP_HEARTBEAT_STALE_S", "2")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        store = runs.RunStore.create("logreg", root=runs_dir)
        store.write_status("running", pid=other.pid, progress=0.3)
        store.beat()  # its last beat, then nothing: the trainer was killed
        app.session_state["run_id"] = store.id
        app.switch_page("pages/train.py").run()
        time.sleep(2.5)
        app.run()
        assert any("The run failed" in e and "heartbeat" in e for e in _errors(app)), _errors(app)
        app.switch_page("pages/runs.py").run()
        assert any(store.id in e and "heartbeat" in e for e in _errors(app)), _errors(app)
    finally:
        other.kill()
        other.wait()


def test_a_page_opened_first_on_a_fresh_server_runs_through_the_app(runs_dir, monkeypatch):
    """A tab left open across an app restart asks the new server for its page (say /train?run=...) first.
    Streamlit then ran pages/train.py on its own (its pages-folder mode): no sidebar, no session restored from the
    address, a navigation listing every file of pages/. The page must run through app.py instead."""
    from scapp import runs

    monkeypatch.chdir(REPO)
    store = runs.RunStore.create("logreg", root=runs_dir)
    store.write_status("finished", progress=1.0)
    at = AppTest.from_file(APP, default_timeout=120)  # a fresh server: app.py has never run
    at.query_params.update(run=store.id, data="demo", label="cell_type")
    at.switch_page("pages/train.py").run()
    assert not at.exception, at.exception
    assert at.session_state["run_id"] == store.id  # restored from the address by app.py
    assert any(f"`{store.id}` — finished" in str(m.value) for m in at.markdown)
    assert any("**Run:**" in str(m.value) for m in at.sidebar.markdown)  # app.py's sidebar
