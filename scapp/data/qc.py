"""Quality summary of an input matrix, and what kind of values it holds.

Before anything is trained or annotated the user needs to know whether ``.X``
holds raw counts (what the count models need), log-normalized or scaled
values, and whether anything is odd (NaN, empty cells, duplicated genes). The
summary is computed with vectorized numpy on the sparse structure, so a
1M-cell CSR matrix is summarised in seconds without densifying it.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

import anndata
import numpy as np
import pandas as pd
from scipy import sparse

from scapp.errors import InputError

__all__ = ["MitoQC", "QCSummary", "detect_input_kind", "gene_subset_note", "label_candidates", "mito_percent",
           "qc_summary"]

INPUT_KINDS = ("counts", "lognorm", "scaled", "normalized", "invalid")

_SAMPLE_VALUES = 1_000_000  # non-zero values checked for being whole numbers
_SAMPLE_ROWS = 2_000  # cells used for the row-sum checks
_LOG_MAX = 30.0  # log1p(1e6 * ...) stays well below this; raw CPM/TPM do not
_CONST_CV = 1e-3  # row sums "constant" below this coefficient of variation
_ENSEMBL_RE = re.compile(r"^ENS[A-Z]*G\d{5,}(?:\.\d+)?$")
_QUANTILES = {"min": 0.0, "q05": 0.05, "q25": 0.25, "median": 0.5, "q75": 0.75, "q95": 0.95, "max": 1.0}
SUBSET_GENES = 5_000
"""Fewer genes than this: the file is most likely a gene selection (variable genes, a panel), not a transcriptome."""
_MITO_PREFIX = "MT-"  # human MT-ND1…, mouse mt-Nd1…: compared case-insensitively
# per-cell mitochondrial percentages that pipelines store in obs (Seurat, scanpy's calculate_qc_metrics, scater)
_MITO_PERCENT_COLUMNS = ("percent.mt", "percent_mt", "pct_counts_mt", "percent.mito", "pct_counts_mito",
                         "subsets_Mito_percent", "percent_mito", "pct_mito", "mito_percent", "frac_mito",
                         "fraction_mito")
_SYMBOL_COLUMNS = ("gene_symbols", "gene_symbol", "gene_name", "gene_names", "feature_name", "symbol", "symbols")
_TOTAL_COUNT_COLUMNS = ("nCount_RNA", "total_counts", "n_counts", "nUMI", "nCount")


@dataclass
class QCSummary:
    """What the input matrix looks like, for the user and for guards downstream.

    Everything is plain Python (or a dict/list of it) so that :meth:`to_dict`
    can be written to JSON as it is and shown in the app.
    """

    n_cells: int
    n_genes: int
    sparsity: float  # fraction of zero entries
    counts_per_cell: dict[str, float]  # min, q05, q25, median, q75, q95, max
    genes_per_cell: dict[str, float]
    input_kind: str  # "counts" | "lognorm" | "scaled" | "normalized" | "invalid"
    input_kind_reason: str
    has_nan: bool
    has_inf: bool
    n_negative: int
    n_empty_cells: int  # cells with no non-zero value
    n_duplicate_genes: int  # names that repeat an earlier one
    duplicate_genes_example: list[str]
    gene_id_kind: str  # "symbol" | "ensembl" | "mixed"
    label_candidates: dict[str, dict[str, int]]
    layers: list[str]
    obsm: list[str]
    has_raw: bool
    read_info: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    pct_mito: dict[str, float] | None = None
    """Quantiles of the % of each cell's counts from mitochondrial genes; None when it cannot be known."""
    mito_note: str = ""
    """Where the % mitochondrial counts come from (the genes found, or the file's own column), or why there is none."""
    gene_subset_note: str = ""
    """One line when the file looks like a gene selection rather than a whole transcriptome, else ""."""

    def to_dict(self) -> dict:
        """Plain JSON-ready dict (non-finite floats become None)."""
        return _jsonable(asdict(self))


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if obj is None or isinstance(obj, str):
        return obj
    return str(obj)


# --------------------------------------------------------------------------- matrix access


