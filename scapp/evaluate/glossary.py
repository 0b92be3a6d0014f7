"""Human names and one-sentence help texts for the metrics and table columns the pages show.

Tables built in ``scapp`` keep snake_case column names (stable in CSVs and tests); the pages rename them for
people with :data:`COLUMN_LABELS` and put :data:`METRIC_HELP` in tooltips, so a biologist never reads
``macro_f1`` or meets "ECE" or "Jaccard" without a plain sentence next to it. Pure data, no Streamlit.
"""

from __future__ import annotations

__all__ = ["COLUMN_LABELS", "METRIC_HELP", "column_help", "column_label"]

COLUMN_LABELS: dict[str, str] = {
    "run_id": "Run", "model": "Model", "dataset": "Dataset", "label": "Label column", "created": "Created",
    "state": "State", "has_model": "Model saved", "parent": "Retrained from", "path": "Folder",
    "macro_f1": "Macro F1", "median_f1": "Median F1", "balanced_accuracy": "Balanced accuracy",
    "accuracy": "Accuracy", "ece_after": "Calibration error (ECE)", "ece_before": "Calibration error before (ECE)",
    "n_test": "Test cells", "class": "Cell type", "gene": "Gene", "rank": "Rank", "n_ranked": "Genes ranked",
    "class_known": "Cell type in the run", "top": "Top genes", "jaccard": "Jaccard overlap", "shared": "Shared genes",
    "name": "Member", "weight": "Weight", "valid_macro_f1": "Macro F1 (validation)",
    "test_macro_f1": "Macro F1 (test)", "valid_balanced_accuracy": "Balanced accuracy (validation)",
    "test_balanced_accuracy": "Balanced accuracy (test)", "fit_seconds": "Training time (s)",
    "cell_id": "Cell", "true": "Given label", "confidence": "Confidence", "unassigned": "Unassigned",
    "f1": "F1", "precision": "Precision", "recall": "Recall", "support": "Cells",
}

METRIC_HELP: dict[str, str] = {
    "macro_f1": "F1 (the balance of precision and recall) computed for each cell type, then averaged so that a rare "
                "type counts as much as a common one.",
    "median_f1": "The middle value of the per-cell-type F1 scores: half the cell types score above it.",
    "balanced_accuracy": "The share of cells called correctly within each cell type, averaged over the types so "
                         "each type counts equally.",
    "accuracy": "The share of test cells whose predicted type matches the given label (common types dominate it).",
    "ece_after": "Calibration error (ECE): how far the model's stated confidence is from how often it is actually "
                 "right, after calibration; 0 means a cell called with 80% confidence is right 80% of the time.",
    "ece_before": "Calibration error (ECE) before calibration: the gap between stated confidence and how often the "
                  "model is actually right.",
    "ece": "Calibration error (ECE): the gap between the confidence the model states and how often it is actually "
           "right; 0 is perfect.",
    "f1": "F1 of one cell type: the balance of precision (calls of this type that are right) and recall (cells of "
          "this type that are found).",
    "precision": "Of the cells called this type, the share that truly are.",
    "recall": "Of the cells of this type, the share the model calls correctly.",
    "jaccard": "Jaccard index: genes on both top lists divided by genes on either list; 0 means no shared genes, "
               "1 the same genes.",
    "integrated_gradients": "Integrated Gradients credits each gene with its share of the model's decision, by "
                            "following the prediction as the model's input grows from all zeros to the cell's values.",
    "tabnet_mask": "A gene mask lists the genes the model looked at for a cell; it says where the model looked, not "
                   "whether a gene speaks for or against the cell type.",
    "coefficient": "A logistic-regression weight: how much a gene's scaled expression raises the score of the cell "
                   "type (negative weights lower it).",
    "confidence": "The model's calibrated probability for the cell type it called.",
    "unassigned": "Cells whose confidence is below the threshold are left unassigned rather than forced into a type.",
    "n_test": "Cells held out from training and used only to score the run.",
    "has_model": "Whether the run saved a trained model (a run stopped before its first pass has none).",
    "parent": "The run this one was retrained from, on the genes a query shares with it.",
    "class_known": "Whether the run learned this cell type; a marker list for an unknown type cannot be checked.",
    "n_ranked": "How many genes the model ranked for this cell type.",
    "weight": "The member's share in the ensemble's averaged probabilities, picked on the validation cells.",
    "state": "queued, running, finished, failed or cancelled (stopped by you; the best model so far is kept).",
}


def column_label(name: str) -> str:
    """The human name of a table column: the glossary's, else the snake_case name made readable."""
    return COLUMN_LABELS.get(name, name.replace("_", " ").capitalize())


def column_help(name: str) -> str | None:
    """The tooltip of a table column, or None when the name says it all."""
    return METRIC_HELP.get(name)
