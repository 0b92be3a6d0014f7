"""Read any supported single-cell input into an in-memory AnnData (cells × genes).

Users arrive with whatever their pipeline wrote: an ``.h5ad`` from scanpy, a
Cell Ranger ``.h5`` or ``matrix.mtx`` folder (often zipped), a loom file or a
plain count table. :func:`read_data` turns all of them into one shape, cells ×
genes with ``.X`` as CSR float32 where that saves memory, and says in a
``read_info`` dict what it did and guessed, so the app can show it.

Files are only ever opened for reading; nothing is unpickled. Before a reader
runs, the first bytes are checked against the extension (an h5ad renamed
``.csv`` is named as such, with the fix); archives and gzip streams are inflated
only within the limits of :mod:`scapp.data.archive` (no zip bombs); every error
of the underlying libraries on a bad file becomes an :class:`InputError` that
says what is wrong. Repeated cell names are made unique, with a warning, so that
predictions are never keyed twice by the same name.
"""

from __future__ import annotations

import csv
import os
import re
import stat
import tarfile
import tempfile
import warnings
import zipfile
import zlib
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Literal

import anndata
import h5py
import numpy as np
import pandas as pd
from scipy import sparse

from scapp.data import archive as _archive
from scapp.data import hdf5_guard as _hdf5_guard
from scapp.data import sniff as _sniff
from scapp.data.archive import one_line as _one_line
from scapp.data.archive import why as _why
from scapp.errors import InputError, InputRepresentationWarning, UnsupportedFormatError

__all__ = ["SUPPORTED", "read_data"]

SUPPORTED = (
    ".h5ad",
    ".h5",
    ".loom",
    ".csv",
    ".tsv",
    ".txt",
    ".csv.gz",
    ".tsv.gz",
    ".zip",
    ".tar.gz",
    ".tgz",
    "<folder with matrix.mtx[.gz]>",
)

Orientation = Literal["auto", "cells_x_genes", "genes_x_cells"]
_ORIENTATIONS = ("auto", "cells_x_genes", "genes_x_cells")

_TABLE_EXTS = (".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz")
_ARCHIVE_EXTS = (".zip", ".tar.gz", ".tgz")
# Dense matrices with at least this fraction of zeros are stored as CSR.
_DENSE_TO_SPARSE_ZERO_FRACTION = 0.5
# 10x matrix file, optionally with a GEO-style prefix such as "GSM123_".
_MTX_RE = re.compile(r"^(?P<prefix>.*?)matrix\.mtx(?:\.gz)?$")


# --------------------------------------------------------------------------- public


def read_data(
    path: str | os.PathLike, *, orientation: Orientation = "auto"
) -> tuple[anndata.AnnData, dict]:
    """Read a single-cell file or 10x folder into memory as cells × genes.

    One entry point for every format lets the CLI and the app accept whatever
    the user has, and the ``read_info`` record makes every silent decision
    (format, table orientation, renamed genes) visible instead of hidden.

    Parameters
    ----------
    path
        A file with one of the extensions in :data:`SUPPORTED`, or a folder
        holding ``matrix.mtx[.gz]`` with its ``features``/``genes`` and
        ``barcodes`` files (directly, or a few levels down as in Cell Ranger's
        ``outs/``, where the filtered matrix is preferred over the raw one).
    orientation
        For text tables: ``"auto"`` guesses from the row and column names
        whether rows are cells or genes; the other values force it. For h5ad
        and loom files ``"genes_x_cells"`` transposes the object (for files
        written the wrong way round); 10x formats define their own layout and
        ignore it.

    Returns
    -------
    adata
        Cells × genes. ``.X`` is ``scipy.sparse.csr_matrix`` float32 unless the
        file held a dense matrix with few zeros (then a float32 ndarray).
        obs/var/obsm/layers/uns/raw of h5ad files are kept as they are.
    read_info
        ``{"format", "path", "orientation", "orientation_reason", "notes"}``;
        ``orientation`` is None where the format fixes the layout.

    Raises
    ------
    InputError
        Missing, empty, corrupt or unusable file (message says what to do).
    UnsupportedFormatError
        Extension or folder layout scapp does not read.
    """
    if orientation not in _ORIENTATIONS:
        raise InputError(
            f"orientation must be one of {', '.join(_ORIENTATIONS)}, not {orientation!r}."
        )
    p = Path(path)
    if not p.exists():
        raise InputError(f"No such file: '{p}'. Check the path (and that the file was uploaded).")
    if not os.access(p, os.R_OK) or (p.is_dir() and not os.access(p, os.X_OK)):
        raise InputError(f"Could not read '{p.name}': no permission to read it. Check its permissions (chmod u+r).")

    if p.is_dir():
        adata, info = _read_mtx_tree(p)
    else:
        if not p.is_file():
            raise InputError(f"Could not read '{p}': it is not a regular file (a device, pipe or socket).")
        if p.stat().st_size == 0:
            raise InputError(
                f"Could not read '{p.name}': the file is empty (0 bytes). "
                "The upload or export probably failed; write the file again."
            )
        name = p.name.lower()
        mtx_match = _MTX_RE.match(p.name)
        if not mtx_match:
            _check_content(p, _family(name))
        if mtx_match:
            # A matrix.mtx file given directly: read the folder it sits in.
            adata, info = _read_mtx_dir(p.parent, only_prefix=mtx_match["prefix"])
        elif name.endswith(".h5ad"):
            adata, info = _read_h5ad(p)
        elif name.endswith(".h5"):
            adata, info = _read_h5(p)
        elif name.endswith(".loom"):
            adata, info = _read_loom(p)
        elif name.endswith(_TABLE_EXTS):
            adata, info = _read_table(p, orientation)
        elif name.endswith(_ARCHIVE_EXTS):
            adata, info = _read_archive(p)
        else:
            raise UnsupportedFormatError(
                f"scapp cannot read '{p.name}': unsupported file type. "
                f"Supported: {', '.join(SUPPORTED)}."
            )

    _check_sparse(adata, p)
    if info["format"] in ("h5ad", "loom"):
        adata = _apply_fixed_orientation(adata, info, orientation)
    elif info["format"] in ("10x_h5", "10x_mtx") and orientation != "auto":
        info["notes"].append(
            f"orientation={orientation!r} ignored: 10x files always store barcodes and "
            "features separately."
        )
    info["path"] = str(p)
    _finalize_x(adata, info)
    _unique_cell_names(adata, info, p)
    return adata, info


