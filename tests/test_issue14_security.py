"""Issue 14, security: nothing is ever unpickled (checked in the source and while the app and the CLI run), and
the sidebar warns when the server is reachable from other machines."""

from __future__ import annotations

import os
import pickle
import re
import sys
import traceback
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
DEMO = REPO / "assets" / "demo_pbmc3k.h5ad"
QUERY = REPO / "assets" / "demo_pbmc4k_query.h5ad"

# Ways Python code loads pickles (or runs what a file says). st.cache_data is one: it keeps each result pickled and
# unpickles a copy on every cache hit.
UNPICKLING = {
    r"\bimport\s+(c?pickle|dill|cloudpickle|shelve|joblib)\b": "imports a pickle library",
    r"\bfrom\s+(c?pickle|dill|cloudpickle|shelve|joblib)\b": "imports a pickle library",
    r"\bpickle\.(loads?|Unpickler)\b": "unpickles",
    r"\bread_pickle\s*\(": "pd.read_pickle unpickles",
    r"\bjoblib\.load\s*\(": "joblib.load unpickles",
    r"allow_pickle\s*=\s*True": "np.load(allow_pickle=True) unpickles",
    r"@st\.cache_data\b|\bst\.cache_data\s*\(": "st.cache_data unpickles a copy on every cache hit",
    r"\bmarshal\.loads?\s*\(": "marshal loads code objects",
}


def _sources() -> list[Path]:
    return sorted([*(REPO / "scapp").rglob("*.py"), *(REPO / "pages").rglob("*.py"), REPO / "app.py"])


