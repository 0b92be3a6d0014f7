"""Check a model's predictions against labels a query already carries.

A query often comes with its authors' annotation, at another granularity and in
other words ("CD4 T" where the model says "CD4 T naive" and "CD4 T memory",
"Mononuclear phagocyte" for monocytes and DCs). Before trusting a model on new
data a biologist wants to see where the two agree and where they do not. This
module matches the names (a suggestion the user edits), then counts agreement
overall and per given label, a predicted × given table and the cells that
disagree. No Streamlit, no files: the page and the CLI both call
:func:`suggest_mapping` and :func:`check_labels`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from scapp.data.validate import UNASSIGNED

__all__ = ["IGNORE", "LabelCheck", "check_labels", "default_label_column", "normalize_name", "suggest_mapping"]

IGNORE = "(ignore)"
"""What a given label maps to when its cells should not be compared (e.g. "Unknown", doublets)."""

MISSING = "(missing)"

# Given labels that mean "no type": never matched, their cells are left out of the comparison by default.
_NO_TYPE = {"unknown", "unassigned", "unlabelled", "unlabeled", "na", "nan", "none", "other", "doublet", "doublets",
            "lowquality", "undefined", "unclassified", "notassigned", "ambiguous", "missing"}
# Words that carry no type information in a label name.
_FILLER = {"cell", "cells", "type", "like", "positive", "pos", "and", "of"}
# Broad lineage names a query may use, with the words of the finer model classes they cover. A suggestion only:
# the user sees it in the mapping editor and can change it.
_LINEAGES: dict[str, set[str]] = {
    "myeloid": {"monocyte", "mono", "macrophage", "dc", "cdc", "cdc1", "cdc2", "pdc", "dendritic", "neutrophil",
                "granulocyte", "mast", "basophil", "eosinophil", "mdc", "myeloid"},
    "mononuclearphagocyte": {"monocyte", "mono", "macrophage", "dc", "cdc", "cdc1", "cdc2", "dendritic", "mdc",
                             "phagocyte"},
    "phagocyte": {"monocyte", "mono", "macrophage", "dc", "cdc", "cdc1", "cdc2", "dendritic", "mdc", "neutrophil",
                  "phagocyte"},
    "lymphoid": {"t", "b", "nk", "ilc", "plasma", "lymphocyte", "tcell", "bcell"},
    "lymphocyte": {"t", "b", "nk", "ilc", "plasma", "lymphocyte", "tcell", "bcell"},
}


def normalize_name(name: object) -> str:
    """Lower case with everything but letters and digits removed: "CD4 T", "cd4-t" and "CD4_T" are one name."""
    return re.sub(r"[^0-9a-z]", "", str(name).lower())


def _tokens(name: object) -> frozenset[str]:
    """The words of a label, singular, without filler ("CD14+ Monocytes" → {cd14, monocyte})."""
    out = set()
    for w in re.split(r"[^0-9a-z]+", str(name).lower()):
        if not w or w in _FILLER:
            continue
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        out.add(w)
    return frozenset(out)


def suggest_mapping(given: Iterable[object], classes: Sequence[str]) -> dict[str, list[str]]:
    """For each given label, the model classes that count as agreeing with it (empty: not compared).

    In order of preference: the same name ignoring case, spaces and punctuation; the
    model classes whose words include all the given label's words (a coarser given
    label: "CD4 T" → "CD4 T naive", "CD4 T memory"); the one model class whose words
    are all in the given label's (a finer given label: "CD14 monocytes" → "Monocyte");
    a broad lineage name ("Myeloid", "Mononuclear phagocyte") → the classes of that
    lineage. Names meaning "no type" ("Unknown", "Doublet") and anything unmatched map
    to nothing; the user completes the rest.
    """
    classes = [str(c) for c in classes]
    norm = {c: normalize_name(c) for c in classes}
    toks = {c: _tokens(c) for c in classes}
    out: dict[str, list[str]] = {}
    for g in dict.fromkeys(str(x) for x in given):
        n = normalize_name(g)
        if not n or n in _NO_TYPE:
            out[g] = []
            continue
        same = [c for c in classes if norm[c] == n]
        if same:
            out[g] = same
            continue
        gt = _tokens(g)
        if gt:
            finer = [c for c in classes if gt <= toks[c]]
            if finer:
                out[g] = finer
                continue
            coarser = [c for c in classes if toks[c] and toks[c] <= gt]
            best = max((len(toks[c]) for c in coarser), default=0)
            top = [c for c in coarser if len(toks[c]) == best]
            if len(top) == 1:
                out[g] = top
                continue
        words = _LINEAGES.get(n)
        out[g] = [c for c in classes if words and toks[c] & words] if words else []
    return out


def default_label_column(candidates: Sequence[str], training_label: str | None = None) -> str | None:
    """The query column to check against: the one named like the model's training label, else
    ``cell_type``, else the first candidate (candidates come ranked, label-like names first)."""
    cands = [str(c) for c in candidates]
    if not cands:
        return None
    for want in (training_label, "cell_type"):
        if not want:
            continue
        for c in cands:
            if c == want:
                return c
        for c in cands:
            if normalize_name(c) == normalize_name(want):
                return c
    return cands[0]


@dataclass
class LabelCheck:
    """Predictions against the query's own labels, under a mapping given label → model classes.

    ``cells`` holds one row per cell: ``cell_id``, ``given``, ``predicted`` (a model
    class or "Unassigned"), ``confidence``, ``compared`` (its given label maps to at
    least one class) and ``agrees`` (its prediction is one of them; False where not compared).
    """

    column: str
    classes: list[str]
    mapping: dict[str, list[str]]
    cells: pd.DataFrame
    given_order: list[str] = field(default_factory=list)

    @property
    def n_cells(self) -> int:
        return len(self.cells)

    @property
    def n_compared(self) -> int:
        return int(self.cells["compared"].sum())

    @property
    def n_agree(self) -> int:
        return int(self.cells["agrees"].sum())

    @property
    def agreement(self) -> float:
        """Fraction of the compared cells whose prediction matches (an Unassigned cell does not)."""
        return self.n_agree / self.n_compared if self.n_compared else float("nan")

    @property
    def n_unassigned(self) -> int:
        """Compared cells the model left Unassigned."""
        c = self.cells
        return int((c["compared"] & (c["predicted"] == UNASSIGNED)).sum())

    @property
    def agreement_assigned(self) -> float:
        """Agreement among the compared cells the model did assign a class."""
        n = self.n_compared - self.n_unassigned
        return self.n_agree / n if n else float("nan")

    @property
    def ignored(self) -> list[str]:
        """Given labels whose cells are left out (mapped to no class)."""
        return [g for g in self.given_order if not self.mapping.get(g)]

    def _called_as(self, pred: str) -> str:
        """A prediction in the given labels' words: the given label(s) its class counts as, else the class."""
        if pred == UNASSIGNED:
            return UNASSIGNED
        hits = [g for g in self.given_order if pred in self.mapping.get(g, ())]
        return " / ".join(hits) if hits else pred

    def per_label(self) -> pd.DataFrame:
        """One row per given label: its cells, how many agree and, for the rest, what they were called
        most often (in the given labels' words, so "CD4 T naive" and "CD4 T memory" count as "CD4 T")."""
        rows = []
        c = self.cells
        for g in self.given_order:
            sub = c[c["given"] == g]
            targets = self.mapping.get(g, [])
            row = {"given label": g, "counts as": ", ".join(targets) if targets else IGNORE, "cells": len(sub)}
            if targets:
                agree = int(sub["agrees"].sum())
                wrong = sub.loc[~sub["agrees"], "predicted"].map(self._called_as)
                wrong = wrong[wrong != g]  # another class of the same given label is not a different call
                top = wrong.value_counts()
                row.update({"agree": agree, "agreement": agree / len(sub) if len(sub) else float("nan"),
                            "unassigned": int((sub["predicted"] == UNASSIGNED).sum()),
                            "most often called instead": str(top.index[0]) if len(top) else "",
                            "cells called so": int(top.iloc[0]) if len(top) else 0})
            else:
                top = sub["predicted"].value_counts()
                row.update({"agree": None, "agreement": float("nan"),
                            "unassigned": int((sub["predicted"] == UNASSIGNED).sum()),
                            "most often called instead": str(top.index[0]) if len(top) else "",
                            "cells called so": int(top.iloc[0]) if len(top) else 0})
            rows.append(row)
        df = pd.DataFrame(rows, columns=["given label", "counts as", "cells", "agree", "agreement", "unassigned",
                                         "most often called instead", "cells called so"])
        df["agree"] = df["agree"].astype("Int64")
        return df

    def confusion(self, *, include_ignored: bool = False) -> pd.DataFrame:
        """Cells, predicted class (rows) × given label (columns, largest first).

        Rows are the model's classes in the order of the given labels they count as (so the
        agreeing squares run down the diagonal), then the classes no given label maps to, then
        Unassigned where the model left compared cells unassigned.
        """
        c = self.cells if include_ignored else self.cells[self.cells["compared"]]
        cols = [g for g in self.given_order if include_ignored or self.mapping.get(g)]
        mapped = [k for g in cols for k in self.mapping.get(g, [])]
        rows = list(dict.fromkeys(mapped + list(self.classes))) + [UNASSIGNED]
        tab = pd.crosstab(pd.Categorical(c["predicted"], categories=rows),
                          pd.Categorical(c["given"], categories=cols), dropna=False)
        tab = tab.reindex(index=rows, columns=cols, fill_value=0).astype(np.int64)
        keep = [r for r in rows if r in self.classes or tab.loc[r].sum() > 0]  # Unassigned only when it occurs
        tab = tab.loc[keep]
        tab.index.name, tab.columns.name = "predicted", f"given ({self.column})"
        return tab

    def agreeing_pairs(self) -> list[tuple[str, str]]:
        """(predicted class, given label) pairs that count as agreement: the outlined squares of the heatmap."""
        return [(c, g) for g in self.given_order for c in self.mapping.get(g, [])]

    def cell_status(self) -> np.ndarray:
        """Per cell: "agrees", "differs" or "not compared" (to colour a map by)."""
        c = self.cells
        return np.where(~c["compared"], "not compared", np.where(c["agrees"], "agrees", "differs"))

    def disagreements(self) -> pd.DataFrame:
        """The compared cells whose prediction does not match their given label."""
        c = self.cells
        return c.loc[c["compared"] & ~c["agrees"], ["cell_id", "given", "predicted", "confidence"]].reset_index(
            drop=True).rename(columns={"given": f"given ({self.column})"})

    def summary(self) -> str:
        """One line: agreement and how many cells it is over."""
        if not self.n_compared:
            return f"No cell of '{self.column}' has a given label matched to a model class."
        s = (f"Agreement with '{self.column}': {self.agreement:.1%} ({self.n_agree:,} of {self.n_compared:,} "
             "compared cells")
        if self.n_unassigned:
            s += f"; {self.n_unassigned:,} Unassigned, {self.agreement_assigned:.1%} among the assigned"
        left = self.n_cells - self.n_compared
        if left:
            s += f"; {left:,} cells with labels not compared: {', '.join(self.ignored)}"
        return s + ")"

    def __repr__(self) -> str:
        return f"LabelCheck({self.summary()})"