# --------------------------------------------------------------------------- helpers


def _info(fmt: str) -> dict:
    return {
        "format": fmt,
        "path": "",
        "orientation": None,
        "orientation_reason": None,
        "notes": [],
    }


def _finalize_x(adata: anndata.AnnData, info: dict) -> None:
    """Make ``.X`` CSR float32 (or dense float32 when it is mostly non-zero)."""
    X = adata.X
    if X is None:
        layers = ", ".join(adata.layers.keys()) or "none"
        raise InputError(
            f"Could not use '{info.get('path') or 'the file'}': it has no main matrix (.X); "
            f"layers: {layers}. Set adata.X to the counts layer and save it again."
        )
    if sparse.issparse(X):
        if X.dtype.kind not in "biuf":
            raise InputError(
                f"Could not use '{info.get('path') or 'the file'}': its main matrix (.X) holds {X.dtype} values, "
                "not numbers. Put the counts in .X and save it again."
            )
        if not (isinstance(X, sparse.csr_matrix) and X.dtype == np.float32):
            adata.X = sparse.csr_matrix(X, dtype=np.float32)
        return
    X = np.asarray(X)
    if X.ndim != 2:
        raise InputError(f"The main matrix has {X.ndim} dimensions; expected a 2-D cells × genes matrix.")
    if X.dtype.kind not in "biuf":
        raise InputError(
            f"Could not use '{info.get('path') or 'the file'}': its main matrix (.X) holds {X.dtype} values, "
            "not numbers. Put the counts in .X and save it again."
        )
    n_zero = X.size - np.count_nonzero(X)
    if X.size and n_zero / X.size >= _DENSE_TO_SPARSE_ZERO_FRACTION:
        adata.X = sparse.csr_matrix(X, dtype=np.float32)
    elif X.dtype != np.float32:
        adata.X = X.astype(np.float32)


def _make_unique(adata: anndata.AnnData, info: dict, *, what: str) -> None:
    """Make gene names unique, recording how many were renamed (cells: :func:`_unique_cell_names`)."""
    n_dup = int(adata.var_names.duplicated().sum())
    if n_dup:
        adata.var_names_make_unique()
        info["notes"].append(
            f"made {n_dup} duplicated gene names unique by adding -1, -2, ... ({what})"
        )


def _unique_cell_names(adata: anndata.AnnData, info: dict, p: Path) -> None:
    """Repeated cell names, in any format, are made unique with a warning.

    Predictions, embeddings and the CSV of labels are keyed by cell name; two cells called the same would give
    two rows under one name (or one overwriting the other downstream). Renaming keeps every cell and says so.
    """
    dup = adata.obs_names.duplicated()
    n_dup = int(dup.sum())
    if not n_dup:
        return
    examples = ", ".join(repr(str(x)) for x in pd.unique(adata.obs_names[dup])[:3])
    adata.obs_names_make_unique()
    msg = (
        f"'{p.name}' has {n_dup} duplicated cell names (e.g. {examples}); made them unique by adding -1, -2, ... "
        "to the repeats, so results are keyed by the new names"
    )
    info["notes"].append(msg)
    warnings.warn(msg, InputRepresentationWarning, stacklevel=3)


def _too_big(p: Path, err: MemoryError) -> InputError:
    detail = f" ({_one_line(err)})" if str(err) else ""
    return InputError(
        f"Could not read '{p.name}': it needs more memory than is free{detail}. Use a machine with more "
        "memory or a subset of the cells; if the file is small, its sizes are corrupt."
    )


# --------------------------------------------------------------------------- what the bytes are

_KIND_EXPECTED = {
    "hdf5": ("an HDF5 file (h5ad, 10x .h5 or loom)", {"hdf5"}),
    "text": ("a text table", {"text"}),
    "gzip-table": ("a gzip-compressed text table", {"gzip-text", "gzip"}),
    "zip": ("a zip archive", {"zip"}),
    "tar": ("a gzip-compressed tar archive", {"gzip"}),
}


def _family(name: str) -> str | None:
    """What the extension promises (lower-case name)."""
    if name.endswith((".h5ad", ".h5", ".loom")):
        return "hdf5"
    if name.endswith(_TABLE_EXTS):
        return "gzip-table" if name.endswith(".gz") else "text"
    if name.endswith(".zip"):
        return "zip"
    if name.endswith((".tar.gz", ".tgz")):
        return "tar"
    return None


def _stem(name: str) -> str:
    low = name.lower()
    for ext in sorted(
        (*_TABLE_EXTS, *_ARCHIVE_EXTS, ".h5ad", ".h5", ".loom", ".gz", ".xlsx", ".xls"), key=len, reverse=True
    ):
        if low.endswith(ext) and len(name) > len(ext):
            return name[: -len(ext)]
    return Path(name).stem or name


def _hdf5_flavour(p: Path) -> tuple[str, str]:
    """(extension, words) for an HDF5 file from its top-level groups."""
    try:
        with h5py.File(p, "r") as f:
            keys = set(f.keys())
    except Exception:  # noqa: BLE001 (an unreadable HDF5 file: the h5ad reader says so next)
        return ".h5ad", "an HDF5 file (h5ad, 10x .h5 or loom)"
    if {"obs", "var"} <= keys or {"obs", "X"} <= keys:
        return ".h5ad", "an HDF5 file holding an AnnData (.h5ad)"
    if {"matrix", "row_attrs", "col_attrs"} <= keys:
        return ".loom", "an HDF5 file holding a loom matrix (.loom)"
    return ".h5", "an HDF5 file (a 10x .h5 or other, not an h5ad)"


def _table_ext(p: Path, gz: bool) -> str:
    try:
        head = _head_bytes(p, gz)
        sep = _sniff.sniff_text(head, ",").sep
    except (InputError, OSError, EOFError, zlib.error):
        sep = ","
    return (".tsv" if sep == "\t" else ".csv") + (".gz" if gz else "")


