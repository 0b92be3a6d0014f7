"""Explore a run: metrics, per-class scores, confusion matrix, UMAP, calibration, explanations."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from pages._ui import choose_run, show_error, show_figure, through_app
from scapp import runs
from scapp.errors import ScappError
from scapp.models import get_spec
from scapp.models.registry import run_curve_panels

through_app()  # a page opened on its own by a fresh server runs again through app.py
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
    classifies = get_spec(config["model"]).capabilities.for_run(config.get("label")).classifies
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


@st.cache_resource(show_spinner=False, max_entries=4)
def _pca_map(run_dir: str, n_cells: int, stamp: str) -> dict[str, np.ndarray]:
    """The same cells' first two principal components (``index``, ``pca``): the map shown while the UMAP runs."""
    from scapp.evaluate.embedding import map_input, sample_pca

    latent, labels = map_input(runs.RunStore(run_dir))
    return sample_pca(latent, labels, max_cells=n_cells)


@st.fragment(run_every=2)
def _wait_for_map(run: Path, n_cells: int) -> None:
    """Poll the map job; the whole page reruns once its result is there (or it failed)."""
    state, _ = runs.RunStore(run).cell_map_state(n_cells)
    if state in ("ready", "failed"):
        st.rerun(scope="app")
    st.info(f"UMAP computing for {n_cells:,} cells in the background (once for this run, then kept in it; seconds "
            "to a minute on a CPU): the PCA below stands in until it replaces it. The other views can be used "
            "meanwhile.", icon=":material/hourglass_top:")


# Table columns as a biologist reads them (tables shown on this page; CSV downloads keep the short names).
COLUMN_NAMES = {"cell_id": "cell", "true": "true type", "pred": "predicted type", "class": "cell type",
                "n_ranked": "genes ranked", "rank": "rank in the model's list", "name": "member", "model": "method",
                "run_id": "run", "valid_macro_f1": "macro F1 (validation)", "test_macro_f1": "macro F1 (test)",
                "valid_balanced_accuracy": "balanced accuracy (validation)",
                "test_balanced_accuracy": "balanced accuracy (test)", "fit_seconds": "training s"}


def _columns(df: pd.DataFrame, **overrides) -> dict:
    """``column_config`` naming every column in words (snake_case never reaches the screen)."""
    cfg: dict = {c: st.column_config.Column(COLUMN_NAMES.get(c, str(c).replace("_", " "))) for c in df.columns}
    cfg.update(overrides)
    return cfg


def _on_cm_select(run_name: str) -> None:
    """Remember the selected confusion-matrix cell (true, predicted) of this run; a deselect clears it."""
    pts = (((st.session_state.get("explore-cm") or {}).get("selection") or {}).get("points")) or []
    st.session_state["explore-pair"] = (run_name, pts[0].get("y"), pts[0].get("x")) if pts else None


store = runs.RunStore(run)
try:
    status = store.status() or {}
    stamp = str(status.get("updated", ""))
    t = _tables(str(run), stamp)
except ScappError as e:
    show_error(e)
    st.stop()
m = t["metrics"]
spec = get_spec(t["config"]["model"])
caps = spec.capabilities.for_run(t["config"].get("label"))  # a label-optional classifier trained without labels
test = m.get("test") or {}
classes = m.get("classes") or sorted(set(t["pred"]["true"]))  # a pretraining run has no classes
from scapp.viz import (  # noqa: E402
    class_colors,
    class_f1_bars,
    confusion_heatmap,
    embedding_scatter,
    reliability_diagram,
    training_curves,
)

colors = class_colors(classes)


def _map_size(n_all: int) -> int:
    """Cells on the map: the size last chosen on the Cell map view, else the default sample."""
    from scapp.evaluate.embedding import DISPLAY_CELLS

    return int(st.session_state.get(f"explore-map-n-{run.name}") or min(DISPLAY_CELLS, n_all))


