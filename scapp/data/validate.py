"""Checks that turn bad input into one clear sentence before any work starts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from scapp.errors import InputError, InputKindError, LabelError

UNASSIGNED = "Unassigned"


def get_matrix(adata: ad.AnnData, layer: str | None = None) -> Any:
    """``.X``, a named layer, or ``"raw"`` for ``adata.raw.X`` (same genes required)."""
    if layer in (None, "", "X"):
        X = adata.X
    elif layer == "raw":
        if adata.raw is None:
            msg = "This file has no .raw matrix; leave the layer empty to use .X."
            raise InputError(msg)
        if list(adata.raw.var_names) != list(adata.var_names):
            msg = ".raw has different genes from .X; save the raw counts as a layer or in .X instead."
            raise InputError(msg)
        X = adata.raw.X
    elif layer in adata.layers:
        X = adata.layers[layer]
    else:
        avail = ", ".join(["X", *adata.layers.keys()] + (["raw"] if adata.raw is not None else []))
        msg = f"Layer {layer!r} is not in this file; available: {avail}."
        raise InputError(msg)
    if X is None:
        msg = "The file holds no expression matrix (.X is empty)."
        raise InputError(msg)
    return X


def _values(X: Any) -> np.ndarray:
    return X.data if sp.issparse(X) else np.asarray(X).ravel()


def check_counts(X: Any, *, what: str = "the data", layer_hint: bool = True) -> None:
    """Refuse anything that is not raw non-negative counts, saying what it looks like instead."""
    from scapp.data.qc import detect_input_kind

    if X.shape[0] == 0 or X.shape[1] == 0:
        msg = f"{what} has {X.shape[0]} cells × {X.shape[1]} genes; nothing to work on."
        raise InputError(msg)
    v = _values(X)
    if v.size and not np.isfinite(v).all():
        n_bad = int((~np.isfinite(v)).sum())
        msg = (f"{what} contains {n_bad:,} NaN or infinite values; scapp needs finite counts. "
               "Replace them (e.g. with 0) or re-export the raw counts.")
        raise InputKindError(msg)
    if v.size and (v < 0).any():
        msg = (f"{what} contains {int((v < 0).sum()):,} negative values, so it looks scaled or batch-corrected, "
               "not raw counts. Use the raw count matrix (a counts layer or .raw" + (", via --layer" if layer_hint else "") + ").")
        raise InputKindError(msg)
    kind, reason = detect_input_kind(X)
    if kind != "counts":
        hint = " Pick a layer that holds raw counts (--layer, or .raw)" if layer_hint else ""
        msg = f"{what} does not look like raw counts: {reason}. scapp normalizes counts itself.{hint}"
        raise InputKindError(msg)


def check_genes(var_names: pd.Index, *, what: str = "the data") -> None:
    dup = var_names[var_names.duplicated()]
    if len(dup):
        ex = ", ".join(map(str, pd.unique(dup)[:5]))
        msg = (f"{what} has {len(dup):,} duplicated gene names (e.g. {ex}). Make them unique "
               "(adata.var_names_make_unique()) or sum the duplicates, then try again.")
        raise InputError(msg)


def empty_cells(X: Any) -> np.ndarray:
    totals = np.asarray(X.sum(axis=1)).ravel()
    return totals <= 0


def check_empty_cells(X: Any, *, what: str = "the data", drop: bool = False) -> np.ndarray:
    """Mask of cells to keep; all-zero cells are refused unless ``drop`` is asked for."""
    empty = empty_cells(X)
    if empty.all():
        msg = f"Every cell in {what} has zero counts; check that the right matrix or layer was chosen."
        raise InputError(msg)
    if empty.any() and not drop:
        msg = (f"{int(empty.sum()):,} cells in {what} have zero counts in every gene. Remove them "
               "(sc.pp.filter_cells(adata, min_counts=1)) or pass --drop-empty-cells.")
        raise InputError(msg)
    return ~empty


def get_labels(adata: ad.AnnData, column: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Integer codes, class names (sorted) and a mask of cells that have a label.

    Labels are used only as values, never as file names, so any character
    (``/``, spaces, unicode) is fine.
    """
    if column not in adata.obs.columns:
        from scapp.data.qc import label_candidates

        cands = list(label_candidates(adata))
        hint = f" Columns that look like labels: {', '.join(cands[:8])}." if cands else " The file has no obs column that looks like labels."
        msg = f"Label column {column!r} is not in the file's obs.{hint}"
        raise LabelError(msg)
    s = adata.obs[column]
    has = s.notna().to_numpy()
    vals = s.astype(str).to_numpy()
    has &= ~np.isin(vals, ["", "nan", "NaN", "None"])
    if has.sum() == 0:
        msg = f"Label column {column!r} is empty."
        raise LabelError(msg)
    classes = sorted(pd.unique(vals[has]).tolist())
    if len(classes) < 2:
        msg = f"Label column {column!r} has a single class ({classes[0]!r}); a classifier needs at least two."
        raise LabelError(msg)
    if len(classes) > 50 and len(classes) > 0.5 * has.sum():
        msg = (f"Label column {column!r} has {len(classes):,} different values for {int(has.sum()):,} cells; "
               "it looks like a per-cell value, not cell types. Pick the column with the cell-type labels.")
        raise LabelError(msg)
    if UNASSIGNED in classes:
        msg = f"Label column {column!r} uses the reserved class name {UNASSIGNED!r}; rename it (e.g. 'unlabelled')."
        raise LabelError(msg)
    lookup = {c: i for i, c in enumerate(classes)}
    codes = np.full(len(vals), -1, dtype=np.int64)
    codes[has] = pd.Series(vals[has]).map(lookup).to_numpy()
    return codes, classes, has