def _check_content(p: Path, family: str | None) -> None:
    """Refuse a file whose first bytes contradict its extension, with the right name to give it."""
    try:
        kind = _sniff.content_kind(p)
    except OSError as err:
        raise InputError(f"Could not read '{p.name}' ({_why(err)}).") from err
    if kind is None:
        return  # unknown bytes: the format's own reader says what is wrong
    if kind == "hdf5":
        trouble = _hdf5_guard.preflight(p)
        if trouble:
            what = next((w for e, w in ((".h5ad", "h5ad"), (".h5", "10x HDF5"), (".loom", "loom"))
                         if p.name.lower().endswith(e)), "HDF5")
            raise InputError(
                f"Could not read '{p.name}': it is not a valid {what} file: {trouble}, so it is corrupt. "
                "Write it again from the original data."
            )
    stem = _stem(p.name)
    fixes = {
        "xlsx": "scapp reads no Excel files: save the sheet as CSV (File > Save As > CSV UTF-8) and load that.",
        "xls": "scapp reads no Excel files: save the sheet as CSV (File > Save As > CSV UTF-8) and load that.",
        "parquet": "Save it as CSV or .h5ad and load that.",
        "pdf": "It holds no count matrix.",
        "rdata": "Export it from R as .h5ad (e.g. zellkonverter or SeuratDisk) or as a CSV of counts.",
        "gzip": "Decompress it (gunzip) and load the file inside.",
        "bzip2": "Decompress it and load the file inside.",
        "xz": "Decompress it and load the file inside.",
        "zstd": "Decompress it and load the file inside.",
        "7z": "Extract it and load the folder or file inside.",
    }
    if family is not None and kind in _KIND_EXPECTED[family][1]:
        return
    if kind in fixes:
        if family is None and kind not in ("xlsx", "xls"):
            return  # an unsupported extension and an unsupported content: the caller's message lists formats
        raise UnsupportedFormatError(
            f"Could not read '{p.name}': it is {_sniff.describe_kind(kind)}. {fixes[kind]}"
        )
    if family is None and kind not in ("hdf5", "text", "gzip-text"):
        return  # e.g. a damaged zip named .xlsx: the caller lists the formats scapp reads
    if kind == "hdf5":
        ext, words = _hdf5_flavour(p)
    elif kind == "zip":
        ext, words = ".zip", "a zip archive"
    elif kind == "gzip-text":
        ext, words = _table_ext(p, True), "gzip-compressed text"
    else:  # text
        ext, words = _table_ext(p, False), "a text file (a table)"
    if family is None:
        raise UnsupportedFormatError(
            f"Could not read '{p.name}': unsupported file type '{Path(p.name).suffix or p.name}', but its "
            f"contents are {words}. Rename it to '{stem}{ext}' and load it again."
        )
    raise InputError(
        f"Could not read '{p.name}': its name says {_KIND_EXPECTED[family][0]}, but its contents are {words}. "
        f"Rename it to '{stem}{ext}' and load it again."
    )


