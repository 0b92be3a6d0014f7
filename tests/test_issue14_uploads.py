"""Issue 14: uploads are stored by content (a corrected re-upload of the same name and size is read afresh) and are
swept once their session has ended, unless kept or a run was trained on them (``scapp.uploads``)."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


class FakeUpload:
    """What ``st.file_uploader`` hands the page: a name, a size, the bytes, and an id per upload."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name, self._data, self.size, self.file_id = name, data, len(data), str(uuid.uuid4())

    def getbuffer(self) -> memoryview:
        return memoryview(self._data)

    def getvalue(self) -> bytes:
        return self._data


FIRST = b"cell,CD3E,MS4A1\nc1,5,0\nc2,0,7\n"
FIXED = b"cell,CD3E,MS4A1\nc1,6,0\nc2,0,9\n"  # the corrected file: same name, same size, other counts


def test_a_corrected_reupload_of_the_same_name_and_size_is_read_afresh(runs_dir):
    """The page's save function (pages/_ui.py), as the Data, Annotate and Model pages call it."""
    from pages._ui import save_upload

    assert len(FIRST) == len(FIXED) and FIRST != FIXED
    a = save_upload(FakeUpload("cells.csv", FIRST))
    b = save_upload(FakeUpload("cells.csv", FIXED))
    assert a.read_bytes() == FIRST
    assert b.read_bytes() == FIXED, "the second upload loaded the first one's bytes"
    assert a != b and a.name == b.name == "cells.csv"  # the readers go by the name's extension


def test_the_same_bytes_are_stored_once_read_only_and_the_name_cannot_escape(tmp_path):
    from scapp import uploads

    root = tmp_path / "uploads"
    a = uploads.store_upload(FIRST, "cells.csv", root=root, session="s1")
    b = uploads.store_upload(FIRST, "cells.csv", root=root, session="s2")
    assert a == b and a.parent.name == hashlib.sha256(FIRST).hexdigest()[:16]
    assert not os.access(a, os.W_OK) or os.geteuid() == 0  # read-only (root may write anyway)
    c = uploads.store_upload(FIXED, "../../etc/../.bashrc", root=root)
    assert c.parent.parent == root and c.name == "bashrc"
    assert not list(root.rglob("*.part"))  # written under a temporary name, then renamed


def _age(root: Path, path: Path, seconds: float) -> None:
    """Pretend ``path`` was uploaded ``seconds`` ago."""
    from scapp import uploads

    meta = root / path.parent.name / uploads.META
    d = json.loads(meta.read_text())
    d["uploaded"] -= seconds
    meta.write_text(json.dumps(d))


def test_sweep_removes_uploads_of_ended_sessions_only(tmp_path):
    from scapp import uploads

    root, runs_root = tmp_path / "uploads", tmp_path / "runs"
    now = time.time()
    gone = uploads.store_upload(b"a,b\n1,2\n", "old.csv", root=root, session="ended")
    live = uploads.store_upload(b"a,b\n3,4\n", "open.csv", root=root, session="open-tab")
    quiet = uploads.store_upload(b"a,b\n5,6\n", "quiet.csv", root=root, session="reloaded")
    kept = uploads.store_upload(b"a,b\n7,8\n", "kept.csv", root=root, session="ended")
    uploads.set_keep(kept, root, True)
    legacy = root / "from-an-earlier-scapp.h5ad"  # not in the store: never touched
    legacy.write_bytes(b"x")
    for p in (gone, live, quiet, kept):
        _age(root, p, 10 * 3600)
    uploads.hold(root, "ended", now=now - 2 * 3600)
    uploads.hold(root, "open-tab", now=now - 5 * 3600)  # idle for hours, but the server still has the session
    uploads.hold(root, "reloaded", now=now - 600)  # not known to the server (a restart), seen 10 min ago

    removed = uploads.sweep(root, runs_root, is_alive=lambda s: s == "open-tab", now=now, grace_s=3600)
    assert removed == [gone.parent]
    assert not gone.exists() and live.exists() and quiet.exists() and kept.exists() and legacy.exists()
    ids = [json.loads(f.read_text())["id"] for f in (root / uploads.SESSIONS).iterdir()]
    assert sorted(ids) == ["open-tab", "reloaded"]  # the ended session's record goes too
    assert uploads.is_kept(kept, root) and not uploads.is_kept(live, root)


def test_sweep_keeps_a_fresh_upload_and_any_file_a_run_names(tmp_path, monkeypatch):
    from scapp import runs, uploads

    root, runs_root = tmp_path / "uploads", tmp_path / "runs"
    trained_on = uploads.store_upload(b"a,b\n1,2\n", "ref.csv", root=root, session="gone")
    pretrained_on = uploads.store_upload(b"a,b\n3,4\n", "atlas.csv", root=root, session="gone")
    fresh = uploads.store_upload(b"a,b\n5,6\n", "new.csv", root=root)  # no session noted yet
    for p in (trained_on, pretrained_on):
        _age(root, p, 10 * 3600)
    uploads.hold(root, "gone", now=time.time() - 2 * 3600)  # its session ended two hours ago
    store = runs.RunStore.create("logreg", root=runs_root)
    store.write_config({"data": str(trained_on), "label": "x"})
    other = runs.RunStore.create("ssl", root=runs_root)
    other.write_request({"data": [str(pretrained_on)], "model": "ssl"})  # a queued pretraining job's files
    assert uploads.sweep(root, runs_root, now=None, grace_s=3600) == []
    assert trained_on.exists() and pretrained_on.exists() and fresh.exists()

    runs.delete_run(store.path)  # deleting the run releases its file
    assert uploads.sweep(root, runs_root, grace_s=3600) == [trained_on.parent]


def test_upload_of_refuses_paths_outside_the_store(tmp_path):
    from scapp import uploads

    root = tmp_path / "uploads"
    p = uploads.store_upload(FIRST, "cells.csv", root=root)
    assert uploads.upload_of(p, root) == p.parent
    assert uploads.upload_of(REPO / "assets" / "demo_pbmc3k.h5ad", root) is None
    assert uploads.upload_of(root / "cells.csv", root) is None
    uploads.hold(root, "../../escape")  # a session id is never a path
    assert [p.parent for p in root.rglob("*.json") if p.parent.name == uploads.SESSIONS] == [root / uploads.SESSIONS]
