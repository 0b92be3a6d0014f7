"""Plot builders (scapp.viz): every builder on a real finished run, plus the contracts pages rely on."""

from __future__ import annotations

import inspect
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
import pytest

from scapp.explain.markers import marker_overlap
from scipy import sparse

from scapp import viz
from scapp.cli import main
from scapp.runs import RunStore

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "assets" / "demo_pbmc3k.h5ad"


# --------------------------------------------------------------------------- one real run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("viz") / "run"
    rc = main(["train", str(DEMO), "--label", "cell_type", "--model", "sims", "--epochs", "2",
               "--device", "cpu", "--out", str(out), "--quiet"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def data(run: Path) -> dict:
    """The run's artifacts as the tidy inputs the builders take (the page does this I/O)."""
    s = RunStore(run)
    classes = s.classes()
    genes = s.genes()
    adata = ad.read_h5ad(DEMO)
    X = sparse.csr_matrix(adata.X)
    metrics = s.metrics()
    return {
        "classes": classes,
        "colors": viz.class_colors(classes),
        "genes": genes,
        "counts": np.asarray(X.sum(axis=1)).ravel(),
        "n_genes": np.diff(X.indptr),
        "class_counts": adata.obs["cell_type"].astype(str).value_counts().to_dict(),
        "history": pd.DataFrame(s.epochs()),
        "cm": s.confusion(),
        "per_class": s.per_class(),
        "reliability": s.reliability(),
        "calibration": metrics["calibration"],
        "embedding": s.embedding(),
        "pred": s.predictions(),
        "explain": s.explain(),
        "importance": s.global_importance(),
        "markers": s.markers(),
        "reference_markers": s.reference_markers(),
        "adata": adata,
    }


def _dot(d: dict) -> go.Figure:
    a = d["adata"]
    X = sparse.csr_matrix(a.X, dtype=np.float64)
    X = sparse.diags(1e4 / np.maximum(np.asarray(X.sum(axis=1)).ravel(), 1)) @ X
    X.data = np.log1p(X.data)
    mean, frac = viz.dotplot_data(X, a.obs["cell_type"], list(a.var_names), ["MS4A1", "LYZ", "NKG7", "PPBP"])
    return viz.expression_dotplot(mean, frac, standard_scale="gene")


BUILDERS = {
    "counts_histograms": lambda d: viz.counts_histograms(d["counts"], d["n_genes"]),
    "counts_histograms_linear": lambda d: viz.counts_histograms(d["counts"], d["n_genes"], log_x=False),
    "class_sizes_bar": lambda d: viz.class_sizes_bar(d["class_counts"], colors=d["colors"]),
    "training_curves": lambda d: viz.training_curves(d["history"]),
    "confusion_heatmap": lambda d: viz.confusion_heatmap(d["cm"]),
    "class_f1_bars": lambda d: viz.class_f1_bars(d["per_class"], colors=d["colors"]),
    "reliability_diagram": lambda d: viz.reliability_diagram(
        d["reliability"]["before"], d["reliability"]["after"],
        ece_before=d["calibration"]["ece_before"], ece_after=d["calibration"]["ece_after"],
        temperature=d["calibration"]["temperature"]),
    "embedding_scatter": lambda d: viz.embedding_scatter(
        d["embedding"], d["pred"]["pred"], colors=d["colors"], hover=d["pred"][["cell_id", "true", "confidence"]],
        max_points=1000, highlight=np.arange(5)),
    "embedding_scatter_continuous": lambda d: viz.embedding_scatter(
        d["embedding"], d["pred"]["confidence"], kind="continuous", color_label="confidence"),
    "class_gene_heatmap": lambda d: viz.class_gene_heatmap(d["explain"]["class_scores"], d["classes"], d["genes"]),
    "class_gene_heatmap_signed": lambda d: viz.class_gene_heatmap(
        d["explain"]["class_scores"] - d["explain"]["class_scores"].mean(axis=0), d["classes"], d["genes"],
        signed=True),
    "gene_importance_bar": lambda d: viz.gene_importance_bar(d["importance"]["gene"], d["importance"]["importance"]),
    "cell_explain_bar": lambda d: viz.cell_explain_bar(d["genes"], d["explain"]["cell_masks"][0]),
    "expression_dotplot": _dot,
    "agreement_heatmap": lambda d: viz.agreement_heatmap(_comparison(d).agreement("a", "b")),
    "metrics_comparison_bars": lambda d: viz.metrics_comparison_bars(_comparison(d).metrics),
    "marker_overlap_bars": lambda d: viz.marker_overlap_bars(marker_overlap(d["markers"], d["reference_markers"])),
    "rare_common_recall": lambda d: viz.rare_common_recall(d["per_class"], colors=d["colors"], accuracy=0.9,
                                                           balanced_accuracy=0.8),
    "ensemble_members_bars": lambda d: viz.ensemble_members_bars(
        pd.DataFrame({"name": ["logreg_hvg", "sims"], "weight": [0.7, 0.3], "valid_macro_f1": [0.9, 0.8],
                      "test_macro_f1": [0.88, 0.81]}), ensemble={"valid_macro_f1": 0.91, "test_macro_f1": 0.9}),
    "pretraining_recall_bars": lambda d: viz.pretraining_recall_bars(d["per_class"].assign(
        recall_scratch=d["per_class"]["recall"] * 0.9, recall_pretrained=d["per_class"]["recall"])),
}


def _comparison(d: dict):
    """The run against a copy of itself with 30 test cells relabelled."""
    from scapp.evaluate.compare import compare_runs

    a = d["pred"]
    b = a.copy()
    test = np.flatnonzero(b["split"] == "test")[:30]
    b.loc[test, "pred"] = d["classes"][0]
    info = {"sha256": "x", "label": "cell_type"}
    met = {"test": {"macro_f1": 0.8, "median_f1": 0.7, "balanced_accuracy": 0.75, "accuracy": 0.9}}
    return compare_runs({"a": a, "b": b}, {"a": met, "b": met}, {"a": info, "b": info})


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_builder_returns_figure_on_a_real_run(name, data):
    template = pio.templates.default
    fig = BUILDERS[name](data)
    assert isinstance(fig, go.Figure)
    assert len(fig.data) >= 1
    assert fig.layout.title.text  # projector-ready: titled, white, readable
    assert fig.layout.plot_bgcolor == "white" and fig.layout.paper_bgcolor == "white"
    assert fig.layout.font.size >= 14
    assert pio.templates.default == template  # no global template changes
    fig.to_json()  # serialisable as st.plotly_chart / write_html need


def test_every_public_builder_is_covered_and_keyword_only():
    tested = {n.split("_linear")[0].split("_continuous")[0].split("_signed")[0] for n in BUILDERS}
    helpers = {"class_colors", "downsample_idx", "dotplot_data", "UNASSIGNED", "UNASSIGNED_COLOR"}
    assert set(viz.__all__) - helpers == tested
    data_first = {"counts_histograms": 2, "class_sizes_bar": 1, "training_curves": 1, "confusion_heatmap": 1,
                  "class_f1_bars": 1, "reliability_diagram": 2, "embedding_scatter": 2, "class_gene_heatmap": 3,
                  "gene_importance_bar": 2, "cell_explain_bar": 2, "expression_dotplot": 2, "dotplot_data": 4,
                  "agreement_heatmap": 1, "metrics_comparison_bars": 1, "ensemble_members_bars": 1,
                  "pretraining_recall_bars": 1}
    for name, n_data in data_first.items():
        params = list(inspect.signature(getattr(viz, name)).parameters.values())
        assert all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params[:n_data]), name
        assert all(p.kind is p.KEYWORD_ONLY for p in params[n_data:]), name
        assert not {"show", "save", "ax", "path"} & {p.name for p in params}, name


# --------------------------------------------------------------------------- colours


def test_class_colors_stable_distinct_and_unassigned_grey():
    classes = [f"type {i}" for i in range(40)]
    a, b = viz.class_colors(classes), viz.class_colors(list(classes))
    assert a == b and list(a) == classes
    assert len(set(a.values())) == 40
    assert len(set(list(a.values())[:20])) == 20
    c = viz.class_colors(["B", viz.UNASSIGNED, "NK"])
    assert c[viz.UNASSIGNED] == viz.UNASSIGNED_COLOR
    assert c["NK"] == a["type 1"]  # "Unassigned" does not use a palette slot
    assert viz.UNASSIGNED_COLOR not in a.values()


def test_same_class_same_colour_in_every_builder(data):
    colors = data["colors"]
    bars = viz.class_sizes_bar(data["class_counts"], colors=colors)
    bar_color = dict(zip(bars.data[0].y, bars.data[0].marker.color))
    scatter = viz.embedding_scatter(data["embedding"], data["pred"]["true"], colors=colors)
    scatter_color = {t.legendgroup: t.marker.color for t in scatter.data}
    f1 = viz.class_f1_bars(data["per_class"], colors=colors)
    ticks = dict(zip(f1.layout.xaxis.tickvals, f1.layout.xaxis.ticktext))
    for cls in data["classes"]:
        assert bar_color[cls] == scatter_color[cls] == colors[cls]
        assert f"color:{colors[cls]}" in ticks[cls]
    # without an explicit mapping, a categorical label's categories decide the colours the same way
    cat = pd.Series(pd.Categorical(data["pred"]["true"], categories=data["classes"]))
    auto = {t.legendgroup: t.marker.color for t in viz.embedding_scatter(data["embedding"], cat).data}
    assert auto == {c: colors[c] for c in auto}


# --------------------------------------------------------------------------- downsampling and the scatter


def _labels(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lab = rng.choice(np.array(["big", "mid", "small"]), size=n, p=[0.8, 0.195, 0.005]).astype(object)
    lab[:2] = "tiny"
    return lab


def test_downsample_keeps_every_class_respects_budget_and_is_deterministic():
    lab = _labels(20_000)
    idx = viz.downsample_idx(lab, 500, seed=3)
    assert len(idx) == 500 and len(np.unique(idx)) == 500 and np.all(np.diff(idx) > 0)
    assert set(lab[idx]) == set(lab)
    np.testing.assert_array_equal(idx, viz.downsample_idx(lab, 500, seed=3))
    assert not np.array_equal(idx, viz.downsample_idx(lab, 500, seed=4))
    shown = pd.Series(lab[idx]).value_counts()
    assert abs(shown["big"] / 500 - np.mean(lab == "big")) < 0.01  # proportional otherwise
    np.testing.assert_array_equal(viz.downsample_idx(lab, 50_000), np.arange(20_000))
    assert len(viz.downsample_idx(["a", "b", "c"] * 5, 2)) == 3  # budget below #classes: one each


def test_downsample_one_million_cells():
    lab = _labels(1_000_000, seed=1)
    lab[5] = np.nan  # missing labels are a class of their own
    idx = viz.downsample_idx(pd.Series(lab), 200_000, seed=0)
    assert len(idx) == 200_000
    assert pd.Series(lab[idx]).nunique(dropna=False) == pd.Series(lab).nunique(dropna=False)


def test_embedding_scatter_downsamples_with_caption_and_keeps_highlight():
    rng = np.random.default_rng(0)
    n = 50_000
    lab = _labels(n)
    xy = rng.normal(size=(n, 2))
    hl = np.array([10, 20, 49_999])
    fig = viz.embedding_scatter(xy, lab, max_points=2_000, highlight=hl,
                                hover=pd.DataFrame({"score": rng.random(n)}))
    assert all(isinstance(t, go.Scattergl) for t in fig.data)
    base = [t for t in fig.data if not t.name.startswith("highlighted")]
    assert {t.legendgroup for t in base} == set(lab)
    assert fig.layout.meta["total"] == n and fig.layout.meta["shown"] <= 2_000 + len(hl)
    assert sum(len(t.x) for t in base) == fig.layout.meta["shown"]
    assert any(f"of {n:,} cells" in a.text and a.text.startswith("showing") for a in fig.layout.annotations)
    (hi,) = [t for t in fig.data if t.name.startswith("highlighted")]
    assert len(hi.x) == 3
    np.testing.assert_allclose(sorted(hi.x), sorted(xy[hl, 0].astype(np.float32)))
    small = viz.embedding_scatter(xy[:100], lab[:100])
    assert not small.layout.annotations and small.layout.meta["shown"] == 100


# --------------------------------------------------------------------------- metrics


def test_confusion_text_equals_counts_and_colour_is_row_normalised(data):
    cm = data["cm"]
    fig = viz.confusion_heatmap(cm)
    h = fig.data[0]
    assert list(h.y) == [str(c) for c in cm.index] and list(h.x) == [str(c) for c in cm.columns]
    np.testing.assert_array_equal(np.asarray(h.text).astype(int), cm.to_numpy())
    z = np.asarray(h.z, dtype=float)
    rows = cm.to_numpy().sum(axis=1) > 0
    np.testing.assert_allclose(z[rows].sum(axis=1), 1.0)
    raw = viz.confusion_heatmap(cm, normalize=False).data[0]
    np.testing.assert_array_equal(np.asarray(raw.z), cm.to_numpy())


def test_confusion_rectangular_with_unassigned_column():
    cm = pd.DataFrame([[5, 0, 1], [0, 0, 0]], index=["A", "B"], columns=["A", "B", "Unassigned"])
    h = viz.confusion_heatmap(cm).data[0]
    np.testing.assert_array_equal(np.asarray(h.text).astype(int), cm.to_numpy())
    assert np.asarray(h.z, dtype=float)[1].sum() == 0  # empty true class: no division by zero


def test_class_f1_bars_ordered_by_support_with_smallest_called_out(data):
    pc = data["per_class"]
    fig = viz.class_f1_bars(pc, highlight_smallest=3)
    assert [t.name for t in fig.data] == ["precision", "recall", "F1"]
    support = pc.set_index("class")["support"]
    x = list(fig.data[0].x)
    assert list(support[x]) == sorted(support, reverse=True)
    assert len(fig.layout.shapes) == 3  # one shaded band per small class
    smallest = set(support[support > 0].nsmallest(3).index)
    bold = {v for v, t in zip(fig.layout.xaxis.tickvals, fig.layout.xaxis.ticktext) if "<b>" in t}
    assert bold == smallest


def test_reliability_diagram_diagonal_ece_and_empty_bins(data):
    rel = data["reliability"]
    fig = viz.reliability_diagram(rel["before"], rel["after"], ece_before=0.0623, ece_after=0.0321)
    names = [t.name for t in fig.data]
    assert "perfect calibration" in names
    assert any("ECE 0.062" in n for n in names) and any("ECE 0.032" in n for n in names)
    (before,) = [t for t in fig.data if isinstance(t, go.Scatter) and (t.name or "").startswith("before")]
    n_filled = sum(c > 0 for c in rel["before"]["count"])
    assert len(before.x) == n_filled  # empty bins (None) are skipped
    only = viz.reliability_diagram(rel["before"])
    assert not any("after" in (t.name or "") for t in only.data)


# --------------------------------------------------------------------------- training curves


def test_training_curves_empty_one_row_and_full(data):
    empty = viz.training_curves(pd.DataFrame())
    assert isinstance(empty, go.Figure) and len(empty.data) == 0
    assert any("waiting for the first epoch" in a.text.lower() for a in empty.layout.annotations)
    no_curves = viz.training_curves(pd.DataFrame([{"event": "started"}]))
    assert len(no_curves.data) == 0 and "waiting" in no_curves.layout.annotations[0].text.lower()
    h = data["history"]
    one = viz.training_curves(h.iloc[:1])
    assert {t.name for t in one.data} >= {"train loss", "validation loss", "macro-F1"}
    assert all(len(t.x) == 1 for t in one.data)
    full = viz.training_curves(h)
    assert {t.name for t in full.data} == {"train loss", "validation loss", "accuracy", "macro-F1",
                                          "balanced accuracy"}
    assert any(a.text.startswith("best epoch") for a in full.layout.annotations)
    partial = viz.training_curves(pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5]}))
    assert [t.name for t in partial.data] == ["train loss"]
    assert not any((a.text or "").startswith("best epoch") for a in partial.layout.annotations)