def _new_adata(X, obs: pd.DataFrame, var: pd.DataFrame) -> anndata.AnnData:
    """AnnData without anndata's duplicate-name warning (``_make_unique`` handles and notes it)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*names are not unique.*")
        return anndata.AnnData(X=X, obs=obs, var=var)


def _corrupt(p: Path, kind: str, hint: str, err: BaseException | None = None) -> InputError:
    detail = f" ({_why(err)})" if err is not None else ""
    return InputError(
        f"Could not read '{p.name}': it is not a valid {kind} file (it may be truncated or "
        f"corrupt){detail}. {hint}"
    )


_H5AD_HINT = "Re-export it from scanpy with adata.write_h5ad(...)."


def _h5_top_keys(p: Path, kind: str, hint: str) -> set[str]:
    if not h5py.is_hdf5(p):
        raise _corrupt(p, kind, hint)
    try:
        with h5py.File(p, "r") as f:
            # names are bytes where a damaged file holds invalid UTF-8
            return {k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k) for k in f.keys()}
    except Exception as err:  # h5py raises OSError/KeyError/RuntimeError variants
        raise _corrupt(p, kind, hint, err) from err


# --------------------------------------------------------------------------- h5ad / h5 / loom


def _read_h5ad(p: Path) -> tuple[anndata.AnnData, dict]:
    _h5_top_keys(p, "h5ad", _H5AD_HINT)
    try:
        adata = anndata.read_h5ad(p)
    except MemoryError as err:
        raise _too_big(p, err) from err
    except Exception as err:
        raise _corrupt(p, "h5ad", _H5AD_HINT, err) from err
    return adata, _info("h5ad")


def _read_h5(p: Path) -> tuple[anndata.AnnData, dict]:
    hint = "Use the filtered_feature_bc_matrix.h5 written by Cell Ranger, or an .h5ad file."
    keys = _h5_top_keys(p, "10x HDF5", hint)
    if {"obs", "var"} <= keys or {"obs", "X"} <= keys:
        adata, info = _read_h5ad(p)
        info["notes"].append("the .h5 file is an AnnData (h5ad) file; read it as such")
        return adata, info
    if {"matrix", "row_attrs", "col_attrs"} <= keys:
        adata, info = _read_loom(p)
        info["notes"].append("the .h5 file is a loom file; read it as such")
        return adata, info

    import scanpy as sc

    info = _info("10x_h5")
    if "matrix" in keys:
        # Cell Ranger v3+: report feature types that scanpy's gex_only drops.
        try:
            with h5py.File(p, "r") as f:
                ftypes = f["matrix/features/feature_type"][()]
            counts = Counter(t.decode() if isinstance(t, bytes) else str(t) for t in ftypes)
        except Exception:
            counts = Counter()
        dropped = {k: v for k, v in counts.items() if k != "Gene Expression"}
        if dropped and counts.get("Gene Expression", 0):
            what = ", ".join(f"{v} {k}" for k, v in dropped.items())
            info["notes"].append(f"kept Gene Expression features only; dropped {what}")
    _check_10x_h5(p, hint)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not unique.*")
            adata = sc.read_10x_h5(p)
    except MemoryError as err:
        raise _too_big(p, err) from err
    except Exception as err:
        raise InputError(
            f"Could not read '{p.name}' as a 10x HDF5 file ({_why(err)}); "
            f"top-level groups: {', '.join(sorted(keys)) or 'none'}. {hint}"
        ) from err
    _make_unique(adata, info, what="10x files repeat some symbols")
    return adata, info


_INDEX_CHUNK = 1 << 24  # indices checked 16 M at a time (128 MB of int64)


def _check_10x_h5(p: Path, hint: str) -> None:
    """Check the sparse matrix of a 10x .h5 before scanpy builds it.

    scanpy hands the stored ``indices``/``indptr`` to scipy unchecked, and a damaged index makes the next
    operation on the matrix read or write out of bounds and crash the whole process (seen with flipped bytes).
    Reads ``indptr`` (one value per cell) and streams ``indices`` in chunks, so memory stays small.
    """
    def damaged(what: str) -> InputError:
        return InputError(
            f"Could not read '{p.name}': its sparse matrix is damaged ({what}), so the file is corrupt. {hint}"
        )

    try:
        with h5py.File(p, "r") as f:
            groups = [f["matrix"]] if "matrix" in f else [g for g in f.values() if isinstance(g, h5py.Group)]
            for g in groups:
                if not all(isinstance(g.get(k), h5py.Dataset) for k in ("data", "indices", "indptr", "shape")):
                    continue  # scanpy names what is missing
                shape = np.asarray(g["shape"][()]).ravel()
                if shape.size != 2 or (shape < 0).any():
                    raise damaged(f"shape {shape.tolist()}")
                n_genes, n_cells = int(shape[0]), int(shape[1])
                ind, data, ptr = g["indices"], g["data"], g["indptr"]
                if ptr.ndim != 1 or ptr.shape[0] != n_cells + 1:
                    raise damaged(f"{ptr.shape[0] if ptr.ndim == 1 else ptr.shape} index pointers for {n_cells} cells")
                if ind.ndim != 1 or data.ndim != 1 or ind.shape[0] != data.shape[0]:
                    raise damaged(f"{ind.shape} indices but {data.shape} values")
                indptr = ptr[()]
                if indptr[0] != 0 or indptr[-1] != ind.shape[0] or (np.diff(indptr) < 0).any():
                    raise damaged("the index pointers do not run from 0 up to the number of values")
                for start in range(0, ind.shape[0], _INDEX_CHUNK):
                    chunk = ind[start:start + _INDEX_CHUNK]
                    if chunk.size and (chunk.min() < 0 or chunk.max() >= n_genes):
                        raise damaged(f"a gene index outside 0..{n_genes - 1}")
    except InputError:
        raise
    except MemoryError as err:
        raise _too_big(p, err) from err
    except Exception as err:  # h5py's OSError/KeyError/TypeError variants on damaged bytes
        raise _corrupt(p, "10x HDF5", hint, err) from err


def _check_sparse(adata: anndata.AnnData, p: Path) -> None:
    """Refuse damaged sparse matrices (X, layers, raw) before anything indexes them.

    scipy checks only the lengths when a matrix is built; an index out of range is found, if at all, by a crash
    of the process in the first operation that uses it. ``check_format(full_check=True)`` costs one pass.
    """
    mats = [(".X", adata.X)] + [(f"layer '{k}'", v) for k, v in adata.layers.items()]
    if adata.raw is not None:
        mats.append((".raw.X", adata.raw.X))
    for what, M in mats:
        if sparse.issparse(M) and hasattr(M, "check_format"):
            try:
                M.check_format(full_check=True)
            except Exception as err:  # ValueError from scipy, or TypeError for odd dtypes
                raise InputError(
                    f"Could not read '{p.name}': its {what} is a damaged sparse matrix ({_why(err)}), so the file "
                    "is corrupt. Write it again from the original data."
                ) from err


def _loom_attr_keys(p: Path) -> tuple[set[str], set[str]]:
    with h5py.File(p, "r") as f:
        cols = set(f["col_attrs"].keys()) if "col_attrs" in f else set()
        rows = set(f["row_attrs"].keys()) if "row_attrs" in f else set()
    return cols, rows


def _read_loom(p: Path) -> tuple[anndata.AnnData, dict]:
    hint = "Re-export it with loompy or adata.write_loom(...), or use .h5ad."
    keys = _h5_top_keys(p, "loom", hint)
    if "matrix" not in keys:
        raise _corrupt(p, "loom", hint)
    try:
        from anndata.io import read_loom
    except ImportError:  # anndata < 0.11
        from anndata import read_loom

    try:
        cols, rows = _loom_attr_keys(p)
    except Exception as err:  # h5py's OSError/KeyError/RuntimeError variants on a damaged file
        raise _corrupt(p, "loom", hint, err) from err
    obs_key = next((k for k in ("CellID", "obs_names", "cell_names", "CellIDs", "barcode", "cells") if k in cols), "CellID")
    var_key = next((k for k in ("Gene", "var_names", "gene_names", "Genes", "gene", "Accession") if k in rows), "Gene")
    try:
        adata = read_loom(p, sparse=True, X_name="", obs_names=obs_key, var_names=var_key)
    except MemoryError as err:
        raise _too_big(p, err) from err
    except Exception as err:
        raise _corrupt(p, "loom", hint, err) from err
    info = _info("loom")
    adata.obs_names = adata.obs_names.astype(str)
    adata.var_names = adata.var_names.astype(str)
    if obs_key not in cols:
        info["notes"].append("the loom file has no cell-name attribute; cells are numbered")
    if var_key not in rows:
        info["notes"].append("the loom file has no gene-name attribute; genes are numbered")
    _make_unique(adata, info, what="loom file")
    return adata, info


def _apply_fixed_orientation(adata: anndata.AnnData, info: dict, orientation: str) -> anndata.AnnData:
    """Honour an explicit orientation; otherwise only warn when names look transposed."""
    if orientation == "genes_x_cells":
        info["orientation"] = "genes_x_cells"
        info["orientation_reason"] = "given by the user"
        info["notes"].append("transposed the object: the user said its rows (obs) are genes")
        return adata.T.copy()
    if orientation == "cells_x_genes":
        info["orientation"] = "cells_x_genes"
        info["orientation_reason"] = "given by the user"
        return adata
    guess, reason, confident = _guess_orientation(
        adata.obs_names, adata.var_names, adata.n_obs, adata.n_vars
    )
    if confident and guess == "genes_x_cells":
        msg = (
            f"the file may be transposed: {reason}. If its rows are genes, read it with "
            "orientation='genes_x_cells'"
        )
        info["notes"].append(msg)
        warnings.warn(msg, InputRepresentationWarning, stacklevel=3)
    return adata


# --------------------------------------------------------------------------- 10x mtx


def _find_matrices(files: list[PurePosixPath]) -> dict[tuple[str, str], PurePosixPath]:
    """Map (folder, prefix) -> matrix path for every *matrix.mtx[.gz] in a listing."""
    found = {}
    for f in files:
        if "__MACOSX" in f.parts or f.name.startswith("._"):
            continue
        m = _MTX_RE.match(f.name)
        if m:
            found[(str(f.parent), m["prefix"])] = f
    return found


def _choose_matrix(
    matrices: dict[tuple[str, str], PurePosixPath], label: str, fix: str
) -> tuple[tuple[str, str], list[str]]:
    """One (folder, prefix) among several; Cell Ranger's filtered matrix wins over raw."""
    if len(matrices) == 1:
        return next(iter(matrices)), []
    filtered = [k for k in matrices if "filtered" in k[0].lower()]
    if len(filtered) == 1:
        key = filtered[0]
        return key, [f"found {len(matrices)} matrices; used the filtered one in '{key[0]}'"]
    where = ", ".join(str(matrices[k]) for k in sorted(matrices))
    raise InputError(f"{label} holds several matrices ({where}); {fix}.")


