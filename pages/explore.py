"""Explore a run: metrics, per-class scores, confusion matrix, UMAP, calibration, explanations."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from pages._ui import choose_run, show_error, show_figure
from scapp import runs
from scapp.errors import ScappError
from scapp.models import get_spec

st.title("Explore")
run = choose_run(key="explore-run")
if run is None:
    st.stop()


# Shared and read-only (never mutated below): a cache hit costs nothing, where st.cache_data would unpickle a copy
# of a million-row predictions table on every rerun.
@st.cache_resource(show_spinner=False, max_entries=4)
def _tables(run_dir: str, stamp: str) -> dict:
    r = runs.RunStore(run_dir)
    config = r.config()
    classifies = get_spec(config["model"]).capabilities.classifies
    pred = r.predictions()
    if not classifies:  # an embedding-only run: colour the map by the labels it had, if any
        pred = pred.assign(true=pred["true"].fillna("(unlabelled)"), pred="—", confidence=np.nan)
    return {
        "metrics": r.metrics(),
        "config": config,
        "per_class": r.per_class() if classifies else None,
        "confusion": r.confusion() if classifies else None,
        "reliability": r.reliability() if classifies else None,
        "history": r.history(),
        "pred": pred,
        "genes": r.genes(),
    }


MAP_SIZES = (20_000, 50_000, 100_000, 200_000)  # cells on the map; a browser draws 200k WebGL points at most


@st.cache_resource(show_spinner=False, max_entries=4)
def _cell_map(run_dir: str, n_cells: int, mtime: float) -> dict[str, np.ndarray]:
    """A stored display UMAP (``index`` rows of the predictions, ``umap`` coordinates)."""
    return runs.RunStore(run_dir).cell_map(n_cells)


@st.fragment(run_every=2)
def _wait_for_map(run: Path, n_cells: int) -> None:
    """Poll the map job; the whole page reruns once its result is there (or it failed)."""
    state, _ = runs.RunStore(run).cell_map_state(n_cells)
    if state in ("ready", "failed"):
        st.rerun(scope="app")
    st.info(f"Computing the UMAP of {n_cells:,} cells in the background (once for this run, then kept in it; a "
            "minute or more on a CPU). The other views can be used meanwhile.", icon=":material/hourglass_top:")


def _on_cm_select(run_name: str) -> None:
    """Remember the selected confusion-matrix cell (true, predicted) of this run; a deselect clears it."""
    pts = (((st.session_state.get("explore-cm") or {}).get("selection") or {}).get("points")) or []
    st.session_state["explore-pair"] = (run_name, pts[0].get("y"), pts[0].get("x")) if pts else None


store = runs.RunStore(run)
try:
    status = store.status() or {}
    t = _tables(str(run), status.get("updated", ""))
except ScappError as e:
    show_error(e)
    st.stop()
m = t["metrics"]
spec = get_spec(t["config"]["model"])
caps = spec.capabilities
test = m.get("test") or {}
classes = m["classes"] or sorted(set(t["pred"]["true"]))
from scapp.viz import (  # noqa: E402
    class_colors,
    class_f1_bars,
    confusion_heatmap,
    embedding_scatter,
    reliability_diagram,
    training_curves,
)

colors = class_colors(classes)
if caps.classifies:
    c = st.columns(5)
    c[0].metric("Macro F1 (test)", f"{test['macro_f1']:.3f}")
    c[1].metric("Median class F1", f"{test['median_f1']:.3f}")
    c[2].metric("Balanced accuracy", f"{test['balanced_accuracy']:.3f}")
    c[3].metric("Accuracy", f"{test['accuracy']:.3f}")
    c[4].metric("Unassigned at threshold", f"{(test.get('unassigned_frac') or 0):.1%}")
    small = ", ".join(f"{s['class']} (n={s['support']}, recall {s['recall']:.2f})" for s in test["smallest_classes"])
    st.caption(f"{t['config']['model']} on {Path(t['config']['data']).name} · test cells {test['n_cells']:,} · "
               f"smallest classes: {small}")
else:
    st.caption(f"{spec.title} on {Path(t['config']['data']).name} · {len(t['pred']):,} cells · this method does "
               "not classify cells: its training curve and latent space are shown.")
for note in m.get("notes", []):
    st.info(note)

# One view at a time: only the chosen view's figures are built and sent (st.tabs would render them all).
# Which views a run has follows its method's declared capabilities, never its name.
VIEWS = [v for v, ok in (("Per class", caps.classifies), ("Cell map", caps.classifies or caps.embeds),
                         ("Calibration", caps.classifies), ("Training", not caps.classifies),
                         ("Members", caps.combines),
                         ("Explanations", caps.explain_kind is not None or caps.combines)) if ok]
last = st.session_state.get("explore-view-last", VIEWS[0])
last = last if last in VIEWS else VIEWS[0]
view = st.segmented_control("View", VIEWS, default=last, key="explore-view", label_visibility="collapsed") or last
st.session_state["explore-view-last"] = view  # the widget's own state is dropped while another page is shown

if view == "Per class":
    show_figure(class_f1_bars(t["per_class"], colors=colors), key="explore-f1", name=f"{run.name}-per-class",
                data=t["per_class"])
    st.markdown("**Confusion matrix** (rows: true type, normalized; numbers are cells). Select a cell of the "
                "matrix to list those cells.")
    show_figure(confusion_heatmap(t["confusion"]), key="explore-cm", name=f"{run.name}-confusion",
                data=t["confusion"].reset_index(), on_select=partial(_on_cm_select, run.name))
    pair = st.session_state.get("explore-pair")
    if pair and pair[0] == run.name:
        _, true_c, pred_c = pair
        pred = t["pred"]
        sel = pred[(pred["split"] == "test") & (pred["true"] == true_c) & (pred["pred"] == pred_c)]
        st.session_state["explore-selected"] = sel["cell_id"].tolist()
        st.markdown(f"**{len(sel):,} test cells** of type *{true_c}* predicted as *{pred_c}* (highlighted on the "
                    "**Cell map** view)")
        st.dataframe(sel[["cell_id", "true", "pred", "confidence"]], hide_index=True, use_container_width=True)
    else:
        st.session_state.pop("explore-selected", None)
    if len(t["history"]):
        show_figure(training_curves(t["history"]), key="explore-curves", name=f"{run.name}-training",
                    data=t["history"])

if view == "Training" and len(t["history"]):
    show_figure(training_curves(t["history"]), key="explore-curves", name=f"{run.name}-training", data=t["history"])

if view == "Cell map":
    pred = t["pred"]
    n_all = len(pred)
    from scapp.evaluate.embedding import DISPLAY_CELLS

    n_map = min(DISPLAY_CELLS, n_all)
    sizes = sorted({k for k in MAP_SIZES if k < n_all} | {n_map} | ({n_all} if n_all <= MAP_SIZES[-1] else set()))
    c1, c2 = st.columns([3, 2])
    what = c1.radio("Colour by", ["truth", "prediction", "confidence", "correct"], horizontal=True,
                    key="explore-color", index=["truth", "prediction", "confidence", "correct"].index(
                        st.session_state.get("explore-color-last", "truth")))
    st.session_state["explore-color-last"] = what
    if len(sizes) > 1:
        n_map = c2.select_slider("Cells on the map", sizes, value=n_map, key=f"explore-map-n-{run.name}",
                                 format_func=lambda k: f"{k:,}" + (" (all)" if k == n_all else ""),
                                 help="The UMAP is computed once for these cells (a class-stratified sample) and "
                                      "kept in the run; more cells take minutes to compute the first time.")
    if not store.has_embedding:
        st.caption("This model has no latent space: the map is a UMAP of its predicted class probabilities.")
    map_state, map_error = store.cell_map_state(n_map)
    if map_state == "missing":
        from scapp.train.job import start_cell_map

        start_cell_map(run, n_map)
        map_state = "running"
    if map_state == "failed":
        st.error(map_error, icon=":material/error:")
        if st.button("Try again", key="explore-map-retry"):
            store.clear_cell_map_error(n_map)
            st.rerun()
    elif map_state == "running":
        _wait_for_map(run, n_map)
    else:
        try:
            cmap = _cell_map(str(run), n_map, store.cell_map_path(n_map).stat().st_mtime)
        except ScappError as e:
            show_error(e)
            st.stop()
        idx, coords = cmap["index"], cmap["umap"]
        sub = pred.iloc[idx].reset_index(drop=True)
        sampled = len(idx) < n_all
        selected = st.session_state.get("explore-selected") or []
        hl = sub["cell_id"].isin(selected).to_numpy() if selected else None
        hover = sub[["cell_id", "true", "pred"]]
        strat = sub["true"].to_numpy()
        title = f"Cells coloured by {what}" + (f" · {len(idx):,} of {n_all:,} cells" if sampled else "")
        if what in ("truth", "prediction"):
            fig = embedding_scatter(coords, sub["true" if what == "truth" else "pred"], colors=colors,
                                    kind="categorical", stratify=strat, highlight=hl, hover=hover, title=title,
                                    axis_labels=("UMAP 1", "UMAP 2"))
        elif what == "confidence":
            fig = embedding_scatter(coords, sub["confidence"].to_numpy(), kind="continuous", stratify=strat,
                                    highlight=hl, hover=hover, color_label="confidence", title=title,
                                    axis_labels=("UMAP 1", "UMAP 2"))
        else:
            ok = np.where(sub["true"] == sub["pred"], "correct", "wrong")
            fig = embedding_scatter(coords, ok, colors={"correct": "#9aa5b1", "wrong": "#d6336c"},
                                    kind="categorical", stratify=strat, highlight=hl, hover=hover, title=title,
                                    axis_labels=("UMAP 1", "UMAP 2"))
        if sampled:
            st.caption(f"Showing **{len(idx):,} of {n_all:,} cells**, sampled per class so that every type keeps "
                       "cells on the map; the UMAP is computed on these cells.")
        if selected:
            shown = int(hl.sum())
            pair = st.session_state.get("explore-pair") or ("", "?", "?")
            st.caption(f"Highlighted: **{shown:,}** of the {len(selected):,} test cells of type *{pair[1]}* predicted "
                       f"as *{pair[2]}*" + (f"; {len(selected) - shown:,} of them are not in the displayed sample."
                                            if shown < len(selected) else "."))
            if st.button("Clear the highlight", key="explore-clear-hl", type="tertiary"):
                st.session_state.pop("explore-selected", None)
                st.session_state["explore-pair"] = None
                st.rerun()
        show_figure(fig, key="explore-umap", name=f"{run.name}-umap-{what}",
                    data=sub[["cell_id", "true", "pred", "confidence"]].assign(umap1=coords[:, 0], umap2=coords[:, 1]))

if view == "Calibration":
    cal = m["calibration"]
    st.markdown(f"Temperature **{cal['temperature']:.2f}** fitted on the validation cells: expected calibration error "
                f"{cal['ece_before']:.3f} → **{cal['ece_after']:.3f}** on the test cells.")
    rel = t["reliability"]
    show_figure(reliability_diagram(rel["before"], rel["after"], ece_before=cal["ece_before"],
                                    ece_after=cal["ece_after"], temperature=cal["temperature"]),
                key="explore-rel", name=f"{run.name}-calibration",
                data=pd.concat([pd.DataFrame(rel[k]).assign(calibration=k) for k in ("before", "after")]))


def _dotplot(store: runs.RunStore, classes: list[str]) -> None:
    """Expression of each class's top genes (saved by training since the dot plot exists)."""
    from scapp.viz import expression_dotplot

    df = store.dotplot()
    if df is None:
        st.info("The expression dot plot is not available for this run (trained before scapp saved it); "
                "train the run again to get it.")
        return
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
                key="explore-dot", name=f"{store.id}-dotplot", data=df)


