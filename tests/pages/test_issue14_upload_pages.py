"""Issue 14: the app sweeps the uploads of ended sessions (keeping kept files and the files runs were trained on),
and an uploaded dataset can be kept from the Data page (AppTest; the store itself: tests/test_issue14_uploads.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "app.py")
DEMO = REPO / "assets" / "demo_pbmc3k.h5ad"


def _aged_upload(root: Path, data: bytes, name: str, session: str) -> Path:
    """An upload made two hours ago by a session last seen two hours ago."""
    from scapp import uploads

    p = uploads.store_upload(data, name, root=root, session=session)
    meta = p.parent / uploads.META
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "uploaded": time.time() - 7200}))
    uploads.hold(root, session, now=time.time() - 7200)
    return p


def test_the_app_sweeps_uploads_of_ended_sessions_but_not_a_runs_training_file(runs_dir, monkeypatch):
    from pages._ui import _sweeper
    from scapp import runs
    from scapp.uploads import uploads_root

    monkeypatch.chdir(REPO)
    root = uploads_root(runs_dir)
    gone = _aged_upload(root, b"cell,A\nc1,1\n", "left.csv", "closed-tab")
    trained_on = _aged_upload(root, DEMO.read_bytes(), "reference.h5ad", "closed-tab")
    store = runs.RunStore.create("logreg", root=runs_dir)
    store.write_config({"data": str(trained_on), "label": "cell_type", "model": "logreg"})
    _sweeper.clear()  # as when the server starts
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.button(key="data-demo").click().run()
    assert not at.exception, at.exception
    assert not gone.exists() and trained_on.exists()


def test_an_uploaded_dataset_can_be_kept_from_the_data_page(runs_dir, monkeypatch):
    from scapp import uploads
    from scapp.uploads import uploads_root

    monkeypatch.chdir(REPO)
    root = uploads_root(runs_dir)
    up = uploads.store_upload(DEMO.read_bytes(), "mine.h5ad", root=root, session="s")
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["dataset_path"] = str(up)  # what the uploader leaves in the session
    at.run()
    box = next(c for c in at.checkbox if str(c.key).startswith("data-keep"))
    assert box.value is False and not uploads.is_kept(up, root)
    box.check().run()
    assert uploads.is_kept(up, root)
    at.session_state["dataset_path"] = str(DEMO)  # not an upload: no box
    at.run()
    assert not [c for c in at.checkbox if str(c.key).startswith("data-keep")]
