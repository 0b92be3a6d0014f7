"""Every option on the Model form and every column the Runs / Compare pages show has a plain name and, where it is
jargon, a one-sentence help text; the method cards cite real papers (issue 11, defects 6, 9 and 11)."""

from __future__ import annotations

import re

from scapp.evaluate.compare import HEADLINE
from scapp.evaluate.glossary import COLUMN_LABELS, METRIC_HELP, column_label
from scapp.models import REGISTRY
from scapp.models.presets import OPTION_HELP, OPTION_LABELS, option_defaults


def test_every_option_on_the_model_form_has_a_label_and_one_plain_sentence_of_help():
    shown = {"seed", "device", "threshold", "preset"}
    for name, spec in REGISTRY.items():
        if spec.available and spec.trainable:
            shown |= set(option_defaults(name, "default"))
    for opt in shown - {"seed", "device", "threshold", "preset"}:
        assert opt in OPTION_LABELS, opt
    for opt in shown:
        text = OPTION_HELP.get(opt, "")
        assert text.endswith(".") and text.count(". ") == 0 and 30 < len(text) < 260, (opt, text)
    for word, opt in (("n_d", "n_d"), ("n_a", "n_a"), ("Mask sparsity", "lambda_sparse"),
                      ("Integrated Gradients", "ig_cells_per_class")):
        assert word in OPTION_HELP[opt]


def test_runs_and_compare_columns_have_human_names_and_the_jargon_has_help():
    for col in ("run_id", "model", "dataset", "label", "created", "state", "has_model", "macro_f1", "accuracy",
                "parent", *HEADLINE, "ece_after", "n_test", "class_known", "jaccard", "cell_id", "true"):
        assert col in COLUMN_LABELS and "_" not in column_label(col), col
    for term in ("macro_f1", "ece_after", "jaccard", "integrated_gradients", "balanced_accuracy", "class_known"):
        assert METRIC_HELP[term].endswith("."), term
    assert "ECE" in column_label("ece_after") and column_label("some_new_thing") == "Some new thing"


def test_cards_cite_authors_titles_and_venues():
    for name, spec in REGISTRY.items():
        assert spec.paper and "paper" != spec.paper.split()[-1].lower(), name
        assert spec.paper not in ("ZiPo paper", "SSL review"), name
    assert re.search(r"Sharifitabar.*ZiPo.*IEEE Trans\. Comput\. Biol\. Bioinform\..*2025", REGISTRY["zipo"].paper)
    assert re.search(r"Richter.*Theis, Delineating the effective use of self-supervised learning in single-cell "
                     r"genomics, Nature Machine Intelligence 2024", REGISTRY["ssl"].paper)
    assert REGISTRY["sims"].paper.startswith("Lehrer, SIMS: Scalable, Interpretable Machine Learning for Single-Cell")
    assert "Wagle" in REGISTRY["hydra"].paper and "10.1101/2025.08.15.670517" in REGISTRY["hydra"].paper