def _markers(store: runs.RunStore, classes: list[str], class_scores: np.ndarray, features: list[str], test: dict,
             per_class: pd.DataFrame) -> None:
    """The model's markers beside Wilcoxon markers and the user's own list; rare vs common classes."""
    from scapp.explain.markers import (
        marker_overlap,
        marker_table,
        novel_genes,
        parse_marker_list,
        user_marker_ranks,
    )
    from scapp.viz import marker_overlap_bars, rare_common_recall

    st.markdown("**Rare and common cell types**: recall of the three smallest and three largest classes; "
                "balancing should lift the left bars without costing the right ones.")
    show_figure(rare_common_recall(per_class, colors=class_colors(classes), accuracy=test["accuracy"],
                                   balanced_accuracy=test["balanced_accuracy"]),
                key="explore-rare", name=f"{store.id}-rare-common", data=per_class)
    model_full = marker_table(class_scores, classes, features, top=len(features))
    ref = store.reference_markers()
    if ref is not None:
        ov = marker_overlap(model_full, ref, tops=(50, 100, 200))
        st.markdown("**Do the model's markers agree with a Wilcoxon test?** Jaccard overlap of each class's top "
                    "genes with scanpy `rank_genes_groups` (one-vs-rest, log-normalized training cells).")
        show_figure(marker_overlap_bars(ov), key="explore-overlap", name=f"{store.id}-marker-overlap", data=ov)
        nov = novel_genes(model_full, ref, top=20, reference_top=200)
        with st.expander(f"Novel genes: in a class's model top 20 but not in its Wilcoxon top 200 ({len(nov)})"):
            st.dataframe(nov, hide_index=True, use_container_width=True)
    else:
        st.info("Wilcoxon reference markers are not available for this run (trained before scapp saved them).")
    text = st.text_area("Your marker list: one cell type per line, e.g. `B: CD79A, MS4A1`", key="explore-user-markers",
                        height=110)
    if text.strip():
        given = parse_marker_list(text)
        if not given:
            st.warning("No `type: gene, gene` lines found. Write one cell type per line, a colon, then genes.")
        else:
            ranks = user_marker_ranks(model_full, given)
            unknown = sorted(set(ranks.loc[~ranks["class_known"], "class"]))
            if unknown:
                st.warning(f"Not a cell type of this run: {', '.join(unknown)}. Known: {', '.join(classes)}.")
            missing = ranks[ranks["class_known"] & ranks["rank"].isna()]["gene"].tolist()
            if missing:
                st.warning(f"Not among the model's features: {', '.join(missing)}.")
            st.dataframe(ranks.assign(rank=ranks["rank"].astype("Int64")), hide_index=True, use_container_width=True,
                         column_config={"rank": st.column_config.NumberColumn("rank in the model's list"),
                                        "n_ranked": st.column_config.NumberColumn("genes ranked")})