def _map_coords(n_map: int, *, key: str) -> tuple[np.ndarray, np.ndarray, str, str] | None:
    """``(index, coords, method, note)`` of the run's map of ``n_map`` sampled cells (rows of the predictions): the
    stored UMAP, or, while it is computed in the background (or if it failed), the PCA of the same cells at once.
    None (with the error shown) when the stored map cannot be read."""
    map_state, map_error = store.cell_map_state(n_map)
    if map_state == "missing":
        from scapp.train.job import start_cell_map

        start_cell_map(run, n_map)
        map_state = "running"
    if map_state == "ready":
        try:
            cmap = _cell_map(str(run), n_map, store.cell_map_path(n_map).stat().st_mtime)
        except ScappError as e:
            show_error(e)
            return None
        return cmap["index"], cmap["umap"], "UMAP", ""
    if map_state == "failed":
        st.error(map_error, icon=":material/error:")
        if st.button("Try again", key="explore-map-retry" if key == "explore-umap" else f"{key}-retry"):
            store.clear_cell_map_error(n_map)
            st.rerun()
        note = " (the UMAP failed)"
    else:
        _wait_for_map(run, n_map)
        note = " — UMAP computing…"
    pca = _pca_map(str(run), n_map, stamp)
    return pca["index"], pca["pca"], "PCA", note


def _draw_map(n_map: int, what: str, *, key: str, height: int = 640, captions: bool = True) -> None:
    """The run's map of ``n_map`` sampled cells coloured by ``what``, the selected confusion cell's cells
    highlighted: the stored UMAP, or, while it is computed in the background (or if it failed), the PCA of the same
    cells at once, labelled as such."""
    pred = t["pred"]
    n_all = len(pred)
    got = _map_coords(n_map, key=key)
    if got is None:
        return
    idx, coords, method, note = got
    sub = pred.iloc[idx].reset_index(drop=True)
    sampled = len(idx) < n_all
    selected = st.session_state.get("explore-selected") or []
    hl = sub["cell_id"].isin(selected).to_numpy() if selected else None
    hover = sub[["cell_id", "true", "pred"]].rename(columns={"cell_id": "cell", "true": "true type",
                                                             "pred": "predicted"})
    strat = sub["true"].to_numpy()
    space = "latent space" if store.has_embedding else "class probabilities"
    title = (f"{method}{note} · cells coloured by {what}" + (f" · {len(idx):,} of {n_all:,} cells" if sampled else "")
             if method == "UMAP" else f"PCA of the {space}{note} · coloured by {what}")
    axes = ("UMAP 1", "UMAP 2") if method == "UMAP" else ("PC 1", "PC 2")
    common = dict(stratify=strat, highlight=hl, hover=hover, title=title, axis_labels=axes, height=height)
    if what in ("truth", "prediction"):
        fig = embedding_scatter(coords, sub["true" if what == "truth" else "pred"], colors=colors,
                                kind="categorical", **common)
    elif what == "confidence":
        fig = embedding_scatter(coords, sub["confidence"].to_numpy(), kind="continuous", color_label="confidence",
                                **common)
    else:
        ok = np.where(sub["true"] == sub["pred"], "correct", "wrong")
        fig = embedding_scatter(coords, ok, colors={"correct": "#9aa5b1", "wrong": "#d6336c"}, kind="categorical",
                                **common)
    if captions and sampled:
        st.caption(f"Showing **{len(idx):,} of {n_all:,} cells**, sampled per class so that every type keeps "
                   "cells on the map; the map is computed on these cells.")
    if selected:
        shown = int(hl.sum())
        pair = st.session_state.get("explore-pair") or ("", "?", "?")
        st.caption(f"Highlighted: **{shown:,}** of the {len(selected):,} test cells of type *{pair[1]}* predicted "
                   f"as *{pair[2]}*" + (f"; {len(selected) - shown:,} of them are not in the displayed sample."
                                        if shown < len(selected) else "."))
        if captions and st.button("Clear the highlight", key=f"{key}-clear-hl", type="tertiary"):
            st.session_state.pop("explore-selected", None)
            st.session_state["explore-pair"] = None
            st.rerun()
    show_figure(fig, key=key, name=f"{run.name}-{method.lower()}-{what}",
                data=sub[["cell_id", "true", "pred", "confidence"]].assign(
                    **{f"{method.lower()}1": coords[:, 0], f"{method.lower()}2": coords[:, 1]}))
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
    files = ", ".join(Path(f).name for f in t["config"].get("data_files") or [t["config"]["data"]])
    what = "A pretraining run of " if t["config"].get("kind") == "pretraining" else ""  # scapp pretrain: many files
    st.caption(f"{what}{spec.title} on {files} · {len(t['pred']):,} cells · this run does not classify cells: its "
               "training curve and latent space are shown.")
