"""Checking predictions against the labels a query carries: name matching, agreement, confusion, disagreements."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from scapp.annotate import format_probability
from scapp.data.validate import UNASSIGNED
from scapp.evaluate.query_labels import (
    IGNORE,
    check_labels,
    default_label_column,
    normalize_name,
    suggest_mapping,
)

DEMO_CLASSES = ["B", "CD14 Monocyte", "CD16 Monocyte", "CD4 T memory", "CD4 T naive", "CD8 T", "DC", "NK", "Platelet"]


def test_names_match_ignoring_case_spaces_and_punctuation():
    assert normalize_name("CD4 T") == normalize_name("cd4-t") == normalize_name("CD4_T") == "cd4t"
    m = suggest_mapping(["b", "Cd8-T", "nk ", "NK_cells"], DEMO_CLASSES)
    assert m == {"b": ["B"], "Cd8-T": ["CD8 T"], "nk ": ["NK"], "NK_cells": ["NK"]}


def test_demo_query_names_are_all_matched_but_unknown():
    """The PBMC 4k query's two label columns against the classes of a model trained on the demo."""
    fine = suggest_mapping(["CD4 T", "Mononuclear phagocyte", "CD8 T", "B", "NK", "Unknown"], DEMO_CLASSES)
    assert fine["CD4 T"] == ["CD4 T memory", "CD4 T naive"]  # a broader given label: every class under it
    assert fine["Mononuclear phagocyte"] == ["CD14 Monocyte", "CD16 Monocyte", "DC"]
    assert fine["Unknown"] == []  # "no type": never compared
    coarse = suggest_mapping(["T_CD4", "Myeloid", "T_CD8", "B", "NK", "Unknown"], DEMO_CLASSES)
    assert coarse["T_CD4"] == ["CD4 T memory", "CD4 T naive"] and coarse["T_CD8"] == ["CD8 T"]
    assert coarse["Myeloid"] == ["CD14 Monocyte", "CD16 Monocyte", "DC"]


def test_a_finer_given_label_maps_to_the_one_broader_class_and_strangers_to_nothing():
    m = suggest_mapping(["CD14+ Monocytes", "Erythrocyte", "T"], ["Monocyte", "B", "CD4 T", "CD8 T"])
    assert m == {"CD14+ Monocytes": ["Monocyte"], "Erythrocyte": [], "T": ["CD4 T", "CD8 T"]}


def test_default_column_follows_the_training_label():
    assert default_label_column(["louvain", "celltype", "cell_type_coarse"], "cell_type") == "celltype"
    assert default_label_column(["louvain", "cell_type"], "annotation") == "cell_type"
    assert default_label_column(["louvain", "batch"], None) == "louvain"
    assert default_label_column([], "cell_type") is None


def _example():
    given = ["T", "T", "T", "T", "B", "B", "Monocytes", "Unknown", None, "T"]
    pred = ["CD4 T", "CD8 T", "B", UNASSIGNED, "B", "B", "B", "B", "CD4 T", "CD4 T"]
    classes = ["B", "CD4 T", "CD8 T", "Monocyte"]
    return check_labels(pred, given, classes, cell_ids=[f"c{i}" for i in range(10)],
                        confidence=np.linspace(0.1, 1, 10), column="authors")


def test_agreement_overall_per_label_and_unassigned():
    chk = _example()
    # T → CD4 T or CD8 T (5 cells, 3 agree: c0, c1, c9); B (2 agree); Monocytes → Monocyte (0 of 1); Unknown, missing:
    # not compared
    assert chk.mapping["T"] == ["CD4 T", "CD8 T"] and chk.mapping["Unknown"] == []
    assert (chk.n_cells, chk.n_compared, chk.n_agree, chk.n_unassigned) == (10, 8, 5, 1)
    assert chk.agreement == pytest.approx(5 / 8) and chk.agreement_assigned == pytest.approx(5 / 7)
    per = chk.per_label().set_index("given label")
    assert list(per.index) == ["T", "B", "Monocytes", "Unknown", "(missing)"]  # largest first, missing last
    assert per.loc["T", "agree"] == 3 and per.loc["T", "agreement"] == pytest.approx(0.6)
    assert per.loc["T", "unassigned"] == 1
    assert per.loc["T", "most often called instead"] in ("B", UNASSIGNED) and per.loc["T", "cells called so"] == 1
    assert per.loc["Monocytes", "most often called instead"] == "B" and per.loc["Monocytes", "cells called so"] == 1
    assert per.loc["Unknown", "counts as"] == IGNORE and pd.isna(per.loc["Unknown", "agree"])
    assert "62.5%" in chk.summary() and "Unknown" in chk.summary()


def test_confusion_is_predicted_by_given_with_unassigned_row():
    chk = _example()
    cm = chk.confusion()
    assert list(cm.columns) == ["T", "B", "Monocytes"]  # compared given labels only
    assert list(cm.index) == ["CD4 T", "CD8 T", "B", "Monocyte", UNASSIGNED]  # ordered by the given label they match
    assert cm.loc["CD4 T", "T"] == 2 and cm.loc["B", "T"] == 1 and cm.loc[UNASSIGNED, "T"] == 1
    assert cm.loc["B", "Monocytes"] == 1 and cm.to_numpy().sum() == chk.n_compared
    assert ("CD4 T", "T") in chk.agreeing_pairs() and ("B", "Monocytes") not in chk.agreeing_pairs()
    assert "Unknown" in chk.confusion(include_ignored=True).columns


