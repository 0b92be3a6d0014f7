"""Widgets and cached loaders shared by the pages (no science here: it all lives in scapp)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import streamlit as st

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def through_app() -> None:
    """Make sure a page runs inside app.py's navigation (sidebar, the session restored from the address).

    Streamlit runs a file of the ``pages/`` folder on its own (its older multipage mode, no app.py) when the first
    request a fresh server gets opens that page's address: a tab left open across an app restart, a bookmark. The
    page then switches that mode off (app.py's ``st.navigation`` would, had it run) and reruns through app.py,
    which opens the same page. The mode is told by the run itself (app.py is one of its pages only in that mode),
    not only by Streamlit's process-wide flag: two sessions starting together on a fresh server both run in that
    mode, and the first to get here clears the flag for both.
    """
    from streamlit.runtime.pages_manager import PagesManager
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    pages = ctx.pages_manager.get_pages() if ctx is not None and ctx.pages_manager is not None else {}
    alone = any(Path(str(p.get("script_path") or "")).name == "app.py" for p in pages.values())
    if alone or PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        # once per session: Streamlit's AppTest sets the flag again on every run, and a rerun there would drop
        # the widget event of that run (a click on Start training did nothing)
        if not st.session_state.get("_through_app"):
            st.session_state["_through_app"] = True
            st.rerun()


@st.cache_resource(show_spinner=False)
def device_label() -> str:
    """GPU name from the NVIDIA driver's /proc entry, else the CPU core count.

    Read without importing torch, which would add a second or more to the first paint.
    """
    import os

    gpus = Path("/proc/driver/nvidia/gpus")
    if gpus.is_dir():
        for info in sorted(gpus.glob("*/information")):
            for line in info.read_text(errors="ignore").splitlines():
                if line.startswith("Model:"):
                    return f"GPU: {line.split(':', 1)[1].strip()}"
        return "GPU (NVIDIA)"
    return f"CPU ({os.cpu_count()} cores)"


@st.cache_resource(show_spinner="Reading the dataset…", max_entries=4)
def load(path: str, mtime: float) -> tuple[Any, Any]:
    """Read once per file version; returns (AnnData, QCSummary)."""
    from scapp.data import load_dataset

    return load_dataset(path)


def load_current() -> tuple[Any, Any] | None:
    """The dataset chosen on the Data page, or None (with a hint) when there is none."""
    path = st.session_state.get("dataset_path")
    if not path:
        return None
    p = Path(path)
    return load(str(p), p.stat().st_mtime if p.exists() else 0.0)


def show_error(e: BaseException) -> None:
    """A user-facing error box: what happened and what to do, never a traceback."""
    st.error(str(e), icon=":material/error:")


@st.cache_resource(show_spinner=False)
def _logo_html() -> str:
    """The logo as an inline SVG image: st.image would import numpy and PIL before the first paint."""
    import base64

    data = base64.b64encode((ASSETS / "logo.svg").read_bytes()).decode()
    return f'<img src="data:image/svg+xml;base64,{data}" width="180" alt="scapp logo">'


_SIDEBAR_SLOT = "_sidebar-slot"


def sidebar() -> None:
    """Logo, the session's dataset / labels / run, the device and the figure format.

    The dataset, labels and run are drawn into a placeholder that :func:`refresh_sidebar` redraws once the page
    has run (app.py) or picked a run (:func:`choose_run`): the sidebar is drawn before the page, so a page that
    sets the run (Train, Explore) would otherwise leave the previous one on show.
    """
    with st.sidebar:
        st.markdown(_logo_html(), unsafe_allow_html=True)
        st.session_state[_SIDEBAR_SLOT] = st.empty()
        refresh_sidebar()
        st.caption(device_label())
        exposed = exposed_address()
        if exposed:
            st.warning(f"This app is reachable from other machines ({exposed}): whoever can reach it sees your "
                       "data, runs and uploads. Serve it on 127.0.0.1 unless you mean to share it.",
                       icon=":material/public:")
        st.radio("Figure download format", list(FIG_FORMATS), horizontal=True, key="fig-format",
                 help="What the camera icon in each figure's toolbar saves (at twice the screen resolution).")


_LOCAL = ("127.0.0.1", "localhost", "::1")


def exposed_address() -> str | None:
    """The address the server listens on when that is not this machine only, else None.

    Unset means every interface to Streamlit (it happens when the app is started outside the repository, whose
    .streamlit/config.toml sets 127.0.0.1); that is reported only where a server is running.
    """
    from streamlit import runtime

    addr = st.get_option("server.address")
    if addr:
        a = str(addr).strip().strip("[]").lower()
        return None if a in _LOCAL or a.startswith("127.") else str(addr)
    return "all network interfaces" if runtime.exists() else None


def refresh_sidebar() -> None:
    """(Re)draw the sidebar's dataset, labels and run from the session state."""
    slot = st.session_state.get(_SIDEBAR_SLOT)
    if slot is None:
        return
    try:
        with slot.container():
            path = st.session_state.get("dataset_path")
            st.markdown(f"**Dataset:** {Path(path).name if path else '—'}")
            if st.session_state.get("label"):
                st.markdown(f"**Labels:** `{st.session_state['label']}`")
            elif path and st.session_state.get("no_label"):
                st.markdown("**Labels:** none")
            st.markdown(f"**Run:** {st.session_state.get('run_id') or '—'}")
    except st.errors.StreamlitAPIException:  # called from inside a fragment: the next full run redraws it
        pass


# -- the session's choices in the address bar, so that a browser reload keeps them ---------------------------------
_URL_KEYS = {"data": "dataset_path", "label": "label", "model": "model", "preset": "preset", "run": "run_id"}
_DEMO = "demo"


def _url_value(key: str, value: str) -> str:
    """``data=demo`` for the built-in demo (a short link that survives a move of the app), else the value."""
    if key == "data":
        # the demo was chosen through scapp.data.demo, so it is imported then; never import anndata for this
        demo = sys.modules.get("scapp.data.demo")
        if demo is not None and Path(value) == demo.demo_path():
            return _DEMO
    return value


def restore_from_url() -> None:
    """On a fresh session (a reload, a shared link), take the dataset, labels, model, preset and run from the URL.

    Only values that still make sense are taken: a file that exists, a model the registry trains, a run folder on
    disk. Anything the session already holds wins.
    """
    if st.session_state.get("_url-restored"):
        return
    st.session_state["_url-restored"] = True
    qp = st.query_params
    data = qp.get("data")
    if data and "dataset_path" not in st.session_state:
        if data == _DEMO:
            from scapp.data.demo import demo_path

            data = str(demo_path())
        if Path(data).exists():
            st.session_state["dataset_path"] = data
            if qp.get("label") and "label" not in st.session_state:
                st.session_state["label"] = qp["label"]
            elif qp.get("nolabel") == "1" and "no_label" not in st.session_state:  # Data page: "no label"
                st.session_state.update(label=None, no_label=True)
    model = qp.get("model")
    if model and "model" not in st.session_state:
        from scapp.models import REGISTRY

        if model in REGISTRY and REGISTRY[model].trainable and REGISTRY[model].available:
            st.session_state["model"] = model
            if qp.get("preset") in REGISTRY[model].presets and "preset" not in st.session_state:
                st.session_state["preset"] = qp["preset"]
    run = qp.get("run")
    if run and "run_id" not in st.session_state and Path(run).name == run and (runs_root() / run).is_dir():
        st.session_state["run_id"] = run


def sync_url() -> None:
    """Write the session's choices into the URL (only what changed, leaving other parameters alone)."""
    qp = st.query_params
    for key, state_key in _URL_KEYS.items():
        value = st.session_state.get(state_key)
        want = _url_value(key, str(value)) if value else None
        if want is None:
            if key in qp:
                del qp[key]
        elif qp.get(key) != want:
            qp[key] = want
    if st.session_state.get("no_label") and st.session_state.get("dataset_path"):
        if qp.get("nolabel") != "1":
            qp["nolabel"] = "1"
    elif "nolabel" in qp:
        del qp["nolabel"]


FIG_FORMATS = {"SVG": "svg", "PNG": "png"}


def figure_config(name: str) -> dict[str, Any]:
    """Plotly config: the modebar's camera saves ``name`` in the sidebar's format at scale 2."""
    fmt = FIG_FORMATS.get(st.session_state.get("fig-format", "SVG"), "svg")
    return {"toImageButtonOptions": {"format": fmt, "scale": 2, "filename": name}, "displaylogo": False}


def show_figure(fig: Any, *, key: str, name: str, data: Any | None = None, on_select: str = "ignore") -> Any:
    """A figure with image export from its toolbar and, when ``data`` is given, a CSV of the data behind it.

    Returns the selection event when ``on_select="rerun"`` (as ``st.plotly_chart`` does).
    """
    kwargs: dict[str, Any] = {"key": key, "config": figure_config(name)}
    if on_select != "ignore":
        kwargs.update(on_select=on_select, selection_mode="points")
    event = st.plotly_chart(fig, **kwargs)
    if data is not None:
        frame = data

        def _csv() -> str:
            return frame.to_csv(index=False)

        st.download_button("CSV", _csv, file_name=f"{name}.csv", mime="text/csv", key=f"{key}-csv",
                           on_click="ignore", type="tertiary", icon=":material/download:",
                           help="Download the data behind this figure")
    return event


_THREE_DECIMALS = ("macro_f1", "median_f1", "balanced_accuracy", "accuracy", "ece_after", "ece_before",
                   "valid_macro_f1", "test_macro_f1", "valid_balanced_accuracy", "test_balanced_accuracy", "jaccard")


def column_config(columns: Any) -> dict[str, Any]:
    """``st.dataframe`` column settings for a scapp table: human names, a tooltip for metrics, 3 decimals for scores.

    The tables keep their snake_case names (CSV downloads, tests); only what people read is renamed.
    """
    from scapp.evaluate.glossary import column_help, column_label

    cfg: dict[str, Any] = {}
    for c in map(str, columns):
        if c in _THREE_DECIMALS:
            cfg[c] = st.column_config.NumberColumn(column_label(c), help=column_help(c), format="%.3f")
        else:
            cfg[c] = st.column_config.Column(column_label(c), help=column_help(c))
    return cfg


def runs_root() -> Path:
    from scapp import runs

    root = runs.runs_root()
    root.mkdir(parents=True, exist_ok=True)
    return root


def session_id() -> str | None:
    """This browser session's id (Streamlit's), or None outside a script run."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    return getattr(ctx, "session_id", None)


def uploads_folder() -> Path:
    from scapp.uploads import uploads_root

    return uploads_root(runs_root())


def save_upload(upload: Any) -> Path:
    """Store an uploaded file by its content (``scapp.uploads``), once per upload: a corrected file uploaded again
    under the same name is a new upload with new bytes, so it is stored and read afresh."""
    from scapp.uploads import store_upload

    memo = st.session_state.setdefault("_uploads", {})
    key = getattr(upload, "file_id", None) or f"{upload.name}:{upload.size}:{id(upload)}"
    if key in memo and Path(memo[key]).is_file():
        return Path(memo[key])
    path = store_upload(upload.getbuffer(), upload.name, root=uploads_folder(), session=session_id())
    memo[key] = str(path)
    return path


def _session_alive(sid: str) -> bool:
    from streamlit import runtime

    return runtime.exists() and runtime.get_instance().is_active_session(sid) is True  # (AppTest: a mock)


@st.cache_resource(show_spinner=False)
def _sweeper() -> dict[str, Any]:
    """One per server process: when the uploads were last swept (0: not yet, so the first page run sweeps)."""
    import threading

    return {"last": 0.0, "lock": threading.Lock()}


def upload_housekeeping() -> None:
    """Note that this session is alive (at most once a minute) and sweep uploads nobody needs any more (when the
    app starts, then every few minutes): ``scapp.uploads.sweep``."""
    import os
    import time

    from scapp import uploads

    root, now, sid = uploads_folder(), time.time(), session_id()
    held = [p for p in (st.session_state.get("dataset_path"), st.session_state.get("query_path"))
            if p and uploads.upload_of(p, root) is not None]
    if sid and (now - st.session_state.get("_uploads-seen", 0.0) > 60 or held != st.session_state.get("_uploads-held")):
        try:
            uploads.hold(root, sid, held, now=now)  # a reload or restart: the files of the URL are held again
        except OSError:
            pass
        st.session_state["_uploads-seen"], st.session_state["_uploads-held"] = now, held
    sw = _sweeper()
    # the first sweep waits for the first page run that has imported pandas (reading runs needs it): the very first
    # paint of the Data page imports nothing heavy
    due = now - sw["last"] > uploads.SWEEP_EVERY_S and (sw["last"] or "pandas" in sys.modules)
    if due and sw["lock"].acquire(blocking=False):
        try:
            sw["last"] = now
            grace = float(os.environ.get("SCAPP_UPLOAD_GRACE_S", uploads.GRACE_S))
            uploads.sweep(root, runs_root(), is_alive=_session_alive, now=now, grace_s=grace)
        except OSError:
            pass  # a sweep that cannot finish is tried again later; the page goes on
        finally:
            sw["lock"].release()


def keep_upload_checkbox(path: str | Path, *, key: str) -> None:
    """For an uploaded file: a "keep" box (uploads are removed after the session ends unless kept or trained on)."""
    from scapp import uploads

    root = uploads_folder()
    if uploads.upload_of(path, root) is None:
        return
    kept = uploads.is_kept(path, root)
    keep = st.checkbox("Keep this upload after this session", value=kept, key=f"{key}-{Path(path).parent.name}",
                       help="Uploaded files are removed about an hour after the browser session that uploaded them "
                            "ends, unless kept here. A file a run was trained on is kept while the run exists. "
                            f"They are stored in {root}.")
    if keep != kept:
        uploads.set_keep(path, root, keep)


def chosen_file(upload: Any, typed_path: str, state_key: str) -> Path | None:
    """Remember an uploaded file or a typed path under ``state_key``; None (with an error) for a bad path."""
    if upload is not None:
        st.session_state[state_key] = str(save_upload(upload))
    elif typed_path:
        p = Path(typed_path).expanduser()
        if not p.exists():
            st.error(f"No file or folder at {p}.")
            return None
        st.session_state[state_key] = str(p.resolve())
    path = st.session_state.get(state_key)
    return Path(path) if path else None


def default_run(table: Any, active: str | None, picked: str | None) -> str:
    """Which run a run picker shows first: the session's run when it finished (or the user picked it in a picker),
    else the newest finished run, else the newest listed.

    A cancelled run keeps its best model and stays listed, but is never the default: after a Stop and a reload
    Explore and Compare open the newest run that finished.
    """
    ids = table.sort_values("run_id", ascending=False)["run_id"].tolist()
    finished = table[table["state"] == "finished"].sort_values("run_id", ascending=False)["run_id"].tolist()
    if active in ids and (active in finished or active == picked):
        return active
    return finished[0] if finished else ids[0]


def set_run(run_id: str | None, *, picked: bool = False) -> None:
    """Make ``run_id`` the session's run (the sidebar shows it at once); ``picked``: the user chose it."""
    if run_id is None:
        st.session_state.pop("run_id", None)
    else:
        st.session_state["run_id"] = run_id
        if picked:
            st.session_state["run_picked"] = run_id
    refresh_sidebar()


def choose_run(*, key: str, finished_only: bool = True) -> Path | None:
    """Select box over run folders, defaulting to the session's run if it finished, else the newest finished run."""
    from scapp import runs

    df = runs.list_runs(runs_root())
    if finished_only and len(df):
        # a run cancelled while still queued (or stopped before its first epoch) has no model to show
        df = df[df["state"].isin(["finished", "cancelled"]) & df["has_model"]]
    if df.empty:
        st.info("No trained run yet: train one on the **Train** page.")
        return None
    df = df.sort_values("run_id", ascending=False)
    ids = df["run_id"].tolist()

    def _label(r: Any) -> str:
        state = "" if r.state == "finished" else f" · {r.state}"
        if r.macro_f1 is not None and r.macro_f1 == r.macro_f1:
            return f"{r.run_id} · {r.model} · {r.dataset} · macro-F1 {r.macro_f1:.3f}{state}"
        return f"{r.run_id} · {r.model} · {r.state}"

    labels = {r.run_id: _label(r) for r in df.itertuples()}
    first = default_run(df, st.session_state.get("run_id"), st.session_state.get("run_picked"))
    if key in st.session_state and st.session_state[key] not in ids:  # deleted meanwhile
        del st.session_state[key]
    rid = st.selectbox("Run", ids, index=ids.index(first), format_func=lambda i: labels[i], key=key,
                       on_change=lambda: st.session_state.update(run_picked=st.session_state.get(key)))
    set_run(rid)
    return runs_root() / rid