for note in m.get("notes", []):
    st.info(note)

# One view at a time: only the chosen view's figures are built and sent (st.tabs would render them all).
# Which views a run has follows its method's declared capabilities, never its name.
VIEWS = [v for v, ok in (("Per class", caps.classifies), ("Cell map", caps.classifies or caps.embeds),
                         ("Denoising", caps.denoises), ("Gene programs", caps.denoises),
                         ("Calibration", caps.classifies), ("Training", not caps.classifies),
                         ("Members", caps.combines),
                         # a run fine-tuned from a pretraining run (--from), beside the same method from scratch
                         ("What pretraining changed", caps.classifies and bool(t["config"].get("from_run"))),
                         ("Explanations", caps.explain_kind is not None or caps.combines)) if ok]
last = st.session_state.get("explore-view-last", VIEWS[0])
last = last if last in VIEWS else VIEWS[0]
view = st.segmented_control("View", VIEWS, default=last, key="explore-view", label_visibility="collapsed") or last
st.session_state["explore-view-last"] = view  # the widget's own state is dropped while another page is shown

if view == "Per class":
    show_figure(class_f1_bars(t["per_class"], colors=colors), key="explore-f1", name=f"{run.name}-per-class",
                data=t["per_class"])
    pair = st.session_state.get("explore-pair")
    pair = pair if pair and pair[0] == run.name else None
    st.markdown("**Confusion matrix** (rows: true type, normalized; numbers are cells). **Click a cell** of the "
                "matrix to list those cells and see where they lie on the cell map.")
    show_figure(confusion_heatmap(t["confusion"], selected=(pair[1], pair[2]) if pair else None), key="explore-cm",
                name=f"{run.name}-confusion", data=t["confusion"].reset_index(),
                on_select=partial(_on_cm_select, run.name))
    if pair:
        _, true_c, pred_c = pair
        pred = t["pred"]
        sel = pred[(pred["split"] == "test") & (pred["true"] == true_c) & (pred["pred"] == pred_c)]
        st.session_state["explore-selected"] = sel["cell_id"].tolist()
        st.markdown(f"**{len(sel):,} test cells** of type *{true_c}* predicted as *{pred_c}* "
                    f"({'correct' if true_c == pred_c else 'misclassified'}), highlighted on the map below and on "
                    "the **Cell map** view.")
        if len(sel):
            shown = sel[["cell_id", "true", "pred", "confidence"]]
            st.dataframe(shown, hide_index=True, use_container_width=True, height=min(38 + 35 * len(sel), 280),
                         column_config=_columns(shown, confidence=st.column_config.NumberColumn("confidence",
                                                                                               format="%.2f")))
            _draw_map(_map_size(len(pred)), "truth", key="explore-cm-map", height=520, captions=False)
    else:
        st.session_state.pop("explore-selected", None)
    if len(t["history"]):
        show_figure(training_curves(t["history"], panels=run_curve_panels(t["config"])),
                    key="explore-curves", name=f"{run.name}-training", data=t["history"])

if view == "Training" and len(t["history"]):
    show_figure(training_curves(t["history"], panels=run_curve_panels(t["config"])), key="explore-curves",
                name=f"{run.name}-training", data=t["history"])

if view == "Cell map":
    n_all = len(t["pred"])
    n_map = _map_size(n_all)
    from scapp.evaluate.embedding import DISPLAY_CELLS

    default_n = min(DISPLAY_CELLS, n_all)
    sizes = sorted({k for k in MAP_SIZES if k < n_all} | {default_n} | ({n_all} if n_all <= MAP_SIZES[-1] else set()))
    c1, c2 = st.columns([3, 2])
    what = c1.radio("Colour by", ["truth", "prediction", "confidence", "correct"], horizontal=True,
                    key="explore-color", index=["truth", "prediction", "confidence", "correct"].index(
                        st.session_state.get("explore-color-last", "truth")))
    st.session_state["explore-color-last"] = what
    if len(sizes) > 1:
        n_map = c2.select_slider("Cells on the map", sizes, value=n_map if n_map in sizes else default_n,
                                 key=f"explore-map-n-{run.name}",
                                 format_func=lambda k: f"{k:,}" + (" (all)" if k == n_all else ""),
                                 help="The UMAP is computed once for these cells (a class-stratified sample) and "
                                      "kept in the run; more cells take minutes to compute the first time.")
    if not store.has_embedding:
        st.caption("This model has no latent space: the map is drawn from its predicted class probabilities.")
    _draw_map(n_map, what, key="explore-umap")

