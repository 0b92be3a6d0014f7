"""Annotate: apply a trained run to a query dataset, check gene overlap first, download the result."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from pages._ui import choose_run, chosen_file, load, runs_root, show_error, show_figure
from scapp.errors import ScappError

st.title("Annotate")
run = choose_run(key="annotate-run")
if run is None:
    st.stop()


@st.cache_resource(show_spinner="Loading the model…", max_entries=2)
def _model(run_dir: str):
    from scapp.annotate import load_run

    return load_run(run_dir)


def _use_demo_query() -> None:
    from scapp.data.demo import demo_query_path

    st.session_state["query_path"] = str(demo_query_path())
    st.session_state["annotate-path"] = ""


q1, q2 = st.columns([2, 1])
up = q1.file_uploader("Query dataset (raw counts)", type=["h5ad", "h5", "loom", "csv", "tsv", "gz", "zip"],
                      key="annotate-upload")
qpath = q1.text_input("…or a path on this machine", key="annotate-path")
q2.write("")
q2.button("Use demo query", key="annotate-demo", on_click=_use_demo_query, width="stretch")
q2.caption("PBMC 4k (10x v2): 1,500 cells from another donor and lab, to annotate with a model trained on the demo.")
p = chosen_file(up, qpath, "query_path")
if p is None or not p.exists():
    if p is None and not qpath:
        st.info("Upload a query dataset or give its path.")
    st.stop()
path = str(p)
try:
    adata, qc = load(str(p), p.stat().st_mtime)
    loaded = _model(str(run))
    from scapp.annotate import check_query

    rep = check_query(loaded, adata)
except ScappError as e:
    show_error(e)
    st.stop()

st.subheader("Before predicting: does the query fit the model?")
c = st.columns(4)
c[0].metric("Query cells", f"{qc.n_cells:,}")
c[1].metric("Model genes found", f"{rep.n_shared:,} / {rep.n_model_genes:,}")
c[2].metric("Overlap", f"{rep.frac_shared:.1%}")
c[3].metric("Input kind", qc.input_kind)
if rep.missing_important:
    st.warning(f"{len(rep.missing_important)} of the model's {rep.n_important_checked} most important genes are "
               f"missing: {', '.join(rep.missing_important[:15])}")
if rep.n_shared < rep.n_model_genes:
    st.caption(f"{rep.summary()}.")  # how many of the model's genes the query lacks and are filled with zeros
if qc.input_kind != "counts":
    st.error(f"The query does not look like raw counts: {qc.input_kind_reason}")


@st.cache_data(show_spinner="Reading the genes of the model's training file…", max_entries=4)
def _retrain_offer(run_dir: str, query_path: str, mtime: float):
    from scapp.retrain import retrain_offer

    return retrain_offer(run_dir, load(query_path, mtime)[0])


def _start_retrain() -> None:
    """Queue the run's method and settings on the genes the query shares with its training file."""
    from scapp.retrain import retrain_request
    from scapp.train.job import start_job

    try:
        req = retrain_request(run, adata, query_name=Path(path).name)
        new = start_job(req, root=runs_root())
    except ScappError as e:
        show_error(e)
        return
    st.session_state["annotate-retrained"] = (str(run), path, new.name)


if not rep.ok:
    st.error(rep.reason)
    started = st.session_state.get("annotate-retrained")
    offer = None if started and started[:2] == (str(run), path) else _retrain_offer(str(run), path, p.stat().st_mtime)
    if offer is None:
        st.session_state["run_id"] = started[2]  # the run the Train page follows and Annotate offers next
        st.success(f"Retraining started as run **{started[2]}**. When it has finished, come back here and pick it "
                   "as the run to annotate this query with.")
        st.page_link("pages/train.py", label="Follow it on the Train page", icon=":material/play_circle:")
    elif offer.available:
        n = offer.n_shared
        st.info(f"The query shares {n:,} of the model's genes. Retrain the same method and settings on those "
                f"{n:,} genes, then annotate with the new run.")
        if st.button(f"Retrain on the {n:,} shared genes", key="annotate-retrain", type="primary"):
            _start_retrain()
            if st.session_state.get("annotate-retrained", ("",))[:2] == (str(run), path):
                st.rerun()
    else:
        st.info(offer.reason)
    st.stop()

if st.button("Predict", type="primary", key="annotate-go", disabled=qc.input_kind != "counts"):
    from scapp.annotate import annotate

    try:
        with st.spinner(f"Annotating {qc.n_cells:,} cells…"):
            st.session_state["annotation"] = (str(run), path, annotate(loaded, adata, explain=False))
    except ScappError as e:
        show_error(e)

res = st.session_state.get("annotation")
if not res or res[0] != str(run) or res[1] != path:
    st.stop()
ann = res[2]
# The default is the run's own threshold, chosen before training (the annotation starts from it).
thr = st.slider("Unassigned below confidence", 0.0, 1.0, float(loaded.threshold), 0.01,
                key=f"annotate-threshold-{run.name}", help=f"This run was trained with {loaded.threshold:.2f}.")
ann.threshold = thr
un = ann.unassigned(thr)
st.metric("Unassigned", f"{un.mean():.1%}", help="Cells whose calibrated top probability is below the threshold")

from scapp.viz import class_colors, class_sizes_bar, embedding_scatter  # noqa: E402

colors = class_colors(loaded.classes)
summary = ann.summary(thr)
left, right = st.columns(2)
qname = Path(path).stem
with left:
    show_figure(class_sizes_bar(dict(zip(summary["label"], summary["cells"])), colors=colors), key="annotate-counts",
                name=f"{qname}-scapp-classes", data=summary)
if ann.embedding is not None and len(ann.embedding) >= 2:
    from scapp.evaluate.embedding import pca_coords

    coords = pca_coords(ann.embedding) if len(ann.embedding) > 50_000 else None
    if coords is None:
        coords = st.session_state.get("annotate-umap")
        if coords is None or len(coords) != len(ann.embedding):
            from scapp.evaluate.embedding import umap_coords

            with st.spinner("Computing the map…"):
                coords = umap_coords(ann.embedding)
            st.session_state["annotate-umap"] = coords
    labels_now = ann.labels(thr).to_numpy()
    with right:
        show_figure(embedding_scatter(coords, labels_now, colors=colors, kind="categorical"), key="annotate-map",
                    name=f"{qname}-scapp-map", data=pd.DataFrame({"cell_id": ann.cell_ids, "label": labels_now,
                                                                 "x": coords[:, 0], "y": coords[:, 1]}))

table = ann.to_table(thr)
st.dataframe(table.head(200), hide_index=True, use_container_width=True)
d1, d2 = st.columns(2)
d1.download_button("Download CSV", table.to_csv(index=False).encode(), file_name=f"{Path(path).stem}-scapp.csv",
                   mime="text/csv", key="annotate-dl-csv")


@st.cache_data(show_spinner=False, max_entries=2)
def _h5ad_bytes(key: tuple) -> bytes:
    import tempfile

    out = ann.to_adata(adata)
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "annotated.h5ad"
        out.write_h5ad(f)
        return f.read_bytes()


d2.download_button("Download annotated h5ad", _h5ad_bytes((str(run), path, round(thr, 3))),
                   file_name=f"{Path(path).stem}-scapp.h5ad", key="annotate-dl-h5ad")
