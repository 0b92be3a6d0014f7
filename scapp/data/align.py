"""Align a query's genes to a model's gene order before normalization (methods.md §0).

Missing genes become zero counts, extra genes are dropped, and the overlap is
reported so a user sees *before* predicting whether the model can be trusted on
this query. Ensembl IDs with or without version suffixes, symbols, and (when
unambiguous) case differences are matched.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from scapp.errors import GeneOverlapError

_VERSION = re.compile(r"^(ENS[A-Z]*[GT]\d+)\.\d+$")
# var columns that often hold the other identifier (symbols when var_names are IDs, or the reverse)
ID_COLUMNS = ("gene_ids", "gene_id", "ensembl_id", "feature_id", "gene_symbols", "gene_symbol", "feature_name", "gene_name", "symbol")


def strip_version(name: str) -> str:
    """``ENSG00000141510.17`` → ``ENSG00000141510``; other names unchanged."""
    m = _VERSION.match(name)
    return m.group(1) if m else name


@dataclass
class GeneOverlap:
    """What a query shares with a model; shown before predicting."""

    n_model_genes: int
    n_query_genes: int
    n_shared: int
    frac_shared: float
    matched_on: str
    n_case_insensitive: int = 0
    missing_important: list[str] = field(default_factory=list)
    n_important_checked: int = 0
    ok: bool = True
    reason: str = ""
    min_frac: float = 0.5
    min_shared: int = 250

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        s = f"{self.n_shared:,} of the model's {self.n_model_genes:,} genes found in the query ({self.frac_shared:.1%})"
        if self.n_important_checked:
            s += f"; {len(self.missing_important)} of its top {self.n_important_checked} genes missing"
        n_zero = self.n_model_genes - self.n_shared
        if n_zero > 0:
            s += (f"; the other {n_zero:,} {'gene is' if n_zero == 1 else 'genes are'} filled with zeros "
                  "for every query cell")
        return s


def _match(model: Sequence[str], query: Sequence[str]) -> tuple[np.ndarray, int]:
    """For each model gene, the query column index or -1; plus the case-insensitive match count."""
    qnames = [strip_version(str(g)) for g in query]
    pos: dict[str, int] = {}
    dup: set[str] = set()
    for i, g in enumerate(qnames):
        if g in pos:
            dup.add(g)
        else:
            pos[g] = i
    idx = np.array([pos.get(strip_version(str(g)), -1) for g in model], dtype=np.int64)
    # Case-insensitive only where both sides are unambiguous.
    lower: dict[str, int] = {}
    clash: set[str] = set()
    for i, g in enumerate(qnames):
        k = g.lower()
        if k in lower:
            clash.add(k)
        lower[k] = i
    model_lower = pd.Series([strip_version(str(g)).lower() for g in model])
    model_clash = set(model_lower[model_lower.duplicated()])
    used = set(idx[idx >= 0].tolist())
    n_ci = 0
    for j in np.flatnonzero(idx < 0):
        k = model_lower[j]
        if k in lower and k not in clash and k not in model_clash and lower[k] not in used:
            idx[j] = lower[k]
            used.add(lower[k])
            n_ci += 1
    dup_hit = [g for g in dup if g in set(strip_version(str(m)) for m in model)]
    if dup_hit:
        msg = (
            f"The query has duplicated gene names that the model uses ({', '.join(sorted(dup_hit)[:5])}); "
            "make them unique or sum the duplicates before annotating."
        )
        raise GeneOverlapError(msg)
    return idx, n_ci


def match_genes(var: pd.DataFrame, model_genes: Sequence[str]) -> tuple[np.ndarray, str, int]:
    """For each of ``model_genes``, the query column (row of ``var``) that holds it, or -1.

    Tries the query's ``var_names`` and any identifier columns in ``var`` (``gene_ids``,
    ``feature_name``, ...) and keeps whichever matches most. Returns the indices, the name of the
    source that matched (``"var_names"`` or the column) and how many matched only case-insensitively.
    """
    candidates = {"var_names": [str(v) for v in var.index]}
    for col in ID_COLUMNS:
        if col in var.columns:
            candidates[col] = var[col].astype(str).tolist()
    best: tuple[int, str, np.ndarray, int] | None = None
    for name, names in candidates.items():
        idx, n_ci = _match(model_genes, names)
        n = int((idx >= 0).sum())
        if best is None or n > best[0]:
            best = (n, name, idx, n_ci)
    assert best is not None
    return best[2], best[1], best[3]


def shared_genes(var: pd.DataFrame, model_genes: Sequence[str]) -> list[str]:
    """The ``model_genes`` a query (its ``var``) has, matched as annotation matches them, in their own order
    and spelling (not the query's)."""
    idx, _, _ = match_genes(var, model_genes)
    return [str(g) for g, i in zip(model_genes, idx) if i >= 0]


def align_genes(
    X: Any,
    var: pd.DataFrame,
    model_genes: Sequence[str],
    *,
    important_genes: Sequence[str] = (),
    min_frac: float = 0.5,
    min_shared: int = 250,
    raise_on_low: bool = True,
) -> tuple[sp.csr_matrix, GeneOverlap]:
    """Reindex query counts (cells × query genes) to ``model_genes``.

    Tries the query's ``var_names`` and any identifier columns in ``var``
    (``gene_ids``, ``feature_name``, ...) and keeps whichever matches most.

    Returns
    -------
    counts as CSR float32, cells × len(model_genes), and the overlap report.

    Raises
    ------
    GeneOverlapError
        If fewer than ``min_shared`` genes or ``min_frac`` of the model's genes are shared
        (unless ``raise_on_low`` is False, then ``report.ok`` is False).
    """
    idx, matched_on, n_ci = match_genes(var, model_genes)
    n_shared = int((idx >= 0).sum())
    n_model = len(model_genes)
    frac = n_shared / max(n_model, 1)
    important = list(important_genes)
    imp_pos = {g: j for j, g in enumerate(model_genes)}
    missing = [g for g in important if g in imp_pos and idx[imp_pos[g]] < 0]
    report = GeneOverlap(
        n_model_genes=n_model,
        n_query_genes=len(var),
        n_shared=n_shared,
        frac_shared=frac,
        matched_on=matched_on,
        n_case_insensitive=n_ci,
        missing_important=missing,
        n_important_checked=len(important),
        min_frac=min_frac,
        min_shared=min_shared,
    )
    need = min(min_shared, n_model)
    if n_shared < need or frac < min_frac:
        report.ok = False
        report.reason = (
            f"Only {n_shared:,} of the model's {n_model:,} genes ({frac:.0%}) are in the query; "
            f"at least {need:,} genes and {min_frac:.0%} are needed. Check that the query uses the same "
            "species and gene identifiers (symbols vs Ensembl IDs) as the training data."
        )
        if raise_on_low:
            raise GeneOverlapError(report.reason)
    Xq = sp.csr_matrix(X, dtype=np.float32) if sp.issparse(X) else sp.csr_matrix(np.asarray(X, dtype=np.float32))
    hit = np.flatnonzero(idx >= 0)
    # Selection matrix query genes × model genes: one sparse product, no per-cell work.
    S = sp.csr_matrix((np.ones(hit.size, dtype=np.float32), (idx[hit], hit)), shape=(Xq.shape[1], n_model))
    out = (Xq @ S).tocsr()
    out.sort_indices()
    return out, report
