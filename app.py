"""scapp — Streamlit entry point.

For now: load the built-in demo dataset (or a path) and show its QC summary.
The full Data → Model → Train → Explore → Annotate app builds on the same calls.
"""

from __future__ import annotations

import streamlit as st

from scapp.data import load_dataset
from scapp.data.demo import DEMO_LABEL, demo_path
from scapp.errors import ScappError

st.set_page_config(page_title="scapp", layout="wide")


@st.cache_resource(show_spinner="Reading the dataset…")
def _load(path: str):
    return load_dataset(path)


st.title("scapp — single-cell annotation studio")
path = st.text_input("Dataset path (h5ad, 10x h5 or mtx folder, csv, loom)", value=str(demo_path()), key="data-path")
try:
    adata, qc = _load(path)
except ScappError as e:
    st.error(str(e))
    st.stop()

c = st.columns(4)
c[0].metric("Cells", f"{qc.n_cells:,}")
c[1].metric("Genes", f"{qc.n_genes:,}")
c[2].metric("Zeros", f"{qc.sparsity:.1%}")
c[3].metric("Input kind", qc.input_kind)
st.caption(qc.input_kind_reason)
for w in qc.warnings:
    st.warning(w)
st.subheader("Counts and genes per cell")
st.dataframe({"counts per cell": qc.counts_per_cell, "genes per cell": qc.genes_per_cell})
if qc.label_candidates:
    cols = list(qc.label_candidates)
    default = cols.index(DEMO_LABEL) if DEMO_LABEL in cols else 0
    label = st.selectbox("Label column", cols, index=default, key="data-label")
    counts = qc.label_candidates[label]
    st.bar_chart({"cells": counts}, horizontal=True)
else:
    st.info("No obs column looks like cell-type labels; this file can be annotated by a trained model.")
