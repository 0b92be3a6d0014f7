"""Widgets and cached loaders shared by the pages (no science here: it all lives in scapp)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

ASSETS = Path(__file__).resolve().parents[1] / "assets"


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


def sidebar() -> None:
    with st.sidebar:
        st.markdown(_logo_html(), unsafe_allow_html=True)
        path = st.session_state.get("dataset_path")
        st.markdown(f"**Dataset:** {Path(path).name if path else '—'}")
        if st.session_state.get("label"):
            st.markdown(f"**Labels:** `{st.session_state['label']}`")
        st.markdown(f"**Run:** {st.session_state.get('run_id') or '—'}")
        st.caption(device_label())
        st.radio("Figure download format", list(FIG_FORMATS), horizontal=True, key="fig-format",
                 help="What the camera icon in each figure's toolbar saves (at twice the screen resolution).")


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


def runs_root() -> Path:
    from scapp import runs

    root = runs.runs_root()
    root.mkdir(parents=True, exist_ok=True)
    return root


def save_upload(upload: Any) -> Path:
    """Write an uploaded file next to the runs (never over an existing file)."""
    folder = runs_root().parent / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    name = Path(upload.name).name or "upload"
    dest = folder / name
    i = 1
    while dest.exists() and dest.stat().st_size != upload.size:
        dest = folder / f"{Path(name).stem}-{i}{''.join(Path(name).suffixes)}"
        i += 1
    if not dest.exists():
        dest.write_bytes(upload.getbuffer())
    return dest


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


def choose_run(*, key: str, finished_only: bool = True) -> Path | None:
    """Select box over run folders, defaulting to the active run."""
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
    labels = {r.run_id: f"{r.run_id} · {r.model} · {r.dataset} · macro-F1 {r.macro_f1:.3f}"
              if r.macro_f1 == r.macro_f1 and r.macro_f1 is not None else f"{r.run_id} · {r.model} · {r.state}"
              for r in df.itertuples()}
    active = st.session_state.get("run_id")
    idx = ids.index(active) if active in ids else 0
    rid = st.selectbox("Run", ids, index=idx, format_func=lambda i: labels[i], key=key)
    st.session_state["run_id"] = rid
    return runs_root() / rid