# --------------------------------------------------------------------------- explain


def test_class_gene_heatmap_picks_top_genes_by_column_norm():
    rng = np.random.default_rng(0)
    scores = rng.random((3, 40)) * 0.1
    scores[0, 7], scores[1, 3], scores[2, 30] = 5.0, 4.0, -6.0
    genes = [f"g{i}" for i in range(40)]
    fig = viz.class_gene_heatmap(scores, ["a", "b", "c"], genes, top=3, signed=True)
    h = fig.data[0]
    assert list(h.x) == ["g7", "g3", "g30"]  # grouped by the class where each peaks
    assert h.zmid == 0 and h.zmin == -h.zmax
    with pytest.raises(ValueError):
        viz.class_gene_heatmap(scores, ["a", "b"], genes)


def test_gene_bars_show_top_by_magnitude():
    genes = ["a", "b", "c", "d"]
    fig = viz.cell_explain_bar(genes, np.array([0.1, -0.9, 0.5, 0.0]), top=2, expression=np.arange(4.0))
    assert list(fig.data[0].y) == ["b", "c"]
    assert list(np.asarray(fig.data[0].customdata).ravel()) == [1.0, 2.0]
    assert list(viz.gene_importance_bar(genes, [1, 4, 2, 3], top=3).data[0].y) == ["b", "d", "c"]