def _explanations(estore: runs.RunStore, heading: str, classes: list[str], genes: list[str], test: dict,
                  per_class: pd.DataFrame) -> None:
    """The explanation views of one run (this run, or a member of an ensemble)."""
    from scapp.viz import cell_explain_bar, class_gene_heatmap, gene_importance_bar

    try:
        ex = estore.explain()
        gi = estore.global_importance()
    except ScappError as e:
        show_error(e)
        st.stop()
    features = genes if len(genes) == ex["class_scores"].shape[-1] else gi["gene"].tolist()
    signed = bool((ex["class_scores"] < 0).any())  # logreg weights, Hydra's IG × sign(LFC)
    st.markdown(heading)
    top = st.slider("Top genes", 10, 100, 40, 5, key="explore-topgenes")
    # Genes are ranked by class_scores; a method may give the heatmap a colour scale of its own (SIMS: each gene
    # divided by its maximum over classes, so a gene's colour shows which class uses it most).
    shown = ex.get("display_scores", ex["class_scores"])
    show_figure(class_gene_heatmap(shown, classes, features, top=top, signed=signed, rank_by=ex["class_scores"]),
                key="explore-heat", name=f"{estore.id}-class-genes",
                data=pd.DataFrame(ex["class_scores"].T, index=pd.Index(features, name="gene"), columns=classes)
                .reset_index())
    _dotplot(estore, classes)
    _markers(estore, classes, ex["class_scores"], features, test, per_class)
    show_figure(gene_importance_bar(gi["gene"].tolist(), gi["importance"].to_numpy()), key="explore-gi",
                name=f"{estore.id}-gene-importance", data=gi)
    if "cell_masks" in ex and len(ex["cell_masks"]):
        cls = st.selectbox("Cell type", classes, key="explore-cell-class")
        rows = np.flatnonzero(ex["cell_class"] == classes.index(cls))
        if len(rows):
            pick = st.number_input("Cell (of the sampled cells of this type)", 0, len(rows) - 1, 0, key="explore-cell")
            mask = ex["cell_masks"][rows[pick]]
            show_figure(cell_explain_bar(features, mask), key="explore-cellbar", name=f"{estore.id}-cell-explain",
                        data=pd.DataFrame({"gene": features, "score": mask}))
    st.download_button("Marker table (CSV)", lambda: estore.markers().to_csv(index=False),
                       file_name=f"{estore.id}-markers.csv", mime="text/csv", key="explore-dl-markers",
                       on_click="ignore")


