"""Data: upload or point to a dataset, see its QC summary, pick the label column."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from pages._ui import (
    chosen_file,
    keep_upload_checkbox,
    load_current,
    refresh_sidebar,
    show_error,
    show_figure,
    sync_url,
    through_app,
)
from scapp.errors import ScappError

# The first page a user sees: paint it before anything heavy (numpy, pandas, anndata, plotly) is imported.
through_app()  # a page opened on its own by a fresh server runs again through app.py
st.title("Data")
st.markdown("**What is scapp?** It learns the cell types of a labelled reference dataset and annotates new cells "
            "with them, saying how sure each call is and which genes each model used. Start here with your file "
            "(or the demo), then go through Model → Train → Explore → Annotate.")
st.caption("Raw counts in, from h5ad, 10x h5, a zipped 10x mtx folder, csv/tsv or loom. scapp normalizes them itself.")


def _use_demo() -> None:
    from scapp.data.demo import DEMO_LABEL, demo_path

    st.session_state.update({"dataset_path": str(demo_path()), "label": DEMO_LABEL, "no_label": False,
                             "data-path": ""})


c1, c2 = st.columns([2, 1])
with c1:
    up = st.file_uploader("Upload a dataset", type=["h5ad", "h5", "loom", "csv", "tsv", "txt", "gz", "zip", "tgz"],
                          key="data-upload")
    path_in = st.text_input("…or a path on this machine (for big files)", key="data-path",
                            placeholder="/data/my_experiment/filtered_feature_bc_matrix.h5")
with c2:
    st.write("")
    st.button("Load demo dataset", key="data-demo", type="primary", width="stretch", on_click=_use_demo)
    st.caption("PBMC 3k (10x Genomics), 2,638 cells, 9 cell types.")

chosen_file(up, path_in, "dataset_path")
if st.session_state.get("dataset_path"):
    with c1:
        keep_upload_checkbox(st.session_state["dataset_path"], key="data-keep")

try:
    loaded = load_current()
except ScappError as e:
    from scapp.data import SUPPORTED

    show_error(e)
    st.caption(f"Supported: {', '.join(SUPPORTED)}")
    st.stop()
if loaded is None:
    st.info("Upload a file, give a path, or load the demo dataset to start.")
    st.stop()
adata, qc = loaded

st.subheader(Path(st.session_state["dataset_path"]).name)
m = st.columns(7)
m[0].metric("Cells", f"{qc.n_cells:,}")
m[1].metric("Genes", f"{qc.n_genes:,}")
m[2].metric("Zeros", f"{qc.sparsity:.1%}", help="Share of the matrix that is zero (genes not detected in a cell).")
m[3].metric("Median counts", f"{qc.counts_per_cell['median']:,.0f}",
            help="Sequencing depth: molecules (UMIs) counted in a cell, at the median over cells.")
m[4].metric("Median genes", f"{qc.genes_per_cell['median']:,.0f}",
            help="Genes with at least one count in a cell, at the median over cells.")
m[5].metric("Median % mito", f"{qc.pct_mito['median']:.1f}%" if qc.pct_mito else "—",
            help="Share of a cell's counts from mitochondrial (MT-/mt-) genes, at the median over cells; a high "
                 "share (often above 10-20%) marks damaged or dying cells. " + qc.mito_note)
m[6].metric("Input kind", qc.input_kind)
(st.success if qc.input_kind == "counts" else st.warning)(qc.input_kind_reason)
if qc.gene_subset_note:
    st.info(qc.gene_subset_note, icon=":material/filter_alt:")
for w in qc.warnings:
    st.warning(w)

import numpy as np  # noqa: E402 - heavy imports only once there is data to show
import pandas as pd  # noqa: E402

from scapp.data.qc import mito_percent  # noqa: E402
from scapp.data.validate import get_matrix  # noqa: E402
from scapp.viz import class_colors, class_sizes_bar, counts_histograms  # noqa: E402


@st.cache_resource(show_spinner=False, max_entries=4)
def _per_cell(path: str, mtime: float, _adata) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Counts, detected genes and % mitochondrial counts per cell, once per file version (seconds at 1M cells)."""
    X = get_matrix(_adata)
    totals = np.asarray(X.sum(axis=1)).ravel()
    mito = mito_percent(_adata, totals)
    return totals, np.asarray((X > 0).sum(axis=1)).ravel(), None if mito is None else mito.pct


_p = Path(st.session_state["dataset_path"])
totals, ngenes, pct_mito = _per_cell(str(_p), _p.stat().st_mtime if _p.exists() else 0.0, adata)
stem = Path(st.session_state["dataset_path"]).stem
per_cell = {"cell_id": adata.obs_names, "total_counts": totals, "genes_detected": ngenes}
if pct_mito is not None:
    per_cell["pct_mito"] = pct_mito
show_figure(counts_histograms(totals, ngenes, pct_mito=pct_mito), key="data-hist", name=f"{stem}-qc",
            data=pd.DataFrame(per_cell))
if qc.mito_note:
    st.caption(qc.mito_note)

NO_LABEL = "— no label (denoising / pretraining only)"
cols = [*qc.label_candidates, NO_LABEL]
if not qc.label_candidates:
    st.info("No obs column looks like cell-type labels: this file can be annotated by a trained model (Annotate "
            "page), or used by a method that learns without labels (denoising, pretraining).")
current = NO_LABEL if st.session_state.get("no_label") else st.session_state.get("label")
if current and current not in cols:  # a link, a reload or the previous file named a column this file lacks
    st.warning(f"This file has no label column '{current}'"
               + (f"; showing '{cols[0]}' instead: pick the right one below." if qc.label_candidates else "."),
               icon=":material/label_off:")
label = st.selectbox("Label column (the cell types to learn)", cols,
                     index=cols.index(current) if current in cols else 0, key="data-label",
                     help="The obs column of cell types a classifier learns. Choose 'no label' to train only a "
                          "method that needs none (a denoising autoencoder, or self-supervised pretraining); the "
                          "Model page then offers only those.")
st.session_state["no_label"] = label == NO_LABEL
st.session_state["label"] = None if label == NO_LABEL else label
if label == NO_LABEL:
    from scapp.models import REGISTRY

    free = [s.title for s in REGISTRY.values() if s.trainable and s.available and not s.capabilities.needs_labels]
    st.info("No label column: only methods that learn without labels can be trained on this file ("
            + "; ".join(free) + "). They learn from every cell; nothing is scored against cell types.",
            icon=":material/label_off:")
    st.page_link("pages/model.py", label="Next: choose a model", icon=":material/arrow_forward:")
    refresh_sidebar()  # st.stop skips app.py's redraw and URL update after the page: do both here
    sync_url()
    st.stop()
counts = qc.label_candidates[label]
show_figure(class_sizes_bar(counts, colors=class_colors(sorted(counts))), key="data-classes",
            name=f"{stem}-{label}-classes", data=pd.DataFrame({"class": list(counts), "cells": list(counts.values())}))
tiny = [c for c, n in counts.items() if n < 3]
if tiny:
    st.warning(f"{len(tiny)} class(es) have fewer than 3 cells ({', '.join(tiny[:5])}); they are kept in training "
               "but cannot be scored.")
st.page_link("pages/model.py", label="Next: choose a model", icon=":material/arrow_forward:")