def _read_mtx_tree(d: Path) -> tuple[anndata.AnnData, dict]:
    """A folder holding the 10x files, or holding a folder that does (e.g. Cell Ranger outs/)."""
    if any(_MTX_RE.match(f.name) for f in d.iterdir() if f.is_file()):
        return _read_mtx_dir(d)
    rel = []
    for sub, dirs, fnames in os.walk(d):
        depth = len(Path(sub).relative_to(d).parts)
        dirs[:] = [x for x in dirs if not x.startswith(".") and depth < 3]
        rel += [PurePosixPath(Path(sub).relative_to(d).as_posix()) / f for f in fnames]
    matrices = _find_matrices(rel)
    if not matrices:
        return _read_mtx_dir(d)  # raises with the listing
    (folder, prefix), notes = _choose_matrix(
        matrices, f"The folder '{d}'", "pass the one folder you want to load"
    )
    adata, info = _read_mtx_dir(d / folder, only_prefix=prefix)
    info["notes"] = [f"read the 10x matrix in sub-folder '{folder}'"] + notes + info["notes"]
    return adata, info


def _pick(names: set[str], prefix: str, stems: tuple[str, ...]) -> str | None:
    for stem in stems:
        for ext in (".tsv.gz", ".tsv", ".txt.gz", ".txt", ".csv.gz", ".csv"):
            if f"{prefix}{stem}{ext}" in names:
                return f"{prefix}{stem}{ext}"
    return None


def _read_mtx_dir(
    d: Path, *, only_prefix: str | None = None, origin: str | None = None
) -> tuple[anndata.AnnData, dict]:
    names = {f.name for f in d.iterdir() if f.is_file()}
    prefixes = sorted({m["prefix"] for n in names if (m := _MTX_RE.match(n))})
    if only_prefix is not None:
        prefixes = [only_prefix]
    label = origin or f"folder '{d}'"
    if not prefixes:
        shown = ", ".join(sorted(names)[:10]) or "no files"
        raise UnsupportedFormatError(
            f"The {label} holds no matrix.mtx or matrix.mtx.gz (found: {shown}). "
            f"scapp reads 10x folders (matrix.mtx + features.tsv + barcodes.tsv) or files: "
            f"{', '.join(SUPPORTED[:-1])}."
        )
    if len(prefixes) > 1:
        raise InputError(
            f"The {label} holds several matrices ({', '.join(p + 'matrix.mtx' for p in prefixes)}); "
            "pass the matrix file you want, or put each in its own folder."
        )
    prefix = prefixes[0]
    mtx = next(n for n in (f"{prefix}matrix.mtx.gz", f"{prefix}matrix.mtx") if n in names)
    feat = _pick(names, prefix, ("features", "genes"))
    bcs = _pick(names, prefix, ("barcodes",))
    missing = [w for w, f in (("features.tsv[.gz] or genes.tsv", feat), ("barcodes.tsv[.gz]", bcs)) if f is None]
    if missing:
        raise InputError(
            f"The {label} has {mtx} but no {' and no '.join(missing)}; a 10x folder needs all "
            "three files (matrix, features/genes, barcodes) from the same run."
        )
    return _read_mtx_files(d / mtx, d / feat, d / bcs)


def _open_text(p: Path):
    """Text of a 10x side file (gzip through the inflation limits of :mod:`scapp.data.archive`)."""
    if p.name.lower().endswith(".gz"):
        return _archive.open_gzip(p, "rt")
    return open(p, encoding="utf-8")


def _read_mtx_files(mtx: Path, feat: Path, bcs: Path) -> tuple[anndata.AnnData, dict]:
    """Read a Cell Ranger v2 or v3 matrix, compressed or not (scanpy requires exactly one
    of the two layouts, while hand-gzipped v2 or unzipped v3 folders are common)."""
    from scipy.io import mmread

    try:
        if mtx.name.lower().endswith(".gz"):
            with _archive.open_gzip(mtx) as fh:
                m = mmread(fh)
        else:
            m = mmread(mtx)
    except InputError:
        raise
    except MemoryError as err:
        raise _too_big(mtx, err) from err
    except Exception as err:
        raise InputError(
            f"Could not read '{mtx.name}': not a valid Matrix Market file, or it is truncated "
            f"({_why(err)}). Copy the file again from the Cell Ranger output."
        ) from err
    try:
        with _open_text(feat) as fh:
            sep = "," if ".csv" in feat.name.lower() else "\t"
            genes = pd.read_csv(fh, sep=sep, header=None, dtype=str, quoting=csv.QUOTE_NONE, keep_default_na=False)
        with _open_text(bcs) as fh:
            barcodes = pd.read_csv(fh, sep="\t", header=None, dtype=str, quoting=csv.QUOTE_NONE, keep_default_na=False)
    except InputError:
        raise
    except MemoryError as err:
        raise _too_big(feat, err) from err
    except Exception as err:
        raise InputError(
            f"Could not read '{feat.name}' / '{bcs.name}' ({_why(err)}); "
            "they should be tab-separated text files without a header."
        ) from err

    n_feat, n_bc = len(genes), len(barcodes)
    if m.shape != (n_feat, n_bc):
        raise InputError(
            f"'{mtx.name}' is {m.shape[0]} × {m.shape[1]} but there are {n_feat} features and "
            f"{n_bc} barcodes; the three files must come from the same 10x run."
        )
    info = _info("10x_mtx")
    X = sparse.csr_matrix(m.T, dtype=np.float32)
    var = pd.DataFrame(index=pd.Index(genes.iloc[:, min(1, genes.shape[1] - 1)].astype(str).values))
    var["gene_ids"] = genes.iloc[:, 0].astype(str).values
    if genes.shape[1] >= 3:
        var["feature_types"] = genes.iloc[:, 2].astype(str).values
    obs = pd.DataFrame(index=pd.Index(barcodes.iloc[:, 0].astype(str).values))
    if "feature_types" in var:
        ft = var["feature_types"]
        is_gex = (ft == "Gene Expression").to_numpy()
        if is_gex.any() and not is_gex.all():
            what = ", ".join(f"{v} {k}" for k, v in Counter(ft[~is_gex]).items())
            info["notes"].append(f"kept Gene Expression features only; dropped {what}")
            X, var = X[:, is_gex], var.loc[is_gex]
    adata = _new_adata(X, obs, var)
    _make_unique(adata, info, what="10x files repeat some symbols")
    return adata, info