def _as_mapping(mapping: Mapping[str, object], classes: Sequence[str]) -> dict[str, list[str]]:
    """Accept a class name, a list of names, IGNORE or None per given label; refuse unknown class names."""
    known = set(map(str, classes))
    out: dict[str, list[str]] = {}
    for g, v in mapping.items():
        vals = [] if v is None else [v] if isinstance(v, str) else list(v)
        vals = [str(x) for x in vals if x is not None and str(x) != IGNORE and str(x) != ""]
        bad = [x for x in vals if x not in known]
        if bad:
            msg = (f"The mapping of given label {g!r} names {', '.join(map(repr, bad))}, not a class of the model "
                   f"({', '.join(map(str, classes))}).")
            raise ValueError(msg)
        out[str(g)] = list(dict.fromkeys(vals))
    return out


def check_labels(
    predicted: Sequence[object] | pd.Series,
    given: Sequence[object] | pd.Series,
    classes: Sequence[str],
    *,
    mapping: Mapping[str, object] | None = None,
    cell_ids: Sequence[object] | None = None,
    confidence: Sequence[float] | None = None,
    column: str = "given",
) -> LabelCheck:
    """Compare predicted labels (model classes or "Unassigned") with a query's own labels.

    ``mapping`` (given label → a class, a list of classes, or ``IGNORE``) overrides
    :func:`suggest_mapping` label by label; given labels it leaves out keep the suggestion.
    Cells without a given label are never compared.
    """
    pred = pd.Series(np.asarray(predicted, dtype=object)).astype(str)
    giv_raw = pd.Series(np.asarray(given, dtype=object))
    if len(pred) != len(giv_raw):
        msg = f"{len(pred)} predictions for {len(giv_raw)} given labels."
        raise ValueError(msg)
    missing = giv_raw.isna().to_numpy()
    giv = giv_raw.astype(str).where(~missing, MISSING)
    classes = [str(c) for c in classes]
    # given labels largest first (as a biologist reads a table); (missing) last
    counts = giv[~missing].value_counts(sort=True)
    order = [str(g) for g in counts.index] + ([MISSING] if missing.any() else [])
    full = suggest_mapping([g for g in order if g != MISSING], classes)
    if mapping:
        full.update(_as_mapping({k: v for k, v in mapping.items() if str(k) in full}, classes))
    if missing.any():
        full[MISSING] = []  # a cell without a given label is never compared
    targets = giv.map(lambda g: frozenset(full.get(g, ())))
    compared = targets.map(bool).to_numpy(dtype=bool)
    agrees = np.array([p in t for p, t in zip(pred, targets)], dtype=bool)
    cells = pd.DataFrame({
        "cell_id": np.asarray(cell_ids).astype(str) if cell_ids is not None else np.arange(len(pred)).astype(str),
        "given": giv.to_numpy(), "predicted": pred.to_numpy(),
        "confidence": np.asarray(confidence, dtype=np.float64) if confidence is not None else np.nan,
        "compared": compared, "agrees": agrees & compared,
    })
    return LabelCheck(column=column, classes=classes, mapping=full, cells=cells, given_order=order)
