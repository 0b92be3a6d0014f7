"""Issue 14: no page mutates an object it shares with other sessions through ``st.cache_resource``.

A cached resource is one object for every browser session (the dataset's AnnData, a loaded model, a run's tables).
Two sessions walk the same pages one after the other (AppTest); every cached object is fingerprinted (its arrays,
tables and attributes, recursively) after the first walk and after the second, and the cached datasets are compared
with a fresh read of their files: nothing may differ.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import shutil
import threading
import types
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "app.py")
DEMO = REPO / "assets" / "demo_pbmc3k.h5ad"
MUTABLE_BY_DESIGN = {"_sweeper"}  # pages/_ui.py: when uploads were last swept (a clock, not data)


def fingerprint(obj: Any, *, depth: int = 0, seen: dict[int, Any] | None = None) -> str:
    """A digest of what an object holds: arrays and tables by content, containers and attributes recursively.

    ``seen`` keeps every visited object alive, so an id is never reused by a temporary made meanwhile."""
    seen = {} if seen is None else seen
    h = hashlib.sha256(type(obj).__name__.encode())

    def add(x: Any) -> None:
        h.update(fingerprint(x, depth=depth + 1, seen=seen).encode())

    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
        h.update(repr(obj).encode())
    elif isinstance(obj, np.ndarray):
        h.update(f"{obj.shape}{obj.dtype}".encode())
        h.update(np.ascontiguousarray(obj).tobytes() if obj.dtype != object else repr(obj.tolist()).encode())
    elif sp.issparse(obj):
        c = obj.tocsr()
        h.update(f"{c.shape}".encode())
        for a in (c.data, c.indices, c.indptr):
            add(np.asarray(a))
    elif isinstance(obj, (pd.DataFrame, pd.Series, pd.Index)):
        frame = isinstance(obj, pd.DataFrame)
        h.update(repr(list(obj.columns) if frame else obj.name).encode())
        h.update(repr(obj.dtypes.tolist() if frame else obj.dtype).encode())
        try:
            h.update(pd.util.hash_pandas_object(obj, index=not isinstance(obj, pd.Index)).to_numpy().tobytes())
        except TypeError:  # cells holding lists or arrays
            h.update(obj.to_json(default_handler=repr).encode() if not isinstance(obj, pd.Index) else
                     repr(obj.tolist()).encode())
    elif id(obj) in seen or depth > 8:
        h.update(b"...")
    else:
        seen[id(obj)] = obj
        if type(obj).__module__.startswith("anndata"):
            for part in ("X", "obs", "var", "obs_names", "var_names", "uns", "obsm", "varm", "layers", "obsp"):
                add(getattr(obj, part, None))
        elif isinstance(obj, dict) or hasattr(obj, "keys") and hasattr(obj, "__getitem__"):
            for k in sorted(obj.keys(), key=repr):
                h.update(repr(k).encode())
                add(obj[k])
        elif isinstance(obj, (list, tuple)):
            for x in obj:
                add(x)
        elif isinstance(obj, (set, frozenset)):
            h.update(repr(sorted(map(repr, obj))).encode())
        elif type(obj).__module__.startswith("torch") and hasattr(obj, "detach"):
            add(obj.detach().cpu().numpy())
        elif hasattr(obj, "state_dict") and callable(obj.state_dict) and type(obj).__module__.startswith("torch"):
            add(dict(obj.state_dict()))
        elif isinstance(obj, (types.ModuleType, types.FunctionType, types.MethodType, type, Path,
                              type(threading.Lock()))) or callable(obj) and not hasattr(obj, "__dict__"):
            h.update(repr(obj).encode())
        else:
            fields = dict(vars(obj)) if hasattr(obj, "__dict__") else {}
            for s in getattr(type(obj), "__slots__", ()):
                if hasattr(obj, s):
                    fields[s] = getattr(obj, s)
            if dataclasses.is_dataclass(obj):
                fields.update({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})
            if hasattr(obj, "state_dict") and callable(obj.state_dict):  # a torch module held in an attribute
                with contextlib.suppress(Exception):  # not a torch module after all
                    fields["__state__"] = dict(obj.state_dict())
            for k in sorted(fields):
                h.update(k.encode())
                add(fields[k])
    return h.hexdigest()


def cached_objects() -> dict[tuple[str, str], Any]:
    """Every ``st.cache_resource`` entry held now: ``{(function, argument key): value}``."""
    from streamlit.runtime.caching.cache_resource_api import _resource_caches

    out = {}
    for session_caches in list(_resource_caches._function_caches.values()):
        for cache in list(session_caches.values()):
            name = cache.display_name.rsplit(".", 1)[-1]
            if name in MUTABLE_BY_DESIGN:
                continue
            for key, result in list(cache._mem_cache.items()):
                out[(cache.display_name, key)] = result.value
    return out


def test_the_fingerprint_sees_a_change_deep_inside():
    import anndata as ad

    a = ad.AnnData(X=sp.csr_matrix(np.eye(3, dtype=np.float32)), obs=pd.DataFrame({"t": list("abc")}, index=list("xyz")))
    held = {"data": (a, {"n": 1})}
    before = fingerprint(held)
    a.X.data[0] = 2  # in place, as a careless normalisation would
    assert fingerprint(held) != before
    before = fingerprint(held)
    a.obs["new"] = 1
    assert fingerprint(held) != before


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two finished logreg runs on the demo (what Explore, Annotate and Compare show)."""
    from scapp import cli

    root = tmp_path_factory.mktemp("cache-runs")
    for seed in (0, 1):
        assert cli.main(["train", str(DEMO), "--label", "cell_type", "--model", "logreg", "--device", "cpu",
                         "--quiet", "--seed", str(seed), "--out", str(root / f"logreg-{seed}")]) == 0
    return root


