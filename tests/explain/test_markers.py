"""Reference markers and model-vs-reference comparisons on real pancreas cells."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scapp.data.preprocess import normalize_log
from scapp.explain.markers import (
    marker_overlap,
    novel_genes,
    parse_marker_list,
    reference_markers,
    stratified_cells,
    top_genes,
    user_marker_ranks,
)


@pytest.fixture(scope="module")
def pancreas_ref(pancreas_small):
    a = pancreas_small
    classes = sorted(a.obs["cell_type"].astype(str).unique())
    y = a.obs["cell_type"].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy()
    X = normalize_log(a.X)
    ref = reference_markers(X, y, classes, a.var_names.tolist(), per_class=300, top=100)
    return ref, classes, y


def test_reference_markers_find_known_pancreas_markers(pancreas_ref):
    ref, classes, _ = pancreas_ref
    tops = top_genes(ref, 20)
    assert {"Ins1", "Ins2"} & set(top_genes(ref, 50)["Beta"])  # beta-cell identity genes (Iapp, Pdx1) rank above
    assert "Gcg" in tops["Alpha"]
    assert "Sst" in tops["Delta"]
    assert set(ref.columns) >= {"class", "rank", "gene", "score", "logfoldchange", "pval_adj"}


def test_overlap_of_a_list_with_itself_is_one_and_with_a_shuffle_is_lower(pancreas_ref):
    ref, *_ = pancreas_ref
    same = marker_overlap(ref, ref, tops=(20, 50))
    assert np.allclose(same["jaccard"], 1.0)
    rng = np.random.default_rng(0)
    shuffled = ref.copy()
    shuffled["gene"] = rng.permutation(ref["gene"].to_numpy())
    other = marker_overlap(shuffled, ref, tops=(20,))
    assert other["jaccard"].mean() < 0.5
    nov = novel_genes(shuffled, ref, top=10, reference_top=20)
    assert len(nov) > 0 and set(nov.columns) == {"class", "rank", "gene"}
    assert novel_genes(ref, ref, top=10, reference_top=20).empty


def test_parse_and_rank_user_markers(pancreas_ref):
    ref, *_ = pancreas_ref
    m = parse_marker_list("# my list\nBeta: Ins1, INS2 Iapp\nAlpha=Gcg\nNotAType: Foo\n\nbad line")
    assert m == {"Beta": ["Ins1", "INS2", "Iapp"], "Alpha": ["Gcg"], "NotAType": ["Foo"]}
    r = user_marker_ranks(ref, m)
    beta = r[r["class"] == "Beta"].set_index("gene")
    assert beta.loc["INS2", "rank"] <= 50  # case-insensitive
    assert not r[r["class"] == "NotAType"]["class_known"].any()
    assert r[r["class"] == "NotAType"]["rank"].isna().all()


def test_stratified_cells_caps_each_class():
    y = np.r_[np.zeros(100, int), np.ones(3, int), np.full(50, 2)]
    idx = stratified_cells(y, 10, seed=1)
    assert np.bincount(y[idx]).tolist() == [10, 3, 10]
    assert np.array_equal(idx, np.sort(idx))
    assert np.array_equal(idx, stratified_cells(y, 10, seed=1))


def test_singleton_classes_are_skipped():
    rng = np.random.default_rng(0)
    X = rng.poisson(1.0, (41, 30)).astype(np.float32)
    y = np.r_[np.zeros(20, int), np.ones(20, int), 2]
    ref = reference_markers(normalize_log(X), y, ["a", "b", "c"], [f"g{i}" for i in range(30)], top=5)
    assert set(ref["class"]) == {"a", "b"}
    assert isinstance(ref, pd.DataFrame)