if view == "What pretraining changed":
    from pages._pretrain import pretraining_view

    pretraining_view(run, t["config"], colors)

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
            st.dataframe(nov, hide_index=True, use_container_width=True,
                         column_config=_columns(nov, rank=st.column_config.NumberColumn("rank in the model's list")))
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
            shown = ranks.drop(columns="class_known").assign(rank=ranks["rank"].astype("Int64"))
            st.dataframe(shown, hide_index=True, use_container_width=True,
                         column_config=_columns(shown, rank=st.column_config.NumberColumn("rank in the model's list"),
                                                n_ranked=st.column_config.NumberColumn("genes ranked")))


@st.cache_resource(show_spinner=False, max_entries=4)
def _explained_cells(run_dir: str, stamp: str) -> tuple[pd.DataFrame, object]:
    """The explained cells' id, true and predicted type, and their expression (or why it is not available)."""
    from scapp.explain.cells import explained_cells_expression

    r = runs.RunStore(run_dir)
    rows = r.explain()["cell_index"]
    cells = r.predictions(columns=["cell_id", "true", "pred", "confidence"]).iloc[rows].reset_index(drop=True)
    try:
        expr = explained_cells_expression(r)
    except ScappError as e:
        expr = str(e)
    return cells, expr


def _cell_view(estore: runs.RunStore, ex: dict, classes: list[str], features: list[str], kind) -> None:
    """One sampled cell's explanation: only the genes it scores, beside its expression of them."""
    from scapp.viz import cell_explain_bar

    st.markdown("**One cell at a time**")
    c1, c2 = st.columns([2, 1])
    cls = c1.selectbox("Cell type", classes, key="explore-cell-class")
    rows = np.flatnonzero(ex["cell_class"] == classes.index(cls))
    if not len(rows):
        st.info(f"No {cls} cell among the explained sample.")
        return
    pick = c2.number_input(f"Cell (1–{len(rows)} of the sampled {cls} cells)", 1, len(rows), 1, key="explore-cell")
    r = int(rows[int(pick) - 1])
    mask = ex["cell_masks"][r]
    cells, expr = _explained_cells(str(estore.path), str((estore.status() or {}).get("updated", "")))
    expression = None
    cell = cells.iloc[r] if r < len(cells) else None
    if isinstance(expr, str):
        st.caption(f"The cell's expression is not shown: {expr}")
    elif len(expr[1]) == len(features):
        expression = expr[0][r].toarray().ravel()
    if cell is not None:
        conf = f", confidence {cell['confidence']:.2f}" if pd.notna(cell.get("confidence")) else ""
        st.caption(f"Cell **{cell['cell_id']}** · true type *{cell['true']}* · predicted *{cell['pred']}*{conf}")
    nz = np.flatnonzero(mask != 0)
    if expression is not None and len(nz):
        on = int((expression[nz] > 0).sum())
        st.caption(f"It scores **{len(nz)}** of {len(features):,} genes; **{on}** of them are expressed in this "
                   "cell.")
    st.caption(kind.cell_note)
    show_figure(cell_explain_bar(features, mask, expression=expression, value_label=kind.cell_value,
                                 title=kind.cell_title),
                key="explore-cellbar", name=f"{estore.id}-cell-explain",
                data=pd.DataFrame({"gene": features, "score": mask,
                                   **({"expression": expression} if expression is not None else {})})
                .loc[lambda d: d["score"] != 0])


