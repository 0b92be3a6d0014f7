"""Explore a run: metrics, per-class scores, confusion matrix, UMAP, calibration, explanations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from pages._ui import choose_run, show_figure
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
    show_figure(class_f1_bars(t["per_class"], colors=colors), key="explore-f1", name=f"{run.name}-per-class",
                data=t["per_class"])
    st.markdown("**Confusion matrix** (rows: true type, normalized; numbers are cells). Select a cell of the "
                "matrix to list those cells.")
    ev = show_figure(confusion_heatmap(t["confusion"]), key="explore-cm", name=f"{run.name}-confusion",
                     data=t["confusion"].reset_index(), on_select="rerun")
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
        show_figure(training_curves(t["history"]), key="explore-curves", name=f"{run.name}-training",
                    data=t["history"])

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
        show_figure(fig, key="explore-umap", name=f"{run.name}-umap-{what}",
                    data=pred[["cell_id", "true", "pred", "confidence"]].assign(umap1=coords[:, 0], umap2=coords[:, 1]))

with tab_cal:
    cal = m["calibration"]
    st.markdown(f"Temperature **{cal['temperature']:.2f}** fitted on the validation cells: expected calibration error "
                f"{cal['ece_before']:.3f} → **{cal['ece_after']:.3f}** on the test cells.")
    rel = t["reliability"]
    show_figure(reliability_diagram(rel["before"], rel["after"], ece_before=cal["ece_before"],
                                    ece_after=cal["ece_after"], temperature=cal["temperature"]),
                key="explore-rel", name=f"{run.name}-calibration",
                data=pd.concat([pd.DataFrame(rel[k]).assign(calibration=k) for k in ("before", "after")]))


def _dotplot(run: Path, classes: list[str]) -> None:
    """Expression of each class's top genes (artifacts/dotplot.csv, written by training since the dot plot exists)."""
    from scapp.viz import expression_dotplot

    path = run / "artifacts" / "dotplot.csv"
    if not path.exists():
        st.info("The expression dot plot is not available for this run (trained before scapp saved it); "
                "train the run again to get it.")
        return
    df = pd.read_csv(path, dtype={"class": str, "gene": str, "top_for": str})
    picks = df.drop_duplicates("gene")  # genes in pick order, each with the class it is a top gene of
    most = int(picks["top_for"].value_counts().max())
    n = st.slider("Top genes per class", 1, most, min(3, most), key="explore-dot-n") if most > 1 else 1
    genes = picks.groupby("top_for", sort=False).head(n)["gene"].tolist()
    df = df[df["gene"].isin(genes)]
    order = [c for c in classes if c in set(df["class"])]
    mean = df.pivot(index="class", columns="gene", values="mean_expression").reindex(index=order, columns=genes)
    frac = df.pivot(index="class", columns="gene", values="frac_expressing").reindex(index=order, columns=genes)
    scaled = st.toggle("Scale colour per gene", value=True, key="explore-dot-scale")
    show_figure(expression_dotplot(mean, frac, standard_scale="gene" if scaled else None,
                                   title="Do the top genes mark their class? Expression per class"),
                key="explore-dot", name=f"{run.name}-dotplot", data=df)


with tab_expl:
    from scapp.viz import cell_explain_bar, class_gene_heatmap, gene_importance_bar

    ex_path = run / "artifacts" / "explain.safetensors"
    ex = runs.read_arrays(ex_path) if ex_path.exists() else {}
    gi = pd.read_csv(run / "artifacts" / "global_importance.csv")
    features = t["genes"] if len(t["genes"]) == ex.get("class_scores", np.zeros((0, 0))).shape[-1] else gi["gene"].tolist()
    signed = t["config"]["model"] == "logreg"
    st.markdown("**Genes each cell type's predictions used**" if not signed else "**Marker weights per cell type**")
    top = st.slider("Top genes", 10, 100, 40, 5, key="explore-topgenes")
    show_figure(class_gene_heatmap(ex["class_scores"], classes, features, top=top, signed=signed),
                key="explore-heat", name=f"{run.name}-class-genes",
                data=pd.DataFrame(ex["class_scores"].T, index=pd.Index(features, name="gene"), columns=classes)
                .reset_index())
    _dotplot(run, classes)
    show_figure(gene_importance_bar(gi["gene"].tolist(), gi["importance"].to_numpy()), key="explore-gi",
                name=f"{run.name}-gene-importance", data=gi)
    if "cell_masks" in ex and len(ex["cell_masks"]):
        cls = st.selectbox("Cell type", classes, key="explore-cell-class")
        rows = np.flatnonzero(ex["cell_class"] == classes.index(cls))
        if len(rows):
            pick = st.number_input("Cell (of the sampled cells of this type)", 0, len(rows) - 1, 0, key="explore-cell")
            mask = ex["cell_masks"][rows[pick]]
            show_figure(cell_explain_bar(features, mask), key="explore-cellbar", name=f"{run.name}-cell-explain",
                        data=pd.DataFrame({"gene": features, "score": mask}))
    st.download_button("Marker table (CSV)", (run / "artifacts" / "markers.csv").read_bytes(),
                       file_name=f"{run.name}-markers.csv", key="explore-dl-markers")
