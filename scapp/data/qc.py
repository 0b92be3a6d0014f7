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

__all__ = ["QCSummary", "detect_input_kind", "label_candidates", "qc_summary"]

INPUT_KINDS = ("counts", "lognorm", "scaled", "normalized", "invalid")

_SAMPLE_VALUES = 1_000_000  # non-zero values checked for being whole numbers
_SAMPLE_ROWS = 2_000  # cells used for the row-sum checks
_LOG_MAX = 30.0  # log1p(1e6 * ...) stays well below this; raw CPM/TPM do not
_CONST_CV = 1e-3  # row sums "constant" below this coefficient of variation
_ENSEMBL_RE = re.compile(r"^ENS[A-Z]*G\d{5,}(?:\.\d+)?$")
_QUANTILES = {"min": 0.0, "q05": 0.05, "q25": 0.25, "median": 0.5, "q75": 0.75, "q95": 0.95, "max": 1.0}


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