# --------------------------------------------------------------------------- archives


def _unsafe_member(name: str) -> bool:
    n = name.replace("\\", "/")
    return n.startswith("/") or bool(re.match(r"^[A-Za-z]:", n)) or ".." in n.split("/")


def _zip_is_link(i: zipfile.ZipInfo) -> bool:
    return i.create_system == 3 and stat.S_ISLNK(i.external_attr >> 16)


def _list_tar(p: Path, arch: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Every member header, checked against the limits as it is read.

    Reading a tar.gz means inflating it: skipping a member's data decompresses it. So each header is judged
    (its declared size, and all sizes so far against the archive's size) before its data is skipped, and a bomb
    is refused without inflating it.
    """
    size = p.stat().st_size
    tinfos: list[tarfile.TarInfo] = []
    total, biggest = 0, (0, "")
    for t in arch:
        tinfos.append(t)
        if t.isfile():
            _archive.check_member(p.name, t.name, t.size, None)
            total += t.size
            biggest = max(biggest, (t.size, t.name))
            _archive.check_total(p.name, total, size, biggest[1])
    return tinfos


def _read_archive(p: Path) -> tuple[anndata.AnnData, dict]:
    """A zip or tar.gz of a 10x folder: check names, links and sizes, extract only that folder, read it.

    Limits (zip bombs, full disks) are those of :mod:`scapp.data.archive`; entries pointing outside the
    archive, links and special files are refused, as are encrypted zip entries.
    """
    lower = p.name.lower()
    is_zip = lower.endswith(".zip")
    kind = "zip" if is_zip else "tar.gz"
    broken = (
        f"Could not read '{p.name}': not a valid {kind} archive (it may be truncated or corrupt)"
    )
    try:
        if is_zip:
            arch = zipfile.ZipFile(p)
            zinfos = {i.filename: i for i in arch.infolist()}
            members = [n for n, i in zinfos.items() if not i.is_dir()]
            all_names = list(zinfos)
            links = [n for n, i in zinfos.items() if _zip_is_link(i)]
        else:
            arch = tarfile.open(p, "r:gz")
            try:
                tinfos = _list_tar(p, arch)
            except BaseException:
                arch.close()
                raise
            tinfo_by_name = {t.name: t for t in tinfos}
            members = [t.name for t in tinfos if t.isfile()]
            all_names = [t.name for t in tinfos]
            links = [t.name for t in tinfos if not (t.isfile() or t.isdir()) or t.issparse()]
    except InputError:
        raise
    except MemoryError as err:
        raise _too_big(p, err) from err
    except EOFError as err:
        raise InputError(f"{broken}: it ends early ({_one_line(err)}). Create or download the archive again.") from err
    except Exception as err:  # zipfile/tarfile/gzip/zlib errors on damaged bytes
        raise InputError(f"{broken} ({_why(err)}). Create the archive again.") from err

    with arch:
        bad = [n for n in all_names if _unsafe_member(n)]
        if bad:
            raise InputError(
                f"Refusing to open '{p.name}': it contains entries that point outside the "
                f"archive folder ({', '.join(bad[:3])}). Re-create the archive from the 10x folder."
            )
        if links:
            raise InputError(
                f"Refusing to open '{p.name}': it contains links or special files "
                f"({', '.join(links[:3])}). Re-create the archive with plain files only."
            )
        matrices = _find_matrices([PurePosixPath(m) for m in members])
        if not matrices:
            shown = ", ".join(members[:10]) + (f", ... ({len(members)} files)" if len(members) > 10 else "")
            inner = [m for m in members if m.lower().endswith((".h5ad", ".h5", ".loom") + _TABLE_EXTS)]
            hint = (
                f" It holds {inner[0]!r}: extract it and load that file instead."
                if inner
                else " scapp reads archives of a 10x folder (matrix.mtx, features.tsv, barcodes.tsv)."
            )
            raise InputError(
                f"The archive '{p.name}' holds no matrix.mtx or matrix.mtx.gz "
                f"(found: {shown or 'nothing'}).{hint}"
            )
        (folder, prefix), notes = _choose_matrix(
            matrices, f"The archive '{p.name}'", "archive only the one folder you want to load"
        )
        wanted = [m for m in members if str(PurePosixPath(m).parent) == folder]
        if is_zip:
            sizes = [(n, zinfos[n].file_size, zinfos[n].compress_size) for n in wanted]
            locked = [n for n in wanted if zinfos[n].flag_bits & 0x1]
            if locked:
                raise InputError(
                    f"Could not read '{p.name}': {', '.join(locked[:3])} is encrypted. Unzip it with its "
                    "password and load the folder."
                )
        else:
            sizes = [(n, tinfo_by_name[n].size, None) for n in wanted]
        _archive.check_members(p.name, sizes, archive_bytes=p.stat().st_size)
        declared = {n: size for n, size, _ in sizes}
        with tempfile.TemporaryDirectory(prefix="scapp_archive_") as tmp:
            root = Path(tmp).resolve()
            for name in wanted:
                target = (root / name).resolve()
                if root not in target.parents:  # belt and braces after _unsafe_member
                    raise InputError(f"Refusing to extract '{name}' from '{p.name}': unsafe path.")
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    src = arch.open(name) if is_zip else arch.extractfile(name)
                    with src, open(target, "wb") as out:
                        _archive.copy_member(src, out, declared=declared[name], name=name, archive=p.name)
                except InputError:
                    raise
                except EOFError as err:
                    raise InputError(
                        f"{broken}: '{name}' ends early ({_one_line(err)}). Create or download the archive again."
                    ) from err
                except Exception as err:  # bad CRC, damaged deflate data, unsupported compression, ...
                    raise InputError(
                        f"{broken}: '{name}' cannot be extracted ({_why(err)}). "
                        "Create the archive again."
                    ) from err
                os.chmod(target, stat.S_IRUSR | stat.S_IWUSR)
            adata, info = _read_mtx_dir(
                root / folder, only_prefix=prefix, origin=f"archive '{p.name}' (folder '{folder}')"
            )
    where = "" if folder == "." else f"{folder}/"
    info["notes"] = [f"extracted {where}{prefix}matrix.mtx from the {kind} archive"] + notes + info["notes"]
    return adata, info


# --------------------------------------------------------------------------- text tables

_ENSEMBL_RE = r"^ENS[A-Z]*G\d{5,}(?:\.\d+)?$"
_SYMBOL_RE = r"^[A-Za-z][A-Za-z0-9]*(?:[\-\.][A-Za-z0-9]+)*$"
_BARCODE_RE = r"[ACGT]{8,}"
_CELLISH_RE = r"(?i)cell|^[A-Za-z0-9.\-]*[_:#]\d+$|^[SED]RR\d+$"
_NUMERIC_RE = r"^\d+(?:\.\d+)?$"


def _name_profile(names) -> dict[str, tuple[float, str]]:
    """Fraction (and an example) of names of each kind, on a sample of up to 2000."""
    s = pd.Index(names).astype(str)
    if len(s) > 2000:
        s = s[np.linspace(0, len(s) - 1, 2000).astype(int)]
    s = pd.Series(s)
    if s.empty:
        return {}
    masks = {
        "Ensembl gene IDs": s.str.match(_ENSEMBL_RE),
        "cell barcodes": s.str.contains(_BARCODE_RE),
        "cell names": s.str.contains(_CELLISH_RE),
        "numbers": s.str.match(_NUMERIC_RE),
    }
    cellish = masks["cell barcodes"] | masks["cell names"]
    masks["cell names"] = masks["cell names"] & ~masks["cell barcodes"]
    masks["gene symbols"] = s.str.match(_SYMBOL_RE) & ~cellish & ~masks["Ensembl gene IDs"] & (s.str.len() <= 25)
    return {k: (float(m.mean()), str(s[m].iloc[0]) if m.any() else "") for k, m in masks.items()}


def _geneness(profile: dict[str, tuple[float, str]]) -> float:
    if not profile:
        return 0.0
    return (
        profile["Ensembl gene IDs"][0]
        + 0.5 * profile["gene symbols"][0]
        - profile["cell barcodes"][0]
        - profile["cell names"][0]
    )


def _describe(profile: dict[str, tuple[float, str]]) -> str:
    if not profile:
        return "no names"
    kind, (frac, example) = max(profile.items(), key=lambda kv: kv[1][0])
    if frac < 0.3:
        return "names of no recognisable kind"
    return f"{frac:.0%} look like {kind} (e.g. '{example}')"


def _guess_orientation(row_names, col_names, n_rows: int, n_cols: int) -> tuple[str, str, bool]:
    """Guess whether rows are cells or genes from their names; fall back to the shape.

    Returns (orientation, reason, confident) where confident is False for the shape fallback.
    """
    rp, cp = _name_profile(row_names), _name_profile(col_names)
    diff = _geneness(rp) - _geneness(cp)
    desc = f"row names: {_describe(rp)}; column names: {_describe(cp)}"
    if diff > 0.25:
        return "genes_x_cells", f"rows look like genes and columns like cells ({desc})", True
    if diff < -0.25:
        return "cells_x_genes", f"rows look like cells and columns like genes ({desc})", True
    if n_rows > n_cols:
        return (
            "genes_x_cells",
            f"names do not tell cells from genes ({desc}); there are more rows ({n_rows}) than "
            "columns, and tables usually have more genes than cells",
            False,
        )
    return (
        "cells_x_genes",
        f"names do not tell cells from genes ({desc}); there are at least as many columns "
        f"({n_cols}) as rows ({n_rows}), and tables usually have more genes than cells",
        False,
    )


def _head_bytes(p: Path, gz: bool) -> bytes:
    """The first bytes of a (possibly gzipped) file, for sniffing its separator and encoding."""
    if gz:
        with _archive.open_gzip(p) as fh:
            return fh.read(_sniff.HEAD_BYTES)
    with open(p, "rb") as fh:
        return fh.read(_sniff.HEAD_BYTES)


_ENCODING_NAMES = {
    "cp1252": "Windows-1252 (cp1252, Latin-1 with a few more characters)",
    "latin-1": "Latin-1 (ISO-8859-1)",
}


def _parse_table(p: Path, fmt: _sniff.TextFormat, gz: bool) -> tuple[pd.DataFrame, pd.DataFrame, str, Exception | None]:
    """Parse with the sniffed separator; UTF-8 first, then cp1252 and Latin-1 (which decodes any bytes).

    Returns (table, raw header row, encoding used, the UTF-8 error that made it fall back or None).
    """
    encodings = [fmt.encoding] if fmt.encoding != "utf-8" else ["utf-8", "cp1252", "latin-1"]
    first_err: Exception | None = None
    for enc in encodings:
        def src():
            return _archive.open_gzip(p) if gz else p

        try:
            df = pd.read_csv(src(), sep=fmt.sep, index_col=0, encoding=enc, decimal=fmt.decimal)
            # pandas renames repeated headers ('A', 'A.1'); take the raw header to rename consistently.
            header = pd.read_csv(src(), sep=fmt.sep, header=None, nrows=1, dtype=str, keep_default_na=False,
                                 encoding=enc)
            return df, header, enc, first_err
        except UnicodeDecodeError as err:
            first_err = first_err or err
    raise AssertionError("latin-1 decodes every byte")  # pragma: no cover


def _check_not_truncated(p: Path, fmt: _sniff.TextFormat, enc: str, n_cols: int) -> None:
    """A plain text table whose last line has no line end and too few values was cut short."""
    if enc.startswith("utf-16"):
        return
    size = p.stat().st_size
    with open(p, "rb") as fh:
        fh.seek(max(0, size - (1 << 16)))
        tail = fh.read()
    if not tail or tail.endswith((b"\n", b"\r")):
        return
    last = tail.decode(enc, errors="replace").splitlines()[-1]
    try:
        n = len(last.split()) if fmt.sep == r"\s+" else len(next(csv.reader([last], delimiter=fmt.sep)))
    except (csv.Error, StopIteration):
        return
    if n < n_cols:
        raise InputError(
            f"Could not read '{p.name}': its last line has {n} of the {n_cols} values of the other lines and no "
            "line end, so the file is truncated (an interrupted copy or download). Copy or export it again."
        )


def _read_table(p: Path, orientation: str) -> tuple[anndata.AnnData, dict]:
    lower = p.name.lower()
    gz = lower.endswith(".gz")
    ext_sep = "," if ".csv" in lower else "\t" if ".tsv" in lower else None
    info = _info("csv")
    try:
        head = _head_bytes(p, gz)
    except OSError as err:
        raise InputError(f"Could not read '{p.name}' ({_why(err)}).") from err
    fmt = _sniff.sniff_text(head, ext_sep or "\t")
    if ext_sep is not None and fmt.sep != ext_sep:
        info["notes"].append(
            f"columns are separated by {_sniff.separator_name(fmt.sep)}, not "
            f"{_sniff.separator_name(ext_sep)} as the name '{p.name}' suggests; read them so"
        )
    elif ext_sep is None:
        info["notes"].append(f"columns are separated by {_sniff.separator_name(fmt.sep)}")
    if fmt.decimal == ",":
        info["notes"].append("numbers use a decimal comma (1,5); read them as such")
    if fmt.encoding.startswith("utf-16"):
        info["notes"].append("the text is UTF-16 (Excel's 'Unicode text'); read it as such")
    try:
        df, header, enc, utf8_err = _parse_table(p, fmt, gz)
    except InputError:
        raise
    except pd.errors.EmptyDataError as err:
        raise InputError(f"Could not read '{p.name}': the table is empty.") from err
    except MemoryError as err:
        raise _too_big(p, err) from err
    except EOFError as err:
        raise InputError(f"Could not read '{p.name}': it ends early, so the file is truncated ({_one_line(err)}).") from err
    except Exception as err:  # pandas' ParserError, ValueError, csv.Error, ... on damaged text
        raise InputError(
            f"Could not read '{p.name}' as a table ({_why(err)}). Expected a count matrix "
            f"separated by {_sniff.separator_name(fmt.sep)} with gene/cell names in the first row and column."
        ) from err
    if not gz:
        _check_not_truncated(p, fmt, enc, df.shape[1] + 1)
    if utf8_err is not None:
        names = [str(x) for x in (*df.index[:2000], *df.columns[:2000])]
        odd = next((x for x in names if not x.isascii()), None)
        example = f" (e.g. {odd!r})" if odd else ""
        msg = (
            f"'{p.name}' is not UTF-8 text (byte 0x{utf8_err.object[utf8_err.start]:02x} at position "
            f"{utf8_err.start:,}); read it as {_ENCODING_NAMES.get(enc, enc)}. Check that names with accents look "
            f"right{example}, or save the file as 'CSV UTF-8'"
        )
        info["notes"].append(msg)
        warnings.warn(msg, InputRepresentationWarning, stacklevel=3)
    if df.shape[0] == 0 or df.shape[1] == 0:
        why = (
            f" (no line splits into columns at {_sniff.separator_name(fmt.sep)} or any other separator)"
            if df.shape[1] == 0 else ""
        )
        raise InputError(
            f"Could not read '{p.name}': the table has {df.shape[0]} data rows and {df.shape[1]} "
            f"columns after the name column{why}; it needs names in the first column and counts after it."
        )
    raw_cols = list(header.iloc[0].astype(str))
    if len(raw_cols) == df.shape[1] + 1:
        raw_cols = raw_cols[1:]
    if len(raw_cols) == df.shape[1]:
        df.columns = pd.Index(raw_cols)

    numeric = [pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t) for t in df.dtypes]
    bad = [j for j, ok in enumerate(numeric) if not ok]  # positions: column names may repeat
    if bad:
        col = df.columns[bad[0]]
        vals = df.iloc[:, bad[0]].dropna()
        num = pd.to_numeric(vals, errors="coerce")
        example = vals[num.isna()]
        ex = f" (e.g. {str(example.iloc[0])!r})" if len(example) else ""
        more = f" and {len(bad) - 1} more" if len(bad) > 1 else ""
        raise InputError(
            f"Could not read '{p.name}': column {str(col)!r}{more} is not numeric{ex}. A count "
            "table must hold only numbers after the first (name) column; move annotations to a "
            "separate file."
        )

    if pd.api.types.is_numeric_dtype(df.index.dtype):
        info["notes"].append(
            "the first column holds numbers and was used as row names; if it is data, add a "
            "name column"
        )
    row_names = df.index.astype(str)
    col_names = pd.Index(df.columns).astype(str)
    if orientation == "auto":
        orient, reason, confident = _guess_orientation(row_names, col_names, *df.shape)
        if not confident:
            msg = (
                f"guessed that the table is {orient.replace('_x_', ' × ').replace('_', ' ')} from its "
                "shape only; if that is wrong, pass the orientation explicitly"
            )
            info["notes"].append(msg)
            warnings.warn(msg, InputRepresentationWarning, stacklevel=3)
    else:
        orient, reason = orientation, "given by the user"
        guess, why, confident = _guess_orientation(row_names, col_names, *df.shape)
        if confident and guess != orient:
            info["notes"].append(f"orientation {orient!r} was given, but the names suggest otherwise: {why}")
    info["orientation"], info["orientation_reason"] = orient, reason

    values = df.to_numpy(dtype=np.float32)
    if orient == "genes_x_cells":
        values, cells, genes = values.T, col_names, row_names
    else:
        cells, genes = row_names, col_names
    X = sparse.csr_matrix(values, dtype=np.float32)
    adata = _new_adata(X, pd.DataFrame(index=pd.Index(cells)), pd.DataFrame(index=pd.Index(genes)))
    _make_unique(adata, info, what="the table repeats some names")
    return adata, info
