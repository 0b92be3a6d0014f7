"""Explore a run: metrics, per-class scores, confusion matrix, UMAP, calibration, explanations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from pages._ui import choose_run
from scapp import runs

st.title("Explore")
run = choose_run(key="explore-run")
if run is None:
    st.stop()


@st.cache_data(show_spinner=False, max_entries=8)
def _tables(run_dir: str, stamp: str) -> dict:
    r = Path(run_dir)
    art = r / "artifacts"
    return {
        "metrics": json.loads((r / "metrics.json").read_text()),
        "config": json.loads((r / "config.json").read_text()),
        "per_class": pd.read_csv(art / "per_class_test.csv"),
        "confusion": pd.read_csv(art / "confusion_test.csv").set_index("true"),
        "reliability": json.loads((art / "reliability_test.json").read_text()),
        "history": pd.read_csv(art / "history.csv") if (art / "history.csv").stat().st_size > 1 else pd.DataFrame(),
        "pred": pd.read_parquet(r / "predictions.parquet"),
        "genes": (r / "genes.txt").read_text().splitlines(),
    }


@st.cache_data(show_spinner="Computing the UMAP of the model's latent space (cached in the run)…", max_entries=4)
def _umap(run_dir: str) -> np.ndarray:
    from scapp.evaluate.embedding import umap_coords

    r = Path(run_dir)
    emb_path = r / "artifacts" / "embedding.safetensors"
    if not emb_path.exists():
        return np.zeros((0, 2), np.float32)
    emb = runs.read_arrays(emb_path)["embedding"]
    return runs.cached_arrays(r, "umap", lambda: {"umap": umap_coords(emb)})["umap"]


status = runs.read_status(run) or {}
t = _tables(str(run), status.get("updated", ""))
m = t["metrics"]
test = m["test"]
classes = m["classes"]
from scapp.viz import (  # noqa: E402
    class_colors,
    class_f1_bars,
    confusion_heatmap,
    embedding_scatter,
    reliability_diagram,
    training_curves,
)

colors = class_colors(classes)
c = st.columns(5)
c[0].metric("Macro F1 (test)", f"{test['macro_f1']:.3f}")
c[1].metric("Median class F1", f"{test['median_f1']:.3f}")
c[2].metric("Balanced accuracy", f"{test['balanced_accuracy']:.3f}")
c[3].metric("Accuracy", f"{test['accuracy']:.3f}")
c[4].metric("Unassigned at threshold", f"{(test.get('unassigned_frac') or 0):.1%}")
small = ", ".join(f"{s['class']} (n={s['support']}, recall {s['recall']:.2f})" for s in test["smallest_classes"])
st.caption(f"{t['config']['model']} on {Path(t['config']['data']).name} · test cells {test['n_cells']:,} · "
           f"smallest classes: {small}")
for note in m.get("notes", []):
    st.info(note)

tab_perf, tab_map, tab_cal, tab_expl = st.tabs(["Per class", "Cell map", "Calibration", "Explanations"])
with tab_perf:
    st.plotly_chart(class_f1_bars(t["per_class"], colors=colors), use_container_width=True, key="explore-f1")
    st.markdown("**Confusion matrix** (rows: true type, normalized; numbers are cells). Select a cell of the "
                "matrix to list those cells.")
    ev = st.plotly_chart(confusion_heatmap(t["confusion"]), use_container_width=True, key="explore-cm",
                         on_select="rerun", selection_mode="points")
    pts = (ev or {}).get("selection", {}).get("points", []) if ev else []
    pred = t["pred"]
    sel = pred.iloc[0:0]
    if pts:
        true_c, pred_c = pts[0].get("y"), pts[0].get("x")
        sel = pred[(pred["split"] == "test") & (pred["true"] == true_c) & (pred["pred"] == pred_c)]
        st.session_state["explore-selected"] = sel["cell_id"].tolist()
        st.markdown(f"**{len(sel)} test cells** of type *{true_c}* predicted as *{pred_c}* (highlighted on the map)")
        st.dataframe(sel[["cell_id", "true", "pred", "confidence"]], hide_index=True, use_container_width=True)
    if len(t["history"]):
        st.plotly_chart(training_curves(t["history"]), use_container_width=True, key="explore-curves")

with tab_map:
    coords = _umap(str(run))
    if len(coords) == 0:
        st.info("This model has no latent space to map.")
    else:
        pred = t["pred"]
        what = st.radio("Colour by", ["truth", "prediction", "confidence", "correct"], horizontal=True,
                        key="explore-color")
        hl = np.isin(pred["cell_id"], st.session_state.get("explore-selected", []))
        if what in ("truth", "prediction"):
            col = pred["true" if what == "truth" else "pred"]
            fig = embedding_scatter(coords, col, colors=colors, kind="categorical", stratify=pred["true"].to_numpy(),
                                    highlight=hl if hl.any() else None, hover=pred[["cell_id", "true", "pred"]])
        elif what == "confidence":
            fig = embedding_scatter(coords, pred["confidence"].to_numpy(), kind="continuous",
                                    stratify=pred["true"].to_numpy(), hover=pred[["cell_id", "true", "pred"]])
        else:
            ok = np.where(pred["true"] == pred["pred"], "correct", "wrong")
            fig = embedding_scatter(coords, ok, colors={"correct": "#9aa5b1", "wrong": "#d6336c"},
                                    kind="categorical", stratify=pred["true"].to_numpy(),
                                    hover=pred[["cell_id", "true", "pred"]])
        st.plotly_chart(fig, use_container_width=True, key="explore-umap")

with tab_cal:
    cal = m["calibration"]
    st.markdown(f"Temperature **{cal['temperature']:.2f}** fitted on the validation cells: expected calibration error "
                f"{cal['ece_before']:.3f} → **{cal['ece_after']:.3f}** on the test cells.")
    st.plotly_chart(reliability_diagram(t["reliability"]["before"], t["reliability"]["after"]),
                    use_container_width=True, key="explore-rel")

with tab_expl:
    from scapp.viz import cell_explain_bar, class_gene_heatmap, gene_importance_bar

    ex_path = run / "artifacts" / "explain.safetensors"
    ex = runs.read_arrays(ex_path) if ex_path.exists() else {}
    gi = pd.read_csv(run / "artifacts" / "global_importance.csv")
    features = t["genes"] if len(t["genes"]) == ex.get("class_scores", np.zeros((0, 0))).shape[-1] else gi["gene"].tolist()
    signed = t["config"]["model"] == "logreg"
    st.markdown("**Genes each cell type's predictions used**" if not signed else "**Marker weights per cell type**")
    top = st.slider("Top genes", 10, 100, 40, 5, key="explore-topgenes")
    st.plotly_chart(class_gene_heatmap(ex["class_scores"], classes, features, top=top, signed=signed),
                    use_container_width=True, key="explore-heat")
    st.plotly_chart(gene_importance_bar(gi["gene"].tolist(), gi["importance"].to_numpy()), use_container_width=True,
                    key="explore-gi")
    if "cell_masks" in ex and len(ex["cell_masks"]):
        cls = st.selectbox("Cell type", classes, key="explore-cell-class")
        rows = np.flatnonzero(ex["cell_class"] == classes.index(cls))
        if len(rows):
            pick = st.number_input("Cell (of the sampled cells of this type)", 0, len(rows) - 1, 0, key="explore-cell")
            st.plotly_chart(cell_explain_bar(features, ex["cell_masks"][rows[pick]]), use_container_width=True,
                            key="explore-cellbar")
    st.download_button("Marker table (CSV)", (run / "artifacts" / "markers.csv").read_bytes(),
                       file_name=f"{run.name}-markers.csv", key="explore-dl-markers")