def _explanations(estore: runs.RunStore, heading: str, classes: list[str], genes: list[str], test: dict,
                  per_class: pd.DataFrame, explain_kind: str | None) -> None:
    """The explanation views of one run (this run, or a member of an ensemble)."""
    from scapp.explain.kinds import describe
    from scapp.viz import class_gene_heatmap, gene_importance_bar

    try:
        ex = estore.explain()
        gi = estore.global_importance()
    except ScappError as e:
        show_error(e)
        st.stop()
    kind = describe(explain_kind)
    features = genes if len(genes) == ex["class_scores"].shape[-1] else gi["gene"].tolist()
    signed = bool((ex["class_scores"] < 0).any())  # logreg weights, Hydra's IG × sign(LFC)
    st.markdown(heading)
    if kind.meaning:
        st.markdown(kind.meaning)
    top = st.slider("Top genes", 10, 100, 40, 5, key="explore-topgenes")
    # Genes are ranked by class_scores; a method may give the heatmap a colour scale of its own (SIMS: each gene
    # divided by its maximum over classes, so a gene's colour shows which class uses it most).
    shown = ex.get("display_scores", ex["class_scores"])
    show_figure(class_gene_heatmap(shown, classes, features, top=top, signed=signed, rank_by=ex["class_scores"],
                                   title=kind.class_title, value_label=kind.class_value),
                key="explore-heat", name=f"{estore.id}-class-genes",
                data=pd.DataFrame(ex["class_scores"].T, index=pd.Index(features, name="gene"), columns=classes)
                .reset_index())
    _dotplot(estore, classes)
    _markers(estore, classes, ex["class_scores"], features, test, per_class)
    show_figure(gene_importance_bar(gi["gene"].tolist(), gi["importance"].to_numpy()), key="explore-gi",
                name=f"{estore.id}-gene-importance", data=gi)
    if "cell_masks" in ex and len(ex["cell_masks"]):
        _cell_view(estore, ex, classes, features, kind)
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
                 column_config=_columns(mt, weight=st.column_config.NumberColumn("weight", format="percent"),
                                        **{c: st.column_config.NumberColumn(COLUMN_NAMES.get(c, c), format="%.3f")
                                           for c in mt.columns if c.endswith(("_f1", "_accuracy"))},
                                        fit_seconds=st.column_config.NumberColumn("training s", format="%.0f")))

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
                          (mstore.metrics() or {}).get("test") or {}, mstore.per_class(),
                          mspec.capabilities.explain_kind)
        except ScappError as e:
            show_error(e)
    else:
        _explanations(store, spec.explain_heading, classes, t["genes"], test, t["per_class"], caps.explain_kind)


# -- methods that denoise counts (capability ``denoises``): what the counts look like before and after --------------
@st.cache_resource(show_spinner=False, max_entries=2)
def _loaded_run(run_dir: str, stamp: str):
    """The run's model, ready to denoise (kept while the page shows this run)."""
    from scapp.annotate import load_run

    return load_run(run_dir)


@st.cache_resource(show_spinner=False, max_entries=2)
def _map_cells_input(run_dir: str, stamp: str, cells_key: str, _cell_ids: tuple[str, ...]):
    """Raw counts of the run's genes for the map's cells, read once from the training file (``cells_key``: a digest
    of the cells, so another sample reads again)."""
    from scapp.explain.denoised import cells_input

    return cells_input(_loaded_run(run_dir, stamp), list(_cell_ids))


# shared and read-only: st.cache_data would unpickle a copy on every hit (nothing in scapp unpickles)
@st.cache_resource(show_spinner=False, max_entries=32)
def _gene_on_map(run_id: str, gene: str, cells_key: str, run_dir: str, stamp: str,
                 _cell_ids: tuple[str, ...]) -> pd.DataFrame:
    """One gene raw and denoised in the map's cells: the model is run over these cells in blocks (streamed, never
    the whole file), once per run, gene and sample."""
    from scapp.denoise import gene_values

    r = _loaded_run(run_dir, stamp)
    return gene_values(r.model, _map_cells_input(run_dir, stamp, cells_key, _cell_ids), r.recipe.features, gene)


# shared and read-only: st.cache_data would unpickle a copy on every hit (nothing in scapp unpickles)
@st.cache_resource(show_spinner=False, max_entries=4)
def _denoise_tables(run_dir: str, stamp: str) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    r = runs.RunStore(run_dir)
    return r.denoise_cells(), r.denoise_genes()


