"""Annotate: apply a trained run to a query dataset, check gene overlap first, download the result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from pages._ui import (
    choose_run,
    chosen_file,
    keep_upload_checkbox,
    load,
    runs_root,
    show_error,
    show_figure,
    through_app,
)
from scapp.data.validate import UNASSIGNED
from scapp.errors import ScappError

DENOISED_DOWNLOAD_LIMIT = 2 * 2**30  # bytes of denoised layers served through the browser; larger: the CLI

through_app()  # a page opened on its own by a fresh server runs again through app.py
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
if p is not None:
    with q1:
        keep_upload_checkbox(p, key="annotate-keep")
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


# shared and read-only: st.cache_data would unpickle a copy on every hit (nothing in scapp unpickles)
@st.cache_resource(show_spinner="Reading the genes of the model's training file…", max_entries=4)
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

caps = loaded.capabilities
if not caps.classifies:  # e.g. a ZiPo run trained without labels: it embeds and denoises, it names no cell type
    from scapp.annotate import h5ad_bytes
    from scapp.denoise import write_denoised

    lab = ", ".join(loaded.denoised_layers)
    why = "was trained without labels" if loaded.spec.capabilities.classifies else "does not classify cells"
    st.info(f"Run **{run.name}** ({loaded.config['model']}) {why}, so it cannot name the cell "
            "types of a query. " + (f"It can denoise the query's counts: the file below is the query with the "
                                    f"denoised counts as layers ({lab}) and the cells' position in the model's "
                                    "latent space (obsm). To annotate, train it again with a label column."
                                    if caps.denoises else "Train a run with a label column to annotate."))
    if caps.denoises:
        size = loaded.denoised_bytes(qc.n_cells, adata.n_vars)
        st.caption(f"About {size / 2**20:,.0f} MB of denoised counts ({qc.n_cells:,} cells × {adata.n_vars:,} genes "
                   f"× 4 bytes × {len(loaded.denoised_layers)} layers); genes the model does not read are left "
                   f"empty. For large files: `scapp denoise {run} QUERY --genes query --out denoised.h5ad`.")
        st.download_button(
            "Download denoised h5ad", lambda: h5ad_bytes(lambda f: write_denoised(loaded, adata, f, genes="query")),
            file_name=f"{Path(path).stem}-scapp-denoised.h5ad", key="annotate-dl-denoised", on_click="ignore",
            icon=":material/download:", disabled=qc.input_kind != "counts" or size > DENOISED_DOWNLOAD_LIMIT)
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

from scapp.annotate import format_probability, query_latent
from scapp.query_map import map_job
from scapp.viz import class_colors, class_sizes_bar
from scapp.viz.query_check import AGREEMENT_COLORS, label_check_heatmap, query_map

# Results and downloads first: nothing below waits for the map, which is computed in its own process.
st.subheader("Results")
# The default is the run's own threshold, chosen before training (the annotation starts from it).
thr = st.slider("Unassigned below confidence", 0.0, 1.0, float(loaded.threshold), 0.01,
                key=f"annotate-threshold-{run.name}", help=f"This run was trained with {loaded.threshold:.2f}.")
ann.threshold = thr
un = ann.unassigned(thr)
summary = ann.summary(thr)
labels_now = ann.labels(thr).to_numpy()
c = st.columns(3)
c[0].metric("Cells annotated", f"{len(ann.cell_ids):,}")
c[1].metric("Unassigned", f"{un.mean():.1%}", help="Cells whose calibrated top probability is below the threshold")
c[2].metric("Cell types found", f"{int((summary['label'] != UNASSIGNED).sum()):,} of {len(loaded.classes):,}")

qname = Path(path).stem
latent, latent_source = query_latent(ann)
_held = st.session_state.get("annotate-map-job")
if not _held or _held[0] is not ann:  # hashing a big latent once per annotation, not on every rerun
    _held = (ann, map_job(latent), {})
    st.session_state["annotate-map-job"] = _held
job = _held[1]
table = ann.to_table(thr)


def _csv_bytes() -> bytes:
    return table.to_csv(index=False).encode()


with_denoised = False
if caps.denoises:  # the method predicts the counts behind the zeros: offer them in the annotated file
    size = loaded.denoised_bytes(len(ann.cell_ids), adata.n_vars)
    too_big = size > DENOISED_DOWNLOAD_LIMIT
    with_denoised = st.checkbox(
        f"Add denoised counts (layers {', '.join(loaded.denoised_layers)})", key=f"annotate-denoised-{run.name}",
        disabled=too_big, help="The model's expected count of every gene in every cell (and, zero-inflated, the "
                               "share that is not a technical zero), for the query's genes; genes the model does "
                               "not read are left empty (NaN)") and not too_big
    mb = f"{size / 2**20:,.0f} MB ({len(ann.cell_ids):,} cells × {adata.n_vars:,} genes × 4 bytes × " \
         f"{len(loaded.denoised_layers)} layers)"
    if too_big:
        st.caption(f"The denoised counts would add {mb}: too large to download from the browser. Write them to disk "
                   f"with `scapp predict {run} QUERY --out annotated.h5ad --denoised`.")
    elif with_denoised:
        st.warning(f"The annotated h5ad grows by about {mb}.", icon=":material/database:")


def _h5ad_bytes() -> bytes:
    """The annotated query, with the UMAP when it has been computed by the time of the click (and the denoised
    layers when asked for, written a block of cells at a time)."""
    from scapp.annotate import h5ad_bytes, write_annotated

    umap = job.coords() if job.state()[0] == "ready" else None
    return h5ad_bytes(lambda f: write_annotated(ann, loaded, adata, f, umap=umap, denoised=with_denoised))


d1, d2, _ = st.columns([1, 1, 2])
d1.download_button("Download CSV", _csv_bytes, file_name=f"{qname}-scapp.csv", mime="text/csv",
                   key="annotate-dl-csv", on_click="ignore", icon=":material/download:", width="stretch",
                   help="Labels, confidence and every class probability at full precision, one row per cell")
d2.download_button("Download annotated h5ad", _h5ad_bytes, file_name=f"{qname}-scapp.h5ad", on_click="ignore",
                   key="annotate-dl-h5ad", icon=":material/download:", width="stretch",
                   help="The query with obs scapp_label, scapp_confidence, scapp_unassigned (and the map once "
                        "computed" + (", the denoised layers" if with_denoised else "") + "); existing columns are "
                        "never overwritten")

colors = class_colors(loaded.classes)
left, right = st.columns([3, 2])
SHOWN = 2_000  # rows drawn in the browser; the CSV holds every cell
prob_cols = ["confidence"] + [k for k in table.columns if k.startswith("p_")]
with left:
    shown = table.head(SHOWN)
    names = {"cell_id": st.column_config.TextColumn("Cell", pinned=True), "label": "Predicted type",
             "confidence": "Confidence", "unassigned": "Unassigned"}
    names.update({k: f"P({k[2:]})" for k in prob_cols[1:]})  # p_<class> in the CSV: the probability of that class
    st.dataframe(shown.style.format(format_probability, subset=prob_cols), hide_index=True, height=420,
                 key="annotate-table", column_config=names)
    st.caption(("" if len(table) <= SHOWN else f"The first {SHOWN:,} of {len(table):,} cells. ") +
               "Probabilities are rounded for reading; the CSV keeps them at full precision.")
with right:
    show_figure(class_sizes_bar(dict(zip(summary["label"], summary["cells"])), colors=colors), key="annotate-counts",
                name=f"{qname}-scapp-classes", data=summary)


def _as_list(v: object) -> list[str]:
    """A multiselect cell of the mapping editor as a list (an emptied cell may come back as None or NaN)."""
    if v is None or isinstance(v, float):
        return []
    return [v] if isinstance(v, str) else [str(x) for x in v]


# --- the query's own labels, when it has some: does the model agree with them? ---------------------------------
cands = list(qc.label_candidates)
chk = None
if cands:
    from scapp.evaluate.query_labels import IGNORE, check_labels, default_label_column, suggest_mapping

    st.subheader("Check against the query's own labels")
    default = default_label_column(cands, loaded.config.get("label"))
    k1, *m = st.columns([2, 1, 1, 1])
    col = k1.selectbox("Query column with its own cell types", cands, index=cands.index(default),
                       key=f"annotate-check-col-{run.name}",
                       help="Labels the query already carries (e.g. its authors' annotation), to compare the "
                            "model's predictions with")
    given_counts = qc.label_candidates[col]
    suggested = suggest_mapping(list(given_counts), loaded.classes)
    n_matched = sum(bool(v) for v in suggested.values())
    with st.expander(f"Matching of names: {n_matched} of {len(suggested)} given labels matched to model classes "
                     "(edit to change)", expanded=n_matched < len(suggested) - 1):
        st.caption("Names are matched ignoring case, spaces and punctuation; a broader given label counts as all "
                   "model classes under it (\"CD4 T\" as \"CD4 T naive\" and \"CD4 T memory\"). Pick the model "
                   f"classes that count as each given label; leave it empty to {IGNORE[1:-1]} its cells.")
        edit_in = pd.DataFrame({"given label": list(suggested), "cells": [given_counts[g] for g in suggested],
                                "counts as model class(es)": [list(v) for v in suggested.values()]})
        edited = st.data_editor(
            edit_in, key=f"annotate-map-{run.name}-{col}", hide_index=True, width="stretch",
            disabled=["given label", "cells"], num_rows="fixed",
            column_config={"counts as model class(es)": st.column_config.MultiselectColumn(
                options=list(loaded.classes), help="Empty: these cells are left out of the comparison")})
    mapping = {str(g): _as_list(v) for g, v in zip(edited["given label"], edited["counts as model class(es)"])}
    chk = check_labels(labels_now, adata.obs[col], loaded.classes, mapping=mapping, cell_ids=ann.cell_ids,
                       confidence=ann.confidence, column=col)
    if not chk.n_compared:
        st.info("No given label is matched to a model class yet: pick the model classes for some of them above.")
    else:
        m[0].metric("Agreement", f"{chk.agreement:.1%}", help="Compared cells whose predicted class counts as their "
                                                              "given label (Unassigned cells count as not agreeing)")
        m[1].metric("Among assigned cells", f"{chk.agreement_assigned:.1%}",
                    help="The same, leaving out the cells the model left Unassigned at this threshold")
        m[2].metric("Cells compared", f"{chk.n_compared:,}",
                    help=f"Of the {chk.n_cells:,} query cells: those whose given label is matched to a model class")
        left_out = chk.n_cells - chk.n_compared
        st.caption("Unassigned cells count as disagreeing." + (
            f" Not compared: {left_out:,} cells labelled {', '.join(chk.ignored)} (no model class picked for them "
            "under *Matching of names*)." if left_out else ""))
        per = chk.per_label()
        per["agreement"] = per["agreement"] * 100  # shown as a bar with a percentage
        per["agree"] = ["–" if pd.isna(v) else f"{int(v):,}" for v in per["agree"]]  # not compared: no count
        st.dataframe(per, hide_index=True, key="annotate-check-table", column_config={
            "given label": st.column_config.TextColumn(width=170),
            "agree": st.column_config.TextColumn(alignment="right"),
            "counts as": st.column_config.TextColumn(width=220),
            "agreement": st.column_config.ProgressColumn("agreement", format="%.0f%%", min_value=0, max_value=100,
                                                         width=105),
            "cells called so": st.column_config.NumberColumn("cells called so", format="%d")})
        show_figure(label_check_heatmap(chk.confusion(), chk.agreeing_pairs()), key="annotate-check-cm",
                    name=f"{qname}-scapp-vs-{col}", data=chk.confusion().reset_index())
        dis = chk.disagreements()
        st.markdown(f"**{len(dis):,} cells where the prediction differs from their given label**")
        st.dataframe(dis.head(SHOWN).style.format(format_probability, subset=["confidence"]), hide_index=True,
                     height=300, key="annotate-check-dis", column_config={
                         "cell_id": "Cell", "predicted": "Predicted type", "confidence": "Confidence"})
        st.download_button("Download the cells that disagree (CSV)", dis.to_csv(index=False).encode(),
                           file_name=f"{qname}-scapp-vs-{col}-disagree.csv", mime="text/csv",
                           key="annotate-check-dl", icon=":material/download:")


# --- the map: PCA at once, the UMAP from a background process when it is ready ----------------------------------
@st.fragment(run_every=2)
def _wait_for_map(job) -> None:
    """Poll the map process; the page reruns once the UMAP is there (or it failed)."""
    if job.state()[0] != "running":
        st.rerun(scope="app")
    st.info("Computing the UMAP in the background (a minute or less); the PCA map below is shown meanwhile. "
            "The results and downloads above do not wait for it.", icon=":material/hourglass_top:")


st.subheader("Cell map")
state, map_error = job.state()
if state == "missing":
    job.start()
    state = "running"
if state == "ready":
    coords, method = job.coords(), "UMAP"
else:
    from scapp.evaluate.embedding import pca_coords

    if "pca" not in _held[2]:
        _held[2]["pca"] = pca_coords(latent)
    coords, method = _held[2]["pca"], "PCA"
    if state == "running":
        _wait_for_map(job)
    else:
        st.warning(map_error, icon=":material/error:")
        if st.button("Try the UMAP again", key="annotate-map-retry"):
            job.start()
            st.rerun()
hover = pd.DataFrame({"cell": np.asarray(ann.cell_ids), "predicted": labels_now,
                      "confidence": ann.confidence.to_numpy()})
data = pd.DataFrame({"cell_id": np.asarray(ann.cell_ids), "label": labels_now})
by = {"predicted type": (labels_now, colors)}
if chk is not None and chk.n_compared:
    given = chk.cells["given"].to_numpy()
    hover[f"given ({chk.column})"] = given
    data[f"given ({chk.column})"] = given
    by[f"given ({chk.column})"] = (given, None)
    by["agreement with the given labels"] = (chk.cell_status(), AGREEMENT_COLORS)
    data["agreement"] = chk.cell_status()
c1, c2 = st.columns([3, 2])
what = c1.segmented_control("Colour by", list(by), default="predicted type",
                            key=f"annotate-map-colour-{chk.column if chk is not None else ''}") or "predicted type"
c2.caption(f"A {method} of {latent_source}.")
values, cmap = by[what]
show_figure(query_map(coords, values, colors=cmap, method=method, hover=hover, color_label=what), key="annotate-map",
            name=f"{qname}-scapp-map", data=data.assign(**{f"{method.lower()}1": coords[:, 0],
                                                           f"{method.lower()}2": coords[:, 1]}))