def _values(X) -> tuple[np.ndarray, int, int]:
    """The stored values (sparse ``.data`` or the flattened dense array) and the shape."""
    if sparse.issparse(X):
        if X.format not in ("csr", "csc"):
            X = X.tocsr()
        return np.asarray(X.data), X.shape[0], X.shape[1]
    A = np.asarray(X)
    if A.ndim != 2:
        raise InputError(f"Expected a 2-D cells × genes matrix, got {A.ndim} dimensions.")
    return A.reshape(-1), A.shape[0], A.shape[1]


def _row_stats(X) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell total and number of non-zero genes, without densifying sparse input."""
    if sparse.issparse(X):
        if X.format not in ("csr", "csc"):
            X = X.tocsr()
        totals = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
        data = X.data
        explicit_zeros = data.size and np.count_nonzero(data) != data.size
        if X.format == "csr":
            if explicit_zeros:
                cs = np.concatenate([[0], np.cumsum(data != 0, dtype=np.int64)])
                nnz = cs[X.indptr[1:]] - cs[X.indptr[:-1]]
            else:
                nnz = np.diff(X.indptr)
        else:
            idx = X.indices[data != 0] if explicit_zeros else X.indices
            nnz = np.bincount(idx, minlength=X.shape[0])
        return totals, np.asarray(nnz, dtype=np.int64)
    A = np.asarray(X)
    return A.sum(axis=1, dtype=np.float64), np.count_nonzero(A, axis=1).astype(np.int64)


def _sample_rows(X, n: int):
    idx = np.unique(np.linspace(0, X.shape[0] - 1, min(n, X.shape[0])).astype(np.int64))
    if sparse.issparse(X):
        if X.format != "csr":
            X = X.tocsr()
        return X[idx]
    return np.asarray(X)[idx]


def _fmt(x: float) -> str:
    if x == int(x) and abs(x) < 1e15:
        return f"{int(x):,}"
    return f"{x:,.3g}" if abs(x) >= 1000 else f"{x:.3g}"


def _n(k: int, one: str, many: str) -> str:
    return f"{k:,} {one if k == 1 else many}"


def _cv(v: np.ndarray) -> float:
    v = v[v > 0]
    if v.size < 2:
        return float("inf")
    return float(v.std() / v.mean())


# --------------------------------------------------------------------------- public


def detect_input_kind(X) -> tuple[str, str]:
    """Classify the values of a cells × genes matrix, with a reason a biologist can read.

    Count models (ZiPo, Hydra's count decoder) are only valid on raw counts,
    and every classifier applies ``normalize_total`` + ``log1p`` itself, so
    the kind decides what may be trained and whether the user must pick a
    different layer.

    Returns
    -------
    kind
        ``"invalid"`` (NaN/inf, empty), ``"scaled"`` (negative values),
        ``"counts"`` (all non-zero values whole numbers), ``"lognorm"``
        (fractional, max ≤ 30, log-like), ``"normalized"`` (fractional and
        non-negative otherwise, e.g. CPM or ambient-corrected counts).
    reason
        One sentence saying why.
    """
    data, n_rows, n_cols = _values(X)
    if n_rows == 0 or n_cols == 0:
        return "invalid", f"the matrix is empty ({n_rows} cells × {n_cols} genes)"
    if data.size == 0:
        return "invalid", "the matrix has no non-zero values"
    finite = np.isfinite(data)
    if not finite.all():
        n_nan = int(np.isnan(data).sum())
        n_inf = int(data.size - finite.sum()) - n_nan
        parts = [f"{n_nan:,} values are NaN (not a number)"] if n_nan else []
        parts += [f"{n_inf:,} values are infinite"] if n_inf else []
        return "invalid", " and ".join(parts) + "; fix or remove them before anything else"
    del finite
    mn, mx = float(data.min()), float(data.max())
    if mn < 0:
        n_neg = int(np.count_nonzero(data < 0))
        total = n_rows * n_cols
        return "scaled", (
            f"{n_neg:,} values ({n_neg / total:.1%} of the matrix) are negative (min {mn:.3g}, "
            f"max {mx:.3g}): the data look centred/scaled per gene (e.g. sc.pp.scale), not counts"
        )
    if mx == 0:
        return "invalid", "all values are zero"

    # Whole-number check on a reproducible sample of the non-zero values.
    if data.size > _SAMPLE_VALUES:
        rng = np.random.default_rng(0)
        v = data[rng.integers(0, data.size, size=_SAMPLE_VALUES * (1 if sparse.issparse(X) else 10))]
        v = v[v != 0][:_SAMPLE_VALUES]
    else:
        v = data[data != 0]
    if v.size == 0:  # dense and extremely sparse: fall back to all non-zeros
        v = data[data != 0][:_SAMPLE_VALUES]
    frac_int = float(np.mean(v == np.round(v)))
    sampled = f" (checked {v.size:,} non-zero values)" if v.size >= _SAMPLE_VALUES else ""
    if frac_int == 1.0:
        return "counts", (
            f"all non-zero values are whole numbers ≥ 0 (max {_fmt(mx)}){sampled}: these look "
            "like raw counts"
        )

    rows = _sample_rows(X, _SAMPLE_ROWS)
    if sparse.issparse(rows):
        rows = rows.astype(np.float64)
        raw_sums = np.asarray(rows.sum(axis=1)).ravel()
    else:
        rows = np.asarray(rows, dtype=np.float64)
        raw_sums = rows.sum(axis=1)
    cv_raw, cv_exp = _cv(raw_sums), float("inf")
    if mx <= _LOG_MAX:  # undo log1p only where it cannot overflow
        if sparse.issparse(rows):
            rows.data = np.expm1(rows.data)
            exp_sums = np.asarray(rows.sum(axis=1)).ravel()
        else:
            exp_sums = np.expm1(rows).sum(axis=1)
        cv_exp = _cv(exp_sums)
    if cv_raw < _CONST_CV:
        target = float(np.median(raw_sums[raw_sums > 0]))
        return "normalized", (
            f"values are fractional and every cell sums to the same total (~{_fmt(round(target, 3))}): "
            "normalized per cell (e.g. normalize_total or CPM) but not log-transformed"
        )
    if mx <= _LOG_MAX and cv_exp < _CONST_CV:
        target = float(np.median(exp_sums[exp_sums > 0]))
        return "lognorm", (
            f"values are fractional (max {mx:.3g}) and undoing log1p gives every cell the same "
            f"total (~{_fmt(round(target))}): log-normalized (normalize_total + log1p)"
        )
    if frac_int >= 0.5:
        return "normalized", (
            f"{frac_int:.0%} of non-zero values are whole numbers but the rest are not (max "
            f"{_fmt(mx)}): these look like corrected counts (e.g. ambient RNA removed), not raw counts"
        )
    if mx <= _LOG_MAX:
        share = f"only {frac_int:.0%}" if frac_int >= 0.01 else "almost no"
        return "lognorm", (
            f"values are fractional and small (max {mx:.3g}; {share} whole numbers): "
            "they look log-transformed (e.g. log1p of normalized counts)"
        )
    return "normalized", (
        f"values are fractional and non-negative with a large maximum ({_fmt(mx)}): they look "
        "normalized (e.g. CPM/TPM) but not log-transformed, and are not raw counts"
    )


def _label_rank(name: str) -> int:
    n = re.sub(r"[^a-z0-9]", "", name.lower())
    if n in ("celltype", "celltypes"):
        return 0
    if "celltype" in n:
        return 1
    if any(w in n for w in ("label", "annotation", "annot")):
        return 2
    return 3


def label_candidates(adata: anndata.AnnData, *, max_classes: int = 200) -> dict[str, dict[str, int]]:
    """Obs columns that could serve as the training label, with their class counts.

    Offered to the user as the label dropdown: categorical/text/bool columns
    and low-cardinality integer columns (cluster ids) with 2..``max_classes``
    classes that are not (nearly) one value per cell. Columns named like
    ``cell_type``/``label``/``annotation`` come first; classes are largest first.
    """
    obs = adata.obs
    found: list[tuple[int, int, str, dict[str, int]]] = []
    for pos, col in enumerate(obs.columns):
        s = obs[col]
        dt = s.dtype
        is_int = pd.api.types.is_integer_dtype(dt) and not pd.api.types.is_bool_dtype(dt)
        if not (
            isinstance(dt, pd.CategoricalDtype)
            or pd.api.types.is_object_dtype(dt)
            or pd.api.types.is_string_dtype(dt)
            or pd.api.types.is_bool_dtype(dt)
            or is_int
        ):
            continue
        s = s.dropna()
        if s.empty:
            continue
        counts = s.value_counts(sort=True)
        counts = counts[counts > 0]
        k = len(counts)
        limit = min(max_classes, 100) if is_int else max_classes
        if k < 2 or k > limit:
            continue
        if k > 0.5 * len(s):  # (nearly) one value per cell: an id, not a label
            continue
        found.append((_label_rank(str(col)), pos, str(col), {str(c): int(n) for c, n in counts.items()}))
    found.sort(key=lambda t: (t[0], t[1]))
    return {col: counts for _, _, col, counts in found}


def _quantiles(v: np.ndarray) -> dict[str, float]:
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {k: float("nan") for k in _QUANTILES}
    q = np.quantile(v, list(_QUANTILES.values()))
    return {k: float(x) for k, x in zip(_QUANTILES, q)}


def _gene_id_kind(names: pd.Index) -> str:
    s = pd.Series(names.astype(str))
    if s.empty:
        return "symbol"
    frac = float(s.str.match(_ENSEMBL_RE).mean())
    if frac >= 0.95:
        return "ensembl"
    if frac <= 0.05:
        return "symbol"
    return "mixed"


@dataclass
class MitoQC:
    """% of each cell's counts that come from mitochondrial genes, and where the numbers come from.

    A high share (often above 10-20 %) marks damaged or dying cells whose cytoplasmic RNA leaked out: the QC
    number a biologist looks for beside depth and detected genes.
    """

    pct: np.ndarray
    """One value per cell, 0-100 (NaN for a cell without counts)."""
    genes: list[str]
    """The mitochondrial genes found in the matrix (empty when the file's own column is used)."""
    source: str
    """``"genes"`` (computed from the matrix) or the obs column it was read from."""
    note: str
    """One line for the user: where the numbers come from and how far to trust them."""


def _gene_symbols(adata: anndata.AnnData) -> pd.Index:
    """Gene symbols: the var names, or a var column of symbols when the names are Ensembl IDs."""
    names = adata.var_names.astype(str)
    if _gene_id_kind(adata.var_names) == "symbol":
        return names
    for col in _SYMBOL_COLUMNS:
        if col in adata.var.columns:
            return pd.Index(adata.var[col].astype(str))
    return names


def _mito_mask(symbols: pd.Index) -> np.ndarray:
    return np.asarray(pd.Series(symbols).str.upper().str.startswith(_MITO_PREFIX), dtype=bool)


def _mito_column(adata: anndata.AnnData) -> tuple[str, np.ndarray] | None:
    """A per-cell mitochondrial percentage the file already carries, as percent; None when there is none."""
    for col in _MITO_PERCENT_COLUMNS:
        if col not in adata.obs.columns or not pd.api.types.is_numeric_dtype(adata.obs[col]):
            continue
        v = adata.obs[col].to_numpy(dtype=np.float64)
        finite = v[np.isfinite(v)]
        if finite.size == 0 or finite.min() < 0 or finite.max() > 100:
            continue
        # Seurat's percent.* and scanpy's pct_counts_* are percentages; other names holding only values <= 1 are
        # fractions (e.g. the older scanpy tutorial's percent_mito)
        is_percent = col.startswith(("percent.", "pct_counts_", "subsets_")) or col == "percent_mt"
        if not is_percent and finite.max() <= 1.0:
            v = v * 100.0
        return col, v
    return None


def mito_percent(adata: anndata.AnnData, totals: np.ndarray | None = None) -> MitoQC | None:
    """Per-cell % of counts from mitochondrial (MT-/mt-) genes; None when neither the genes nor a column are there.

    The file's own per-cell column (``percent.mt``, ``pct_counts_mt``, …) is preferred when present: it was
    usually computed on every gene before a gene selection, which may have dropped most mitochondrial genes.
    Otherwise the share is computed from the matrix, only for counts (a share of log values means nothing).
    ``totals`` (counts per cell) may be passed to save a pass over the matrix.
    """
    col = _mito_column(adata)
    if col is not None:
        return MitoQC(pct=col[1], genes=[], source=col[0],
                      note=f"% mitochondrial counts from the file's own `{col[0]}` column.")
    symbols = _gene_symbols(adata)
    mask = _mito_mask(symbols)
    if not mask.any():
        return None
    X = adata.X
    if X is None or detect_input_kind(X)[0] not in ("counts", "normalized"):
        return None
    if totals is None:
        totals = _row_stats(X)[0]
    mt = np.asarray(X @ mask.astype(np.float64), dtype=np.float64).ravel()
    with np.errstate(divide="ignore", invalid="ignore"):
        pct = np.where(totals > 0, 100.0 * mt / np.where(totals > 0, totals, 1.0), np.nan)
    genes = [str(g) for g in symbols[mask]]
    shown = ", ".join(genes[:5]) + (", …" if len(genes) > 5 else "")
    note = f"% mitochondrial counts from the {_n(len(genes), 'mitochondrial gene', 'mitochondrial genes')} " \
           f"in this file ({shown})"
    if len(genes) < 13:  # the human and mouse mitochondrial genomes encode 13 proteins (plus 2 rRNAs, 22 tRNAs)
        note += "; most mitochondrial genes are missing, so the share is underestimated"
    return MitoQC(pct=pct, genes=genes, source="genes", note=note + ".")


def gene_subset_note(adata: anndata.AnnData, totals: np.ndarray | None = None) -> str:
    """One plain line when the file holds fewer genes than a transcriptome (e.g. 2,000 variable genes), else "".

    Says what follows for the user: the depth shown covers these genes only, and a query must share them. When
    the file carries its own per-cell totals (``nCount_RNA``, ``total_counts``) and they are higher than the counts
    of the genes present, both medians are quoted as evidence.
    """
    n = adata.n_vars
    if not 0 < n < SUBSET_GENES:
        return ""
    line = (f"This file holds {n:,} genes, probably a selection of variable genes (or a panel) rather than the whole "
            "transcriptome")
    X = adata.X
    if totals is None and X is not None:
        totals = _row_stats(X)[0]
    for col in _TOTAL_COUNT_COLUMNS:
        if totals is None or col not in adata.obs.columns or not pd.api.types.is_numeric_dtype(adata.obs[col]):
            continue
        own, here = float(np.nanmedian(adata.obs[col].to_numpy(dtype=np.float64))), float(np.median(totals))
        if here > 0 and own > 1.2 * here:
            line += (f" (its own `{col}` column counts {_fmt(round(own))} per cell at the median, these genes "
                     f"{_fmt(round(here))})")
        break
    return line + (": counts per cell here cover these genes only, and a model trained on it reads only these genes.")


def qc_summary(
    adata: anndata.AnnData, *, read_info: dict | None = None, max_label_classes: int = 200
) -> QCSummary:
    """Summarise ``adata.X`` (and obs/layers) for the user, flagging everything odd.

    Shown right after loading so that problems (log-normalized input where
    counts are needed, NaN, empty cells, duplicated genes) surface before a
    long training run rather than as a crash inside it. ``read_info`` notes
    from :func:`scapp.data.read_data` are repeated in ``warnings``.
    """
    X = adata.X
    if X is None:
        raise InputError(
            "The AnnData has no main matrix (.X); set adata.X to the counts layer first."
        )
    data, n_cells, n_genes = _values(X)
    has_nan = bool(np.isnan(data).any()) if data.size else False
    has_inf = bool(np.isinf(data).any()) if data.size else False
    # One cheap min() skips the counting pass for the usual non-negative matrix (NaN < 0 is False).
    n_negative = int(np.count_nonzero(data < 0)) if data.size and not data.min() >= 0 else 0

    totals, nnz = _row_stats(X)
    total_entries = n_cells * n_genes
    sparsity = float(1.0 - nnz.sum() / total_entries) if total_entries else 0.0
    n_empty = int(np.count_nonzero(nnz == 0))
    kind, reason = detect_input_kind(X)

    dup_mask = adata.var_names.duplicated()
    n_dup = int(dup_mask.sum())
    dup_example = list(pd.unique(adata.var_names[dup_mask].astype(str)))[:5]
    gene_kind = _gene_id_kind(adata.var_names)
    labels = label_candidates(adata, max_classes=max_label_classes)
    layers = [str(k) for k in adata.layers.keys()]
    obsm = [str(k) for k in adata.obsm.keys()]
    has_raw = adata.raw is not None

    warn: list[str] = []
    if has_nan:
        warn.append(f"values contain NaN ({_n(int(np.isnan(data).sum()), 'entry', 'entries')})")
    if has_inf:
        warn.append(f"values contain infinity ({_n(int(np.isinf(data).sum()), 'entry', 'entries')})")
    if kind in ("lognorm", "scaled", "normalized"):
        what = {
            "lognorm": "X looks log-normalized",
            "scaled": "X looks scaled (negative values)",
            "normalized": "X holds non-integer values (normalized or corrected, not raw counts)",
        }[kind]
        where = _counts_sources(adata)
        hint = f"; raw counts found in {where}" if where else " (use a layer with counts or .raw)"
        warn.append(f"{what}: training needs raw counts{hint}")
    if kind == "invalid" and not (has_nan or has_inf):
        warn.append(f"X is unusable: {reason}")
    if n_empty:
        warn.append(f"{_n(n_empty, 'cell has', 'cells have')} zero counts")
    if n_dup:
        warn.append(f"{_n(n_dup, 'duplicated gene name', 'duplicated gene names')} (e.g. {', '.join(dup_example[:3])})")
    n_dup_cells = int(adata.obs_names.duplicated().sum())
    if n_dup_cells:
        warn.append(f"{_n(n_dup_cells, 'duplicated cell name', 'duplicated cell names')}")
    if gene_kind == "mixed":
        warn.append("gene names mix Ensembl IDs and symbols; matching to a model may miss genes")
    if 0 < n_genes < 200:
        warn.append(f"only {n_genes} genes: a model trained on these sees very little of the transcriptome")
    if not labels:
        warn.append("no obs column looks like a cell-type label (needed only for training)")
    for note in (read_info or {}).get("notes", []):
        warn.append(str(note))

    mito = mito_percent(adata, totals) if kind != "invalid" else None
    if mito is not None:
        mito_note = mito.note
    elif kind == "invalid":
        mito_note = ""
    elif _mito_mask(_gene_symbols(adata)).any():
        mito_note = ("The % of mitochondrial counts per cell needs counts; this matrix holds transformed values "
                     f"({kind}).")
    else:
        mito_note = ("No mitochondrial genes (MT-/mt-) in this file, so the % of mitochondrial counts per cell cannot "
                     "be shown.")

    return QCSummary(
        n_cells=int(n_cells),
        n_genes=int(n_genes),
        sparsity=sparsity,
        counts_per_cell=_quantiles(totals),
        genes_per_cell=_quantiles(nnz.astype(np.float64)),
        input_kind=kind,
        input_kind_reason=reason,
        has_nan=has_nan,
        has_inf=has_inf,
        n_negative=n_negative,
        n_empty_cells=n_empty,
        n_duplicate_genes=n_dup,
        duplicate_genes_example=dup_example,
        gene_id_kind=gene_kind,
        label_candidates=labels,
        layers=layers,
        obsm=obsm,
        has_raw=has_raw,
        read_info=dict(read_info or {}),
        warnings=warn,
        pct_mito=_quantiles(mito.pct) if mito is not None else None,
        mito_note=mito_note,
        gene_subset_note=gene_subset_note(adata, totals),
    )


def _counts_sources(adata: anndata.AnnData) -> str:
    """Name the layers (or .raw) that hold raw counts, for a actionable warning."""
    found = []
    for name, layer in adata.layers.items():
        try:
            if detect_input_kind(layer)[0] == "counts":
                found.append(f"layers['{name}']")
        except Exception:  # an odd layer must not break the summary
            continue
    if adata.raw is not None:
        try:
            if detect_input_kind(adata.raw.X)[0] == "counts":
                found.append(".raw")
        except Exception:
            pass
    return ", ".join(found)