def _denoising_view() -> None:
    """A gene raw vs denoised on the cell map, predicted vs observed library size, zero inflation per gene."""
    import hashlib

    from scapp.explain.denoised import (
        GENE_MAP_CELLS,
        SAMPLE_CELLS,
        default_gene,
        library_view,
        sample_positions,
        zero_inflation_view,
    )
    from scapp.viz.denoise import gene_raw_vs_denoised, library_size_scatter, zero_inflation_scatter

    cells, genes = _denoise_tables(str(run), stamp)
    if cells is None or genes is None:
        st.info("This run keeps no denoising summaries (trained before scapp saved them); train it again to see "
                "them.")
        return
    st.markdown("The model predicts, for every gene of every cell, the **expected count behind the zeros** "
                "(denoised expression `l·μ`: predicted library size × the gene's share) and the chance that a zero "
                "is a technical dropout (zero inflation `z`). Pick a gene to see both on the cell map.")
    by_expr = genes.sort_values("mean_count", ascending=False, kind="stable")["gene"].astype(str).tolist()
    first = default_gene(genes)
    zero_inflated = not genes["mean_zero_prob"].isna().all()
    # a widget's state is dropped while another view is shown: the last choices are kept beside it
    last_gene = st.session_state.get(f"explore-dn-gene-last-{run.name}", first)
    c1, c2 = st.columns([2, 3])
    gene = c1.selectbox("Gene (type to search)", by_expr, key=f"explore-dn-gene-{run.name}",
                        index=by_expr.index(last_gene if last_gene in by_expr else first),
                        help="Genes in order of mean count; the map opens on a well-expressed gene that is "
                             "detected in some cells but not all.")
    st.session_state[f"explore-dn-gene-last-{run.name}"] = gene
    kinds = {"denoised rate l·μ": "denoised"}
    if zero_inflated:
        kinds["expected count (1 − z)·l·μ"] = "denoised_nonzero"
    last_kind = st.session_state.get("explore-dn-kind-last")
    shown = c2.radio("Denoised value", list(kinds), horizontal=True, key="explore-dn-kind",
                     index=list(kinds).index(last_kind) if last_kind in kinds else 0,
                     help="l·μ: the expression rate the model infers, as if no zero were a dropout. (1 − z)·l·μ: "
                          "the count it expects to be measured, dropouts included.") or next(iter(kinds))
    st.session_state["explore-dn-kind-last"] = shown
    n_all = len(t["pred"])
    n_map = _map_size(n_all)
    got = _map_coords(n_map, key="explore-dn-map")
    if got is not None:
        idx, coords, method, note = got
        keep = sample_positions(len(idx), GENE_MAP_CELLS)  # each gene runs the whole network over these cells
        idx, coords = idx[keep], coords[keep]
        ids = tuple(t["pred"]["cell_id"].astype(str).to_numpy()[idx])
        ck = hashlib.sha1("\n".join(ids).encode()).hexdigest()[:16]
        try:
            with st.spinner(f"Denoising {gene} in {len(ids):,} cells (once per gene; seconds, up to a minute for a "
                            "whole transcriptome on a CPU)…"):
                vals = _gene_on_map(run.name, gene, ck, str(run), stamp, ids)
        except ScappError as e:
            show_error(e)
            vals = None
        if vals is not None:
            axes = ("UMAP 1", "UMAP 2") if method == "UMAP" else ("PC 1", "PC 2")
            sub = t["pred"].iloc[idx].reset_index(drop=True)
            hover = sub[["cell_id", "true"]].rename(columns={"cell_id": "cell", "true": "type"})
            if (hover["type"] == "(unlabelled)").all():
                hover = hover[["cell"]]
            label = next(k for k, v in kinds.items() if v == kinds[shown])
            fig = gene_raw_vs_denoised(coords, vals["raw"].to_numpy(), vals[kinds[shown]].to_numpy(), gene=gene,
                                       denoised_label=label, axis_labels=axes, hover=hover,
                                       title=f"{gene}: raw vs denoised on the {method}{note}")
            show_figure(fig, key="explore-dn-gene", name=f"{run.name}-{gene}-raw-vs-denoised",
                        data=vals.assign(cell_id=list(ids), **{f"{method.lower()}1": coords[:, 0],
                                                               f"{method.lower()}2": coords[:, 1]}))
            sampled = len(ids) < n_all
            st.caption(("" if not sampled else f"Computed on **{len(ids):,} of the run's {n_all:,} cells** (a sample "
                        "of the cells on the map: the gene is denoised for these cells only). ")
                       + "Both maps share one colour scale (log(1 + count)), so equal colours are equal expression; "
                       "a cell with a raw 0 that is coloured on the right is a zero the model reads as a dropout.")
    st.divider()
    lib = library_view(cells)
    z, n_unseen = zero_inflation_view(genes)
    c1, c2 = st.columns(2)
    with c1:
        title = f"Library size: predicted vs observed<br><sup>Pearson r of the logs = {lib.r_log:.3f}" \
                f" over {lib.n_cells:,} cells</sup>" if lib.r_log is not None else "Library size: predicted vs observed"
        show_figure(library_size_scatter(lib.cells, r_log=lib.r_log, n_total=lib.n_cells, title=title),
                    key="explore-dn-lib", name=f"{run.name}-library-size", data=lib.cells)
        per = ", ".join(f"{k} {v:.3f}" for k, v in lib.r_log_split.items() if v is not None)
        st.caption("The model predicts each cell's library size from its latent code, with no loss term of its own: "
                   f"agreement means the code captured sequencing depth. r per split: {per}."
                   + (f" {lib.n_cells:,} cells, {SAMPLE_CELLS:,} drawn at random." if lib.n_cells > SAMPLE_CELLS
                      else "")
                   + (f" {lib.n_empty:,} cells without counts are left out." if lib.n_empty else ""))
    with c2:
        show_figure(zero_inflation_scatter(z, highlight=[gene],
                                           title="Zero inflation per gene<br><sup>against mean expression</sup>"),
                    key="explore-dn-zero", name=f"{run.name}-zero-inflation", data=z)
        if zero_inflated:
            st.caption(f"Mean over all {len(cells):,} cells of the probability that the gene's zero is a dropout. "
                       + (f"{n_unseen:,} genes never seen in these cells are left out (no place on a log axis)."
                          if n_unseen else ""))