def test_disagreements_are_the_compared_cells_that_differ():
    chk = _example()
    dis = chk.disagreements()
    status = chk.cell_status()
    assert list(status[[0, 2, 7, 8]]) == ["agrees", "differs", "not compared", "not compared"]
    assert list(dis.columns) == ["cell_id", "given (authors)", "predicted", "confidence"]
    assert sorted(dis["cell_id"]) == ["c2", "c3", "c6"]  # T→B, T→Unassigned, Monocytes→B; not Unknown nor missing


def test_a_user_mapping_overrides_the_suggestion():
    given, pred = ["T", "T", "Mono", "Unknown"], ["CD4 T", "CD8 T", "B", "B"]
    chk = check_labels(pred, given, ["B", "CD4 T", "CD8 T"], mapping={"T": "CD4 T", "Unknown": ["B"], "Mono": IGNORE})
    assert chk.mapping == {"T": ["CD4 T"], "Mono": [], "Unknown": ["B"]}
    assert (chk.n_compared, chk.n_agree) == (3, 2)
    with pytest.raises(ValueError, match="not a class of the model"):
        check_labels(pred, given, ["B", "CD4 T"], mapping={"T": "CD4 T naive"})
    with pytest.raises(ValueError, match="4 predictions for 3"):
        check_labels(pred, given[:3], ["B"])


def test_nothing_compared_says_so():
    chk = check_labels(["B", "B"], ["x", "y"], ["B"])
    assert chk.n_compared == 0 and np.isnan(chk.agreement) and "No cell" in chk.summary()
    assert chk.confusion().shape[1] == 0


@pytest.mark.parametrize(("p", "text"), [(2e-16, "<0.1%"), (0.0, "0%"), (0.0123456, "1.23%"), (0.97349, "97.3%"),
                                         (0.99995, ">99.9%"), (1.0, "100%"), (0.5, "50%"), (float("nan"), "–")])
def test_probabilities_are_formatted_for_people(p, text):
    assert format_probability(p) == text


@pytest.fixture(scope="module")
def logreg_run(tmp_path_factory, assets):
    from scapp import cli

    out = tmp_path_factory.mktemp("qlabels") / "logreg"
    rc = cli.main(["train", str(assets / "demo_pbmc3k.h5ad"), "--label", "cell_type", "--model", "logreg",
                   "--out", str(out), "--device", "cpu", "--quiet"])
    assert rc == 0
    return out


def test_demo_query_check_shows_what_the_issue_found_by_hand(logreg_run, assets):
    """All B cells and nearly all phagocytes right; CD8 T called CD4 T and NK called CD8 T (issue 11)."""
    import anndata as ad

    from scapp.annotate import annotate, load_run

    run = load_run(logreg_run)
    q = ad.read_h5ad(assets / "demo_pbmc4k_query.h5ad")
    ann = annotate(run, q, explain=False)
    chk = check_labels(ann.predicted, q.obs["cell_type"], run.classes, cell_ids=ann.cell_ids, column="cell_type")
    per = chk.per_label().set_index("given label")
    assert per.loc["B", "agreement"] >= 0.95 and per.loc["Mononuclear phagocyte", "agreement"] >= 0.95
    assert per.loc["CD4 T", "agreement"] >= 0.9
    assert per.loc["CD8 T", "agreement"] < 0.5 and per.loc["CD8 T", "most often called instead"] == "CD4 T"
    assert per.loc["NK", "agreement"] < 0.7 and per.loc["NK", "most often called instead"] == "CD8 T"
    assert chk.n_compared == 1500 - 13  # the 13 "Unknown" cells are left out


def test_cli_predict_checks_labels(logreg_run, assets, tmp_path, capsys):
    from scapp import cli

    query = str(assets / "demo_pbmc4k_query.h5ad")
    rc = cli.main(["predict", str(logreg_run), query, "--csv", str(tmp_path / "p.csv"), "--check-labels",
                   "cell_type_coarse", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 0 and "Agreement with 'cell_type_coarse'" in err and "T_CD8" in err
    assert list(pd.read_csv(tmp_path / "p.csv").columns[:4]) == ["cell_id", "label", "confidence", "unassigned"]
    bad = tmp_path / "map.json"
    bad.write_text(json.dumps({"T_CD8": "CD8 T cytotoxic"}))
    rc = cli.main(["predict", str(logreg_run), query, "--check-labels", "cell_type_coarse", "--label-map", str(bad),
                   "--csv", str(tmp_path / "p2.csv"), "--quiet"])
    assert rc != 0 and "not a class of the model" in capsys.readouterr().err
    rc = cli.main(["predict", str(logreg_run), query, "--check-labels", "authors", "--csv", str(tmp_path / "p3.csv"),
                   "--quiet"])
    assert rc != 0 and "no obs column 'authors'" in capsys.readouterr().err