def test_dotplot_data_matches_naive_numpy():
    rng = np.random.default_rng(0)
    X = rng.poisson(0.7, size=(60, 8)).astype(np.float64)
    X = np.log1p(X)
    labels = rng.choice(["x", "y", "z"], size=60)
    genes = [f"g{i}" for i in range(8)]
    sel = ["g5", "g0", "g2"]
    mean, frac = viz.dotplot_data(X, labels, genes, sel)
    for cls in ["x", "y", "z"]:
        rows = X[labels == cls][:, [5, 0, 2]]
        np.testing.assert_allclose(mean.loc[cls].to_numpy(), rows.mean(axis=0))
        np.testing.assert_allclose(frac.loc[cls].to_numpy(), (rows > 0).mean(axis=0))
    assert list(mean.columns) == sel and list(mean.index) == ["x", "y", "z"]
    m2, f2 = viz.dotplot_data(sparse.csr_matrix(X), pd.Series(labels), genes, sel, classes=["z", "x", "w"])
    pd.testing.assert_frame_equal(m2.loc[["z", "x"]], mean.loc[["z", "x"]])
    pd.testing.assert_frame_equal(f2.loc[["z", "x"]], frac.loc[["z", "x"]])
    assert m2.loc["w"].isna().all()
    with pytest.raises(KeyError, match="nope"):
        viz.dotplot_data(X, labels, genes, ["nope"])
    fig = viz.expression_dotplot(mean, frac)
    main_trace = fig.data[0]
    assert len(main_trace.x) == 9
    sizes = np.asarray(main_trace.marker.size)
    assert sizes[np.argmax(frac.to_numpy().ravel())] == sizes.max()


