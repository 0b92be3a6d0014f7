"""Write the bad-input corpus of issue 14: small files a new user might hand to scapp by mistake.

Every case is built from real cells (300 PBMC 3k cells of ``assets/demo_pbmc3k.h5ad``, 50 of each of the six
common cell types, the 500 most-expressed of its 2,000 genes, raw integer counts), then broken in one way. The
files are written at test time into a temporary folder (nothing binary is committed); by hand::

    .venv/bin/python tests/data/bad/make_bad.py /tmp/bad        # writes the corpus and prints the table

From a test::

    from tests.data.bad.make_bad import make_corpus, digest
    corpus = make_corpus(tmp_path)            # {name: Case(path, words, expect, about)}
    case = corpus["zip_bomb"]
    # case.path: the file (or 10x folder) to hand to scapp; case.words: words the message must hold
    # case.expect: where scapp should stop (see EXPECT); digest(case.path): sha256 of the file or folder

``expect`` says which stage should explain the problem:

* ``"error"``  — the reader refuses it: ``read_data`` raises an ``InputError`` and ``scapp info`` prints one
  ``scapp: error:`` line holding ``words``.
* ``"warn"``   — the reader reads it and says what it did: a ``read_info["notes"]`` entry holding ``words`` (shown by
  ``scapp info`` and the Data page), and for the risky guesses (an encoding other than UTF-8, renamed cell names)
  also an ``InputRepresentationWarning`` (a ``ScappWarning``).
* ``"ok"``     — a valid file that reads without complaint (e.g. a UTF-8 CSV with a byte-order mark).
* ``"train_error"`` / ``"predict_error"`` — readable, but training on it (label ``cell_type``) or annotating it
  with a model trained on the ``"base"`` case must be refused with ``words``.
* ``"train_ok"`` — readable and trainable; class names must come back unchanged (odd label characters).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import stat
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import scipy.io
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[3]
DEMO = REPO / "assets" / "demo_pbmc3k.h5ad"
LABEL = "cell_type"
CLASSES = ("CD4 T naive", "CD4 T memory", "CD14 Monocyte", "B", "CD8 T", "NK")
PER_CLASS = 50
N_GENES = 500
# A bomb only has to inflate past the readers' ratio floor (scapp.data.archive.RATIO_FLOOR); 100 MiB of zeros
# deflates to about 100 KB in about 0.2 s.
BOMB_BYTES = 100 << 20

EXPECT = ("error", "warn", "ok", "train_error", "predict_error", "train_ok")


class Case(NamedTuple):
    path: Path
    words: tuple[str, ...]
    expect: str
    about: str


# --------------------------------------------------------------------------- real cells


def base_adata():
    """300 real PBMC cells (50 per common type) × the 500 most-expressed genes, integer counts in CSR float32."""
    import anndata as ad

    full = ad.read_h5ad(DEMO)
    types = full.obs[LABEL].astype(str).to_numpy()
    idx = np.concatenate([np.flatnonzero(types == c)[:PER_CLASS] for c in CLASSES])
    totals = np.asarray(full.X.sum(axis=0)).ravel()
    genes = np.sort(np.argsort(-totals, kind="stable")[:N_GENES])
    a = full[np.sort(idx), genes].copy()
    a.X = sp.csr_matrix(a.X, dtype=np.float32)
    a.obs = pd.DataFrame({LABEL: a.obs[LABEL].astype(str).to_numpy()}, index=a.obs_names.copy())
    a.var = pd.DataFrame(index=a.var_names.copy())
    a.uns = {}
    return a


def tiny(a, n_cells: int = 40, n_genes: int = 60):
    """A few cells and genes for the text and archive cases (a few KB each)."""
    return a[:: max(1, a.n_obs // n_cells)][:n_cells, :n_genes].copy()


# --------------------------------------------------------------------------- writers


def digest(path: Path) -> str:
    """sha256 of a file, or of every file (name and bytes) under a folder."""
    p = Path(path)
    h = hashlib.sha256()
    if p.is_dir():
        for f in sorted(q for q in p.rglob("*") if q.is_file() or q.is_symlink()):
            h.update(str(f.relative_to(p)).encode())
            h.update(f.read_bytes() if f.is_file() and not f.is_symlink() else str(f.readlink()).encode())
    else:
        h.update(p.read_bytes())
    return h.hexdigest()


def table(a, *, sep: str = ",") -> str:
    """Cells × genes count table as text (cell names in the first column)."""
    X = a.X.toarray() if sp.issparse(a.X) else np.asarray(a.X)
    df = pd.DataFrame(X.astype(np.int64), index=pd.Index(a.obs_names, name="cell"), columns=a.var_names)
    return df.to_csv(sep=sep, lineterminator="\n")


def mtx_files(a) -> dict[str, bytes]:
    """The three 10x v3 files (gzipped) of an AnnData."""
    buf = io.BytesIO()
    scipy.io.mmwrite(buf, sp.coo_matrix(a.X.T), field="integer")
    feats = "".join(f"ENSG{i:011d}\t{g}\tGene Expression\n" for i, g in enumerate(a.var_names))
    bcs = "".join(f"{c}\n" for c in a.obs_names)
    return {
        "matrix.mtx.gz": gzip.compress(buf.getvalue(), mtime=0),
        "features.tsv.gz": gzip.compress(feats.encode(), mtime=0),
        "barcodes.tsv.gz": gzip.compress(bcs.encode(), mtime=0),
    }


def write_h5ad(a, path: Path) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata's notes on duplicate names, on purpose here
        a.write_h5ad(path)
    return path


def write_10x_h5(a, path: Path) -> Path:
    """Cell Ranger v3 HDF5: CSC genes × cells, which is CSR cells × genes, so indptr runs over cells."""
    import h5py

    X = sp.csr_matrix(a.X)
    ids = a.var["gene_ids"] if "gene_ids" in a.var else [f"ENSG{i:011d}" for i in range(a.n_vars)]
    with h5py.File(path, "w") as f:
        m = f.create_group("matrix")
        m["data"] = X.data.astype(np.int32)
        m["indices"] = X.indices.astype(np.int64)
        m["indptr"] = X.indptr.astype(np.int64)
        m["shape"] = np.array([a.n_vars, a.n_obs], dtype=np.int32)
        m["barcodes"] = np.array(a.obs_names, dtype="S")
        feats = m.create_group("features")
        feats["id"] = np.array(ids, dtype="S")
        feats["name"] = np.array(a.var_names, dtype="S")
        feats["feature_type"] = np.array(["Gene Expression"] * a.n_vars, dtype="S")
        feats["genome"] = np.array(["GRCh38"] * a.n_vars, dtype="S")
    return path


def write_zip(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def write_tar_gz(path: Path, files: dict[str, bytes], *, links: dict[str, tuple[bytes, str]] | None = None) -> Path:
    """A tar.gz of plain files, plus ``links``: {name: (tarfile type, target)} for links."""
    with tarfile.open(path, "w:gz") as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            t.addfile(info, io.BytesIO(data))
        for name, (kind, target) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            t.addfile(info)
    return path


def write_zip_bomb(path: Path, inflated: int = BOMB_BYTES, *, member: str = "matrix.mtx",
                   chunk: int = 1 << 20) -> Path:
    """A zip whose ``member`` is ``inflated`` bytes of zeros at deflate level 9 (about 1,000:1), beside a real
    features.tsv and barcodes.tsv so that a reader gets as far as the matrix. Streams the zeros in chunks."""
    zeros = bytes(chunk)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("features.tsv", "ENSG00000000001\tGENE1\tGene Expression\n")
        z.writestr("barcodes.tsv", "AAACCTGAGAAACCAT-1\n")
        with z.open(member, "w", force_zip64=inflated >= (1 << 31) - 1) as f:
            left = inflated
            while left > 0:
                f.write(zeros[: min(chunk, left)])
                left -= chunk
    return path


class _Zeros(io.RawIOBase):
    def __init__(self, n: int) -> None:
        self.left = n

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), self.left)
        b[:n] = bytes(n)
        self.left -= n
        return n


def write_tar_bomb(path: Path, inflated: int = BOMB_BYTES) -> Path:
    """A tar.gz whose matrix.mtx is ``inflated`` bytes of zeros."""
    with tarfile.open(path, "w:gz", compresslevel=9) as t:
        for name, data in (("features.tsv", b"ENSG00000000001\tGENE1\n"), ("barcodes.tsv", b"AAACCTGAGAAACCAT-1\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("matrix.mtx")
        info.size = inflated
        t.addfile(info, _Zeros(inflated))
    return path


def write_gz_bomb(path: Path, inflated: int = BOMB_BYTES, *, head: bytes = b"") -> Path:
    """A gzip file of ``head`` then zeros (a .csv.gz or matrix.mtx.gz that inflates far beyond its size)."""
    zeros = bytes(1 << 20)
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(head)
        left = inflated
        while left > 0:
            f.write(zeros[: min(len(zeros), left)])
            left -= len(zeros)
    return path


def declare_zip_size(path: Path, member: str, size: int) -> Path:
    """Rewrite the sizes a small zip declares for ``member`` (central directory, as zip64) to ``size`` bytes,
    without writing that much: what a reader that checks declared sizes sees of a 2 GiB member."""
    with zipfile.ZipFile(path) as z:
        files = {i.filename: z.read(i) for i in z.infolist()}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
        infos = {i.filename: i for i in z.infolist()}
        infos[member].file_size = size  # written to the central directory on close (zip64 extra when large)
    path.write_bytes(out.getvalue())
    return path


# --------------------------------------------------------------------------- content changes


def _lognorm(a):
    X = sp.csr_matrix(a.X, dtype=np.float32)
    tot = np.asarray(X.sum(axis=1)).ravel()
    X = sp.diags(1e4 / np.maximum(tot, 1)) @ X
    X.data = np.log1p(X.data)
    a.X = sp.csr_matrix(X, dtype=np.float32)
    return a


def _scaled(a):
    X = np.log1p(a.X.toarray())
    X = (X - X.mean(0)) / np.maximum(X.std(0), 1e-6)
    a.X = np.clip(X, -10, 10).astype(np.float32)
    return a


def _relabel(a, mapping: dict[str, str]):
    a.obs[LABEL] = a.obs[LABEL].astype(str).replace(mapping)
    return a


ODD_LABELS = {
    "labels_slash": {"CD4 T naive": "CD4 T/naive", "CD8 T": "CD8/T"},
    "labels_punct": {"CD4 T naive": 'CD4 T, "naive"', "B": "B cell; it's 'mature'"},
    "labels_newline": {"NK": "NK\ncell", "CD14 Monocyte": "CD14\r\nMonocyte"},
    "labels_nonlatin": {"CD4 T naive": "Т-клетки CD4", "B": "B細胞", "NK": "خلايا NK", "CD8 T": "CD8 T Ελληνικά"},
}


# --------------------------------------------------------------------------- the corpus


def make_corpus(out: str | Path) -> dict[str, Case]:
    """Write every case into ``out`` (created) and return ``{name: Case}``; takes about two seconds."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    base = base_adata()
    small = tiny(base)
    rng = np.random.default_rng(0)
    cases: dict[str, Case] = {}

    def add(name: str, path: Path, words, expect: str, about: str) -> None:
        assert expect in EXPECT, expect
        cases[name] = Case(Path(path), tuple(words), expect, about)

    def sub(name: str) -> Path:
        d = out / name
        d.mkdir(exist_ok=True)
        return d

    good_h5ad = write_h5ad(base, out / "base.h5ad")
    add("base", good_h5ad, [], "ok", "the valid base: 300 real cells, 6 types, 500 genes")
    good_bytes = good_h5ad.read_bytes()
    csv_text = table(small)
    mtx = mtx_files(small)

    # ---- unreadable files
    (p := out / "empty.h5ad").write_bytes(b"")
    add("empty_file", p, ["empty.h5ad", "empty", "0 bytes"], "error", "a 0-byte file")
    (p := out / "truncated.h5ad").write_bytes(good_bytes[: len(good_bytes) // 2])
    add("truncated_h5ad", p, ["truncated.h5ad", "truncated or corrupt"], "error", "an h5ad cut in half")
    (p := out / "random.h5ad").write_bytes(rng.integers(0, 256, 8_000, dtype=np.uint8).tobytes())
    add("random_bytes_h5ad", p, ["random.h5ad", "not a valid h5ad"], "error", "random bytes named .h5ad")
    lines = csv_text.splitlines(keepends=True)
    cut = "".join(lines[:-3]) + lines[-3][: len(lines[-3]) // 2]
    (p := out / "truncated.csv").write_text(cut)
    add("truncated_csv", p, ["truncated.csv", "truncated"], "error", "a CSV cut in the middle of a row")
    gz = gzip.compress(csv_text.encode(), mtime=0)
    (p := out / "truncated.csv.gz").write_bytes(gz[: len(gz) // 2])
    add("truncated_csv_gz", p, ["truncated.csv.gz", "truncated"], "error", "a .csv.gz cut in half")
    zbytes = write_zip(out / "_whole.zip", mtx).read_bytes()
    (out / "_whole.zip").unlink()
    (p := out / "truncated.zip").write_bytes(zbytes[: len(zbytes) // 2])
    add("truncated_zip", p, ["truncated.zip", "not a valid zip"], "error", "a 10x zip cut in half")
    tbytes = write_tar_gz(out / "_whole.tar.gz", mtx).read_bytes()
    (out / "_whole.tar.gz").unlink()
    (p := out / "truncated.tar.gz").write_bytes(tbytes[: len(tbytes) // 2])
    add("truncated_tar_gz", p, ["truncated.tar.gz", "truncated"], "error", "a 10x tar.gz cut in half")
    (p := out / "header_only.csv").write_text(lines[0])
    add("header_only_csv", p, ["header_only.csv", "0 data rows"], "error", "a CSV with a header and no rows")
    (p := out / "ragged.csv").write_text("".join(lines[:5]) + lines[5].rstrip("\n") + ",7,7\n" + "".join(lines[6:]))
    add("ragged_csv", p, ["ragged.csv", "line 6"], "error", "a CSV whose 5th row has two extra values")
    ann = pd.read_csv(io.StringIO(csv_text), index_col=0)
    ann.insert(3, LABEL, small.obs[LABEL].to_numpy())
    (p := out / "annotated.csv").write_text(ann.to_csv(lineterminator="\n"))
    add("non_numeric_csv", p, ["annotated.csv", "not numeric", LABEL], "error", "a count table with a label column")

    # ---- h5ad without X
    import h5py

    noX = base.copy()
    noX.layers["counts"] = noX.X.copy()
    p = write_h5ad(noX, out / "no_x.h5ad")
    with h5py.File(p, "a") as f:
        del f["X"]
    add("h5ad_without_x", p, ["no main matrix", "counts"], "error", "an h5ad whose X was deleted (counts in a layer)")

    # ---- wrong names for what the bytes are
    (p := out / "cells.csv").write_bytes(good_bytes)
    add("h5ad_renamed_csv", p, ["cells.csv", "HDF5", "h5ad", "rename"], "error", "an h5ad renamed .csv")
    (p := out / "matrix_zip.csv").write_bytes(zbytes)
    add("zip_renamed_csv", p, ["matrix_zip.csv", "zip", "rename"], "error", "a 10x zip renamed .csv")
    (p := out / "table.h5ad").write_text(csv_text)
    add("csv_renamed_h5ad", p, ["table.h5ad", "text", ".csv"], "error", "a CSV renamed .h5ad")
    (p := out / "gzipped.csv").write_bytes(gz)
    add("gzip_renamed_csv", p, ["gzipped.csv", "gzip", ".csv.gz"], "error", "a .csv.gz renamed .csv")
    xlsx = {"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<workbook/>", "xl/worksheets/sheet1.xml": b"<x/>"}
    p = write_zip(out / "counts.xlsx", xlsx)
    add("excel_xlsx", p, ["counts.xlsx", "Excel", "CSV"], "error", "an Excel workbook")

    # ---- 10x folders and archives
    d = sub("tenx_no_features")
    for name in ("matrix.mtx.gz", "barcodes.tsv.gz"):
        (d / name).write_bytes(mtx[name])
    add("tenx_missing_features", d, ["features.tsv", "barcodes"], "error", "a 10x folder without features.tsv")
    d = sub("tenx_shape_mismatch")
    for name, data in mtx.items():
        if name.startswith("features"):
            data = gzip.compress(b"".join(gzip.decompress(data).splitlines(keepends=True)[:-1]), mtime=0)
        (d / name).write_bytes(data)
    add("tenx_shape_mismatch", d, ["same 10x run"], "error", "a 10x folder whose features.tsv lacks one gene")
    p = write_zip(out / "no_features.zip", {k: v for k, v in mtx.items() if not k.startswith("features")})
    add("zip_missing_features", p, ["no_features.zip", "features.tsv"], "error", "a 10x zip without features.tsv")
    p = write_zip(out / "traversal.zip", {f"../../evil/{k}": v for k, v in mtx.items()})
    add("zip_traversal", p, ["traversal.zip", "outside the archive"], "error", "a zip with ../ entries (zip slip)")
    p = write_zip(out / "absolute.zip", {f"/tmp/evil/{k}": v for k, v in mtx.items()})
    add("zip_absolute", p, ["absolute.zip", "outside the archive"], "error", "a zip with absolute paths")
    p = write_tar_gz(out / "traversal.tar.gz", {f"../evil/{k}": v for k, v in mtx.items()})
    add("tar_traversal", p, ["traversal.tar.gz", "outside the archive"], "error", "a tar.gz with ../ entries")
    p = write_tar_gz(out / "symlink.tar.gz", {k: v for k, v in mtx.items() if not k.startswith("features")},
                     links={"features.tsv.gz": (tarfile.SYMTYPE, "/etc/passwd")})
    add("tar_symlink", p, ["symlink.tar.gz", "links"], "error", "a tar.gz whose features file links to /etc/passwd")
    p = write_tar_gz(out / "hardlink.tar.gz", {k: v for k, v in mtx.items() if not k.startswith("features")},
                     links={"features.tsv.gz": (tarfile.LNKTYPE, "/etc/passwd")})
    add("tar_hardlink", p, ["hardlink.tar.gz", "links"], "error", "a tar.gz with a hard link out of the archive")
    p = out / "symlink.zip"
    with zipfile.ZipFile(p, "w") as z:
        for name, data in mtx.items():
            if not name.startswith("features"):
                z.writestr(name, data)
        link = zipfile.ZipInfo("features.tsv.gz")
        link.create_system = 3  # unix: the mode bits below are honoured by unzip
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(link, "/etc/passwd")
    add("zip_symlink", p, ["symlink.zip", "link"], "error", "a zip whose features entry is a symbolic link")

    # ---- bombs
    p = write_zip_bomb(out / "bomb.zip")
    add("zip_bomb", p, ["bomb.zip", "matrix.mtx", "compression ratio"], "error",
        f"a {p.stat().st_size // 1024} KB zip whose matrix.mtx inflates to {BOMB_BYTES >> 20} MiB of zeros")
    p = write_zip(out / "declared_2gib.zip", {"matrix.mtx": b"%%MatrixMarket matrix coordinate integer general\n",
                                                "features.tsv": b"G1\tG1\n", "barcodes.tsv": b"C1\n"})
    declare_zip_size(p, "matrix.mtx", 2 << 30)
    add("zip_declares_2gib", p, ["declared_2gib.zip", "matrix.mtx", "compression ratio"], "error",
        "a 1 KB zip whose directory declares a 2 GiB matrix.mtx")
    p = write_tar_bomb(out / "bomb.tar.gz")
    add("tar_bomb", p, ["bomb.tar.gz", "matrix.mtx", "compression ratio"], "error",
        f"a tar.gz whose matrix.mtx inflates to {BOMB_BYTES >> 20} MiB of zeros")
    p = write_gz_bomb(out / "bomb.csv.gz", head=lines[0].encode())
    add("gz_bomb_csv", p, ["bomb.csv.gz", "compression ratio"], "error",
        f"a .csv.gz of a header then {BOMB_BYTES >> 20} MiB of zeros")
    d = sub("tenx_gz_bomb")
    (d / "features.tsv.gz").write_bytes(mtx["features.tsv.gz"])
    (d / "barcodes.tsv.gz").write_bytes(mtx["barcodes.tsv.gz"])
    write_gz_bomb(d / "matrix.mtx.gz", head=b"%%MatrixMarket matrix coordinate integer general\n")
    add("tenx_gz_bomb", d, ["matrix.mtx.gz", "compression ratio"], "error",
        f"a 10x folder whose matrix.mtx.gz inflates to {BOMB_BYTES >> 20} MiB")

    # ---- readable with a warning or a note
    odd = small.copy()
    odd.obs_names = pd.Index([f"Zelle_{i}_é" if i % 7 == 0 else n for i, n in enumerate(odd.obs_names)])
    (p := out / "latin1.csv").write_bytes(table(odd).encode("latin-1"))
    add("latin1_csv", p, ["latin1.csv", "UTF-8", "1252"], "warn", "a CSV in Latin-1 (Excel on Windows)")
    (p := out / "semicolon.csv").write_text(table(small, sep=";"))
    add("semicolon_csv", p, ["separated by ';'"], "warn", "a ';'-separated CSV (European Excel)")
    (p := out / "tabs.csv").write_text(table(small, sep="\t"))
    add("tab_csv", p, ["separated by tabs"], "warn", "a tab-separated file named .csv")
    (p := out / "bom.csv").write_bytes(b"\xef\xbb\xbf" + csv_text.encode())
    add("utf8_bom_csv", p, [], "ok", "a UTF-8 CSV with a byte-order mark")
    (p := out / "excel_unicode.txt").write_bytes(table(odd, sep="\t").encode("utf-16"))
    add("utf16_txt", p, ["UTF-16"], "warn", "Excel's 'Unicode text' (UTF-16, tab-separated)")
    dup = base.copy()
    names = dup.obs_names.to_numpy().copy()
    names[[10, 20, 30]] = names[[0, 1, 2]]
    dup.obs_names = pd.Index(names)
    p = write_h5ad(dup, out / "dup_cells.h5ad")
    add("dup_cells_h5ad", p, ["3 duplicated cell names", "unique"], "warn", "an h5ad with 3 repeated cell names")
    dsmall = small.copy()
    dn = dsmall.obs_names.to_numpy().copy()
    dn[[5, 6]] = dn[0]
    dsmall.obs_names = pd.Index(dn)
    (p := out / "dup_cells.csv").write_text(table(dsmall))
    add("dup_cells_csv", p, ["2 duplicated cell names", "unique"], "warn", "a CSV with a cell name three times")

    # ---- readable; refused (or fine) when training or annotating
    def h5(name: str, a, words, expect: str, about: str) -> None:
        add(name, write_h5ad(a, out / f"{name}.h5ad"), words, expect, about)

    a = base.copy()
    a.X.data[::97] = np.nan
    h5("nan", a, ["NaN"], "train_error", "NaN in X")
    a = base.copy()
    a.X.data[::97] = np.inf
    h5("inf", a, ["infinite"], "train_error", "inf in X")
    a = base.copy()
    a.X.data[::5] *= -1
    h5("negative", a, ["negative"], "train_error", "negative counts")
    h5("lognorm", _lognorm(base.copy()), ["not look like raw counts", "log"], "train_error",
       "log-normalized X (no counts anywhere)")
    h5("scaled", _scaled(base.copy()), ["negative"], "train_error", "scaled X (z-scores, dense)")
    a = base.copy()
    keep = np.ones(a.n_obs, dtype=np.float32)
    keep[np.flatnonzero(a.obs[LABEL].to_numpy() == "B")[:5]] = 0
    a.X = sp.csr_matrix(sp.diags(keep) @ a.X, dtype=np.float32)
    a.X.eliminate_zeros()
    h5("zero_cells", a, ["5 cells", "zero counts", "--drop-empty-cells"], "train_error", "5 cells with no counts")
    a = base.copy()
    keep = np.ones(a.n_vars, dtype=np.float32)
    keep[[3, 4, 5]] = 0
    a.X = sp.csr_matrix(a.X @ sp.diags(keep), dtype=np.float32)
    a.X.eliminate_zeros()
    h5("zero_genes", a, [], "train_ok", "3 genes with no counts in any cell")
    a = base.copy()
    names = a.var_names.to_numpy().copy()
    names[10], names[11] = names[0], names[1]
    a.var_names = pd.Index(names)
    h5("dup_genes", a, ["2 duplicated gene names"], "train_error", "2 repeated gene names")
    h5("two_cells", base[[0, 60]].copy(), ["cells"], "train_error", "two cells of two types")
    a = base.copy()
    a.var_names = pd.Index([f"ENSG{1000 + i:011d}" for i in range(a.n_vars)])
    h5("ensembl_ids", a, ["Ensembl"], "predict_error", "the base cells with Ensembl IDs instead of symbols")
    a = base.copy()
    names = a.var_names.to_numpy().copy()
    names[200:] = [f"NOTAGENE{i}" for i in range(names.size - 200)]
    a.var_names = pd.Index(names)
    h5("few_shared_genes", a, ["only 200", "at least 250"], "predict_error", "only 200 genes shared with the base")
    for name, mapping in ODD_LABELS.items():
        h5(name, _relabel(base.copy(), mapping), list(mapping.values()), "train_ok",
           "labels with " + name.split("_", 1)[1].replace("punct", "commas and quotes"))
    return cases


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: make_bad.py OUT_DIR", file=sys.stderr)
        return 2
    corpus = make_corpus(argv[0])
    width = max(map(len, corpus))
    for name, c in corpus.items():
        size = sum(f.stat().st_size for f in c.path.rglob("*")) if c.path.is_dir() else c.path.stat().st_size
        print(f"{name:<{width}}  {c.expect:<13} {size:>9,} B  {c.path.name:<22} {c.about}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