MIN_CELLS = 20
"""Fewest cells a run trains on (labelled cells, for a classifier): fewer leave nothing to hold out for validation
and test, and the scores of a run would be empty (a two-cell file once "finished" with macro-F1 NaN)."""
MIN_CLASS_CELLS = 3
"""Fewest cells of a class for it to be scored: one each for training, validation and test
(``scapp.data.split``). Smaller classes are trained on but not scored, unless ``min_cells_per_class`` leaves them
out."""
MIN_SCORED_CLASSES = 2
"""Fewest classes with ``MIN_CLASS_CELLS`` cells: validation and test need two classes to mean anything."""


@dataclass
class CellCheck:
    """What :func:`check_training_cells` decided: notes for the run, and, when classes were left out, which cells
    stay (``keep``), their new class codes (``codes``, -1 unlabelled) and the classes that remain."""

    notes: list[str]
    dropped: dict[str, int] | None = None
    keep: np.ndarray | None = None
    codes: np.ndarray | None = None
    classes: list[str] | None = None


def _listing(counts: dict[str, int], limit: int = 8) -> str:
    items = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]))
    text = ", ".join(f"{c} ({n})" for c, n in items[:limit])
    return text + (f" and {len(items) - limit} more" if len(items) > limit else "")


def check_training_cells(codes: np.ndarray, classes: list[str], *, valid_frac: float, test_frac: float,
                         min_cells_per_class: int = 0, classifies: bool = True,
                         needs_labels: bool = True) -> CellCheck:
    """Refuse a training set too small to train and score, before any run folder exists; leave out the classes
    under ``min_cells_per_class`` when asked.

    ``codes``: class code of each cell the run would train on (-1: unlabelled). The minimums:

    * at least ``MIN_CELLS`` cells (labelled cells, for a classifier);
    * for a classifier with a validation and a test share: at least ``MIN_SCORED_CLASSES`` classes with
      ``MIN_CLASS_CELLS`` cells or more each, so validation and test hold cells of two classes. Smaller classes are
      kept in training but not scored (a note says which), or left out with ``min_cells_per_class``.

    Raises ``LabelError`` (or ``InputError`` for too few cells) naming the classes and what to do.
    """
    codes = np.asarray(codes)
    notes: list[str] = []
    out = CellCheck(notes=notes)
    counts = {classes[c]: int(n) for c, n in zip(*np.unique(codes[codes >= 0], return_counts=True))}
    if min_cells_per_class > 0 and classifies and counts:
        small = {c: n for c, n in counts.items() if n < min_cells_per_class}
        if small:
            kept = [c for c in classes if c in counts and c not in small]
            if len(kept) < 2:
                msg = (f"Leaving out the classes with fewer than {min_cells_per_class} cells would leave "
                       f"{len(kept)} class{'' if len(kept) == 1 else 'es'} ({', '.join(kept) or 'none'}); a "
                       f"classifier needs at least two. Lower the minimum (now {min_cells_per_class} cells per "
                       "class) or label more cells.")
                raise LabelError(msg)
            remap = np.full(len(classes) + 1, -1, dtype=np.int64)
            for i, c in enumerate(kept):
                remap[classes.index(c)] = i
            new = np.where(codes >= 0, remap[np.where(codes >= 0, codes, len(classes))], -1)
            keep = (new >= 0) | (codes < 0) if not needs_labels else new >= 0
            n_out = int(((codes >= 0) & (new < 0)).sum())
            what = "left out" if needs_labels else "used for training without their label"
            notes.append(f"{len(small)} class{'' if len(small) == 1 else 'es'} with fewer than {min_cells_per_class} "
                         f"cells {'was' if len(small) == 1 else 'were'} {what} ({n_out:,} cells; minimum "
                         f"{min_cells_per_class} cells per class): {_listing(small)}.")
            out = CellCheck(notes=notes, dropped=small, keep=keep, codes=new, classes=kept)
            codes = new[keep]
            counts = {c: n for c, n in counts.items() if c not in small}
    n = int((codes >= 0).sum()) if (classifies and needs_labels) else int(codes.size)
    if n < MIN_CELLS:
        what = "labelled cells" if (classifies and needs_labels) else "cells"
        msg = (f"Only {n:,} {what} to train on; scapp needs at least {MIN_CELLS} so that some can be held out to "
               "validate and test the model. Use a file with more cells"
               + (" (or label more of them)." if classifies else "."))
        raise InputError(msg)
    if classifies and valid_frac > 0 and test_frac > 0:
        big = [c for c, k in counts.items() if k >= MIN_CLASS_CELLS]
        if len(big) < MIN_SCORED_CLASSES:
            small = {c: k for c, k in counts.items() if k < MIN_CLASS_CELLS}
            msg = (f"Only {len(big)} of the {len(counts)} classes {'has' if len(big) == 1 else 'have'} the "
                   f"{MIN_CLASS_CELLS} cells a class needs to be validated and tested (one each for training, "
                   f"validation and test); too few: {_listing(small)}. Label more cells of these classes, merge "
                   "them into related classes, or choose a coarser label column.")
            raise LabelError(msg)
    return out
