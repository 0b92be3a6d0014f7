"""What each kind of explanation means, in words the Explore page shows beside it.

Keyed by a method's declared ``Capabilities.explain_kind`` (never by the method's
name): a TabNet mask, an Integrated-Gradients attribution and a regression
coefficient answer different questions, and a reader who takes one for another
draws the wrong biology (a mask carries no sign, so "the model looked at NKG7 in
this B cell" is not "NKG7 marks B cells").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExplainKind:
    """How to read one kind of per-class and per-cell gene score."""

    meaning: str
    """One line: what a score says and what it does not."""
    class_title: str
    """Title of the classes × genes heatmap."""
    class_value: str
    """Colour-bar title of that heatmap."""
    cell_value: str
    """Axis title of one cell's scores."""
    cell_title: str
    """Title of one cell's chart."""
    cell_note: str
    """One line under a cell's chart."""


KINDS: dict[str, ExplainKind] = {
    "tabnet_mask": ExplainKind(
        meaning=("A mask shows the genes the model **looked at** to make its call — not evidence **for** the class. "
                 "Masks carry no sign: a gene is often looked at because it is *absent* (a T-cell or NK gene "
                 "checked in a B cell), so read each gene beside its expression. The cell-type heatmap counts "
                 "a gene's mask only in cells that **express** it, so a gene checked for its absence does not "
                 "head the list of a type that never expresses it."),
        class_title="Genes each cell type looked at, counted in the cells that express them",
        class_value="mask where<br>expressed, relative<br>to the gene's<br>top class",
        cell_value="share of the cell's mask",
        cell_title="Genes this cell's prediction looked at",
        cell_note=("Left: the share of this cell's attention each gene got (only genes it looked at). Right: the "
                   "cell's expression of the same genes, log(1 + counts per 10k); 0 means the gene was looked at "
                   "and found silent."),
    ),
    "integrated_gradients": ExplainKind(
        meaning=("Integrated Gradients: how much each gene moved the prediction towards the class (positive) or "
                 "away from it (negative), relative to a cell with no expression."),
        class_title="Genes that move each cell type's predictions",
        class_value="attribution",
        cell_value="attribution",
        cell_title="Genes behind this cell's prediction",
        cell_note="Right: the cell's expression of the same genes, log(1 + counts per 10k).",
    ),
    "coefficient": ExplainKind(
        meaning=("Regression weights: positive genes raise the class's score when expressed, negative genes "
                 "lower it."),
        class_title="Marker weights per cell type",
        class_value="weight",
        cell_value="weight × expression",
        cell_title="Genes behind this cell's prediction",
        cell_note="Right: the cell's expression of the same genes, log(1 + counts per 10k).",
    ),
}

_DEFAULT = ExplainKind(meaning="", class_title="Genes the model relies on, per class", class_value="score",
                       cell_value="score", cell_title="Genes behind this cell's prediction",
                       cell_note="Right: the cell's expression of the same genes, log(1 + counts per 10k).")


def describe(kind: str | None) -> ExplainKind:
    """The reading of ``kind`` (a ``Capabilities.explain_kind``); a neutral one for an unknown kind."""
    return KINDS.get(kind or "", _DEFAULT)