def _members() -> pd.DataFrame:
    from scapp.evaluate.compare import ensemble_members_table

    return ensemble_members_table(m)


if view == "Members":
    from scapp.viz import ensemble_members_bars

    mt = _members()
    st.markdown("Each member was trained on the same cells and split; the ensemble averages their calibrated "
                "probabilities with the weights below, picked on the validation cells (lowest class-balanced "
                "log-loss).")
    show_figure(ensemble_members_bars(mt, ensemble={"valid_macro_f1": (m.get("valid") or {}).get("macro_f1"),
                                                    "test_macro_f1": test.get("macro_f1")}),
                key="explore-members", name=f"{run.name}-members", data=mt)
    st.dataframe(mt, hide_index=True, width="stretch",
                 column_config={"weight": st.column_config.NumberColumn(format="percent"),
                                **{c: st.column_config.NumberColumn(format="%.3f") for c in mt.columns
                                   if c.endswith(("_f1", "_accuracy"))},
                                "fit_seconds": st.column_config.NumberColumn("training s", format="%.0f")})

if view == "Explanations":
    if caps.combines:  # an ensemble explains through its members
        mt = _members()
        explained = [r for r in mt.itertuples() if get_spec(r.model).capabilities.explain_kind]
        if not explained:
            st.info("None of this ensemble's members has explanations.")
            st.stop()
        by_id = {r.run_id: r for r in explained}
        pick = by_id[st.selectbox("Member", list(by_id), key=f"explore-member-{run.name}",
                                  format_func=lambda r: f"{by_id[r].name} (weight {by_id[r].weight:.0%})")]
        try:
            mstore = store.existing_member(pick.run_id)
            mspec = get_spec(pick.model)
            _explanations(mstore, mspec.explain_heading, mstore.classes(), mstore.genes(),
                          (mstore.metrics() or {}).get("test") or {}, mstore.per_class())
        except ScappError as e:
            show_error(e)
    else:
        _explanations(store, spec.explain_heading, classes, t["genes"], test, t["per_class"])