def _torch_loads_without_weights_only(text: str) -> list[str]:
    """``torch.load(...)`` calls that do not pass ``weights_only=True`` (torch's full unpickler)."""
    out = []
    for m in re.finditer(r"\btorch\.load\s*\(", text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        call = text[m.start():i]
        if not re.search(r"weights_only\s*=\s*True", call):
            out.append(call)
    return out


def test_no_source_line_unpickles():
    bad = []
    for p in _sources():
        text = p.read_text()
        for pat, why in UNPICKLING.items():
            for m in re.finditer(pat, text):
                line = text.count("\n", 0, m.start()) + 1
                bad.append(f"{p.relative_to(REPO)}:{line}: {why}")
        bad += [f"{p.relative_to(REPO)}: {c!r} without weights_only=True" for c in _torch_loads_without_weights_only(text)]
    assert not bad, "\n".join(bad)


def test_the_source_check_finds_what_it_looks_for():
    text = ("import pickle\nx = pickle.loads(b)\ndf = pd.read_pickle(p)\nnp.load(p, allow_pickle=True)\n"
            "@st.cache_data\ndef f(): ...\nm = torch.load(p,\n map_location='cpu')\nok = torch.load(p, weights_only=True)\n")
    hits = [pat for pat in UNPICKLING if re.search(pat, text)]
    assert len(hits) == 5, hits
    assert len(_torch_loads_without_weights_only(text)) == 1


# -- at run time ----------------------------------------------------------------------------------------------------
class Unpickled(AssertionError):
    pass


# The one unpickling allowed: numba's cache of functions it compiled itself (scanpy's and umap-learn's), whose index
# files numba writes and reads in its own cache folder (a file no user gives; writing there already means running
# code). Anything else that unpickles fails the test.
_ALLOWED = (f"numba{os.sep}core{os.sep}caching.py", f"numba{os.sep}core{os.sep}serialize.py")


def _allowed() -> bool:
    return any(f.filename.endswith(_ALLOWED) for f in traceback.extract_stack())


_WATCHING: list[list[str]] = []  # the current test's record of unpickling (an audit hook cannot be removed)


def _audit(event: str, args: tuple) -> None:
    if _WATCHING and event == "pickle.find_class" and not _allowed():  # any unpickler resolving a class
        _WATCHING[-1].append(f"{args[0]}.{args[1]}")
        raise Unpickled(f"something unpickled a {args[0]}.{args[1]}")


sys.addaudithook(_audit)


@pytest.fixture
def no_unpickling(monkeypatch):
    """Fail any unpickling while the test runs: the audit hook sees every class an unpickler resolves, and the
    pickle functions themselves raise (and note it, in case the caller catches the error and goes on)."""
    import _pickle

    seen: list[str] = []

    def refusing(fn, name):
        def refuse(*a, **k):
            if _allowed():
                return fn(*a, **k)
            seen.append(name)
            raise Unpickled(f"something called {name}")
        return refuse

    for mod in (pickle, _pickle):
        for name in ("load", "loads"):
            monkeypatch.setattr(mod, name, refusing(getattr(mod, name), f"{mod.__name__}.{name}"))
        # a class, so that modules imported meanwhile can still subclass it (torch does); using one fails
        base = mod.Unpickler
        init = refusing(base.__init__, f"{mod.__name__}.Unpickler")
        monkeypatch.setattr(mod, "Unpickler", type("RefusingUnpickler", (base,), {"__init__": init}))
    for name in ("_load", "_loads"):
        monkeypatch.setattr(pickle, name, refusing(getattr(pickle, name), f"pickle.{name}"))
    _WATCHING.append(seen)
    yield seen
    _WATCHING.remove(seen)
    assert not seen, seen


def test_the_runtime_guard_catches_unpickling(no_unpickling):
    import io

    with pytest.raises(Unpickled):
        pickle.loads(pickle.dumps({"a": 1}))
    with pytest.raises(Unpickled):
        pickle.load(io.BytesIO(b""))
    no_unpickling.clear()


def test_train_predict_explore_annotate_never_unpickle(no_unpickling, tmp_path, monkeypatch):
    """The CLI in this process (train logreg, predict to CSV and h5ad), then the app's pages on that run (AppTest):
    Explore's views, Annotate's prediction and downloads, Runs and Compare."""
    from streamlit.testing.v1 import AppTest

    from scapp import cli

    runs_dir = tmp_path / "runs"
    monkeypatch.setenv("SCAPP_RUNS_DIR", str(runs_dir))
    monkeypatch.chdir(REPO)
    for i in (1, 2):
        assert cli.main(["train", str(DEMO), "--label", "cell_type", "--model", "logreg", "--device", "cpu",
                         "--quiet", "--out", str(runs_dir / f"run{i}"), "--seed", str(i)]) == 0
    assert cli.main(["predict", str(runs_dir / "run1"), str(QUERY), "--csv", str(tmp_path / "p.csv"),
                     "--out", str(tmp_path / "a.h5ad")]) == 0

    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.button(key="data-demo").click().run()
    at.switch_page("pages/explore.py").run()
    assert not at.exception, at.exception
    views = at.segmented_control(key="explore-view").options
    for v in views:
        at.segmented_control(key="explore-view").set_value(v).run()
        assert not at.exception, (v, at.exception)
    at.switch_page("pages/annotate.py").run()
    at.button(key="annotate-demo").click().run()
    at.button(key="annotate-go").click().run()
    assert not at.exception, at.exception
    assert any(m.label == "Cells annotated" for m in at.metric)
    at.run()  # a second run of the page: every cache hit served again
    for page in ("pages/runs.py", "pages/compare.py", "pages/train.py"):
        at.switch_page(page).run()
        at.run()  # and again: cached results are served from memory
        assert not at.exception, (page, at.exception)
    assert any("Macro F1" in str(m.label) for m in at.switch_page("pages/compare.py").run().metric) or \
        len(at.get("plotly_chart")) >= 1  # Compare did compare the two runs
    assert not no_unpickling


# -- the sidebar says when the app is reachable from other machines --------------------------------------------------
@pytest.fixture
def address():
    from streamlit import config

    before = config.get_option("server.address")
    yield lambda a: config.set_option("server.address", a)
    config.set_option("server.address", before)


def _sidebar_warnings(at) -> list[str]:
    return [w.value for w in at.sidebar.warning]


def test_sidebar_warns_when_the_server_listens_beyond_this_machine(address, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SCAPP_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.chdir(REPO)
    address("0.0.0.0")
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception
    warned = _sidebar_warnings(at)
    assert any("reachable from other machines (0.0.0.0)" in w for w in warned), warned
    for local in ("127.0.0.1", "localhost", "::1"):
        address(local)
        at.run()
        assert not _sidebar_warnings(at), local


def test_the_shipped_config_binds_this_machine_only():
    text = (REPO / ".streamlit" / "config.toml").read_text()
    assert re.search(r'(?m)^address\s*=\s*"127\.0\.0\.1"', text)
    assert re.search(r"(?m)^gatherUsageStats\s*=\s*false", text)