def _walk(runs_dir: Path) -> None:
    """One session: Data (demo) → Train → every Explore view → Annotate (demo query, predict, threshold) → Compare
    → Runs."""
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.button(key="data-demo").click().run()
    for page in ("pages/model.py", "pages/train.py", "pages/explore.py"):
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
    for v in at.segmented_control(key="explore-view").options:
        at.segmented_control(key="explore-view").set_value(v).run()
        assert not at.exception, (v, at.exception)
    at.switch_page("pages/annotate.py").run()
    at.button(key="annotate-demo").click().run()
    at.button(key="annotate-go").click().run()
    slider = next(s for s in at.slider if str(s.key).startswith("annotate-threshold"))
    slider.set_value(0.9).run()
    assert not at.exception, at.exception
    for page in ("pages/compare.py", "pages/runs.py", "pages/data.py"):
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)


def test_pages_leave_shared_cached_objects_unchanged(two_runs, tmp_path, monkeypatch):
    from scapp.data import load_dataset

    runs_dir = tmp_path / "runs"
    shutil.copytree(two_runs, runs_dir)
    monkeypatch.setenv("SCAPP_RUNS_DIR", str(runs_dir))
    monkeypatch.chdir(REPO)
    _walk(runs_dir)
    first = {k: fingerprint(v) for k, v in cached_objects().items()}
    names = {k[0].rsplit(".", 1)[-1] for k in first}
    assert {"load", "_model", "_tables"} <= names, names  # the walk did fill the shared caches
    _walk(runs_dir)  # a second session over the same objects
    now = cached_objects()
    changed = [k[0] for k, v in now.items() if k in first and fingerprint(v) != first[k]]
    assert not changed, f"cached objects changed by a page: {changed}"
    # and the cached datasets hold what their files hold (the first session did not change them either)
    from pages._ui import load

    for path in (DEMO, REPO / "assets" / "demo_pbmc4k_query.h5ad"):
        cached = load(str(path), path.stat().st_mtime)
        assert fingerprint(cached[0]) == fingerprint(load_dataset(str(path))[0]), path.name