def test_counts_histograms_bin_every_cell():
    counts = np.r_[0, np.random.default_rng(0).lognormal(8, 0.5, 999)]
    genes = np.r_[0, np.random.default_rng(1).integers(200, 3000, 999)]
    fig = viz.counts_histograms(counts, genes, log_x=True, n_bins=30)
    bars = [t for t in fig.data if isinstance(t, go.Bar)]
    assert [int(np.sum(b.y)) for b in bars] == [999, 999]  # the zero cell is named in the axis title
    assert "1 cells at 0" in fig.layout.xaxis.title.text
    lin = viz.counts_histograms(counts, genes, log_x=False)
    assert [int(np.sum(t.y)) for t in lin.data if isinstance(t, go.Bar)] == [1000, 1000]


def test_agreement_heatmap_counts_on_text_diagonal_is_agreement():
    counts = pd.DataFrame([[5, 1], [0, 4]], index=pd.Index(["B", "T"], name="run1"),
                          columns=pd.Index(["B", "T"], name="run2"))
    fig = viz.agreement_heatmap(counts)
    assert [list(r) for r in fig.data[0].text] == [["5", "1"], ["", "4"]]
    assert np.allclose(fig.data[0].z, [[5 / 6, 1 / 6], [0, 1]])
    assert "90.0% of 10 cells" in fig.layout.title.text
    assert "run1" in fig.layout.yaxis.title.text and "run2" in fig.layout.xaxis.title.text
    assert "No shared cells" in viz.agreement_heatmap(counts * 0).layout.annotations[0].text