def _programs_view() -> None:
    """First-layer sparsity and the gene programs (the genes each unit reads), searchable by gene."""
    from scapp.explain.denoised import pruning_view
    from scapp.explain.programs import (
        CONTRIBUTION_MEANING,
        LAYER_NAMES,
        PAPER_LAYER,
        WEIGHT_FALLBACK_NOTE,
        layers,
        program_genes,
        program_summary,
        ranked_by_contribution,
        unit_genes,
        units_with_gene,
    )
    from scapp.viz.denoise import gene_program_bar, sparsity_histogram

    pv = pruning_view(m)
    if pv is None:
        st.info("This run's first layer was not pruned (its preset keeps every weight), so it has no sparsity "
                "histogram.")
    else:
        show_figure(sparsity_histogram(pv.edges, pv.counts, delta=pv.delta, sparsity=pv.sparsity),
                    key="explore-gp-sparsity", name=f"{run.name}-sparsity",
                    data=pd.DataFrame({"log10_from": pv.edges[:-1], "log10_to": pv.edges[1:], "weights": pv.counts}))
        fmt = lambda v: "–" if v is None else f"{v:.4g}"
        st.caption(f"Each first-layer neuron's weights divided by its largest |w|; those below δ were set to zero "
                   f"after training: **{pv.sparsity:.1%}** of the weights"
                   + (f", a median of {pv.genes_per_neuron_median:,.0f} genes left per neuron"
                      if pv.genes_per_neuron_median is not None else "")
                   + f". Validation NLL {fmt(pv.nll_before)} → {fmt(pv.nll_after)}, rate-MSE "
                   f"{fmt(pv.rate_mse_before)} → {fmt(pv.rate_mse_after)} (before → after pruning). The paper reached "
                   "about 98 % at α_w = 0.1 on a full run; a short run is far less sparse.")
    programs = runs.RunStore(run).gene_programs()
    if programs is None or not len(programs):
        st.info("This run keeps no gene programs.")
        return
    have = layers(programs)
    names = {"encoder": "First-layer units (the paper's gene programs)",
             "latent": "Latent units (decoder weights)"}
    layer = st.radio("Units", have, horizontal=True, key="explore-gp-layer",
                     format_func=lambda k: names.get(k, k)) if len(have) > 1 else have[0]
    unit_name = LAYER_NAMES.get(layer, f"{layer} unit")
    by_contrib = ranked_by_contribution(programs, layer)
    if layer == PAPER_LAYER:
        st.markdown("In the paper each first-layer unit is expected to stand for a pathway or an eigengene that reads "
                    "only a small set of genes: the weight penalty makes these weights sparse. A unit's genes are "
                    "its non-zero weights, "
                    + ("ranked by **contribution**: " + CONTRIBUTION_MEANING + "." if by_contrib
                       else "strongest first."))
        if not by_contrib:
            st.caption(WEIGHT_FALLBACK_NOTE)
    else:
        st.markdown("Each latent unit's weights into the genes' share `log μ`: positive genes are raised in the "
                    "denoised output when the unit is high. The paper makes no claim that these are sparse or "
                    "readable; the first-layer units are its gene programs.")
    summary = program_summary(programs, layer)
    all_genes = program_genes(programs, layer)
    c1, c2 = st.columns(2)
    query = c1.selectbox("Search a gene", all_genes, index=None, key=f"explore-gp-search-{run.name}-{layer}",
                         placeholder="Type a gene name…",
                         help="Lists the units whose kept genes include it, where it weighs most first.")
    units = summary["unit"].tolist()
    hits = units_with_gene(programs, query, layer) if query else None
    if hits is not None and len(hits):
        units = hits["unit"].tolist() + [u for u in units if u not in set(hits["unit"])]
    labels = dict(zip(summary["unit"], summary["top_genes"]))
    unit = c2.selectbox(f"{unit_name.capitalize()}", units, key=f"explore-gp-unit-{run.name}-{layer}-{query}",
                        format_func=lambda u: f"{u} · {labels.get(u, '')[:60]}")
    if query:
        if hits is None or not len(hits):
            st.warning(f"No {unit_name} keeps {query} among its genes.")
        else:
            st.markdown(f"**{query}** is in **{len(hits)}** {unit_name}{'s' if len(hits) != 1 else ''}:")
            cap = int(programs["rank"].max())  # genes kept per unit at most
            st.dataframe(hits.assign(n_genes=[f"{n}+" if n >= cap else str(n) for n in hits["n_genes"]]),
                         hide_index=True, width="stretch", height=min(38 + 35 * len(hits), 250),
                         column_config=_columns(hits, unit=st.column_config.NumberColumn(unit_name),
                                                rank=st.column_config.NumberColumn(f"rank of {query}"),
                                                weight=st.column_config.NumberColumn("weight", format="%.3g"),
                                                relative=st.column_config.NumberColumn(
                                                    "weight, of the unit's largest", format="percent"),
                                                input_sd=st.column_config.NumberColumn("spread (sd)",
                                                                                       format="%.3g"),
                                                contribution=st.column_config.NumberColumn(
                                                    "contribution", format="%.3g", help=CONTRIBUTION_MEANING),
                                                share=st.column_config.NumberColumn(
                                                    "of the unit's strongest", format="percent"),
                                                n_genes=st.column_config.Column("genes kept"),
                                                top_genes=st.column_config.Column("its strongest genes")))
    if unit is not None:
        ug = unit_genes(programs, unit, layer)
        show_figure(gene_program_bar(ug, unit=int(unit), unit_name=unit_name, highlight=query),
                    key="explore-gp-bar", name=f"{run.name}-{layer}-unit-{unit}", data=ug)
    cap = int(programs["rank"].max())
    with st.expander(f"All {len(summary):,} {unit_name}s and their strongest genes"):
        st.dataframe(summary.assign(n_genes=[f"{n}+" if c else str(n) for n, c in zip(summary["n_genes"],
                                                                                         summary["capped"])])
                     .drop(columns="capped"), hide_index=True, width="stretch",
                     column_config=_columns(summary, unit=st.column_config.NumberColumn(unit_name),
                                            n_genes=st.column_config.Column("genes kept",
                                                                            help=f"The run keeps at most {cap} "
                                                                                 "genes per unit"),
                                            top_genes=st.column_config.Column("strongest genes"),
                                            top_relative=st.column_config.NumberColumn(
                                                ("contribution" if by_contrib else "weight")
                                                + " of the last shown, of the largest", format="percent")))
        st.download_button("Gene programs (CSV)", lambda: programs.to_csv(index=False),
                           file_name=f"{run.name}-gene-programs.csv", mime="text/csv", key="explore-gp-dl",
                           on_click="ignore")


if view == "Denoising":
    _denoising_view()

if view == "Gene programs":
    _programs_view()