def test_metrics_comparison_bars_one_trace_per_run_values_printed():
    met = pd.DataFrame({"run_id": ["r1", "r2"], "macro_f1": [0.81234, 0.7], "accuracy": [0.9, np.nan]})
    fig = viz.metrics_comparison_bars(met)
    assert [t.name for t in fig.data] == ["r1", "r2"]
    assert list(fig.data[0].x) == ["macro F1", "accuracy"] and list(fig.data[0].text) == ["0.812", "0.900"]
    assert list(fig.data[1].text) == ["0.700", ""]


def test_marker_overlap_bars_one_series_per_list_length():
    from scapp.viz import marker_overlap_bars

    ov = pd.DataFrame({"class": ["B", "NK", "B", "NK"], "top": [50, 50, 100, 100],
                       "jaccard": [0.2, 0.5, 0.3, 0.6], "shared": [17, 33, 46, 75]})
    fig = marker_overlap_bars(ov)
    assert [t.name for t in fig.data] == ["top 50", "top 100"]
    assert list(fig.data[1].x) == [0.3, 0.6] and list(fig.data[0].y) == ["B", "NK"]
    empty = marker_overlap_bars(ov.iloc[0:0])
    assert not empty.data and "reference" in empty.layout.annotations[0].text


def test_rare_common_recall_picks_extremes_by_support():
    from scapp.viz import rare_common_recall

    pc = pd.DataFrame({"class": list("abcdefgh"), "support": [5, 100, 7, 300, 2, 50, 80, 0],
                       "recall": [0.2, 0.9, 0.5, 0.95, 0.0, 0.8, 0.85, 0.0], "precision": [0.5] * 8})
    fig = rare_common_recall(pc, n=2, accuracy=0.9, balanced_accuracy=0.6)
    assert [x.split(" ")[0] for x in fig.data[0].x] == ["e", "a", "b", "d"]  # h has no test cells
    assert list(fig.data[0].y) == [0.0, 0.2, 0.9, 0.95]
    assert [t.name for t in fig.data[1:]] == ["accuracy 0.900", "balanced accuracy 0.600"]
