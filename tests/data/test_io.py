"""read_data on every supported format, written from a slice of real PBMC counts."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import warnings
import zipfile
from pathlib import Path

import anndata
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.io
from scipy import sparse

from scapp.data import SUPPORTED, load_dataset, read_data
from scapp.errors import InputError, InputRepresentationWarning, UnsupportedFormatError

N_CELLS, N_GENES = 200, 500


@pytest.fixture(scope="module")
def small(assets: Path) -> anndata.AnnData:
    """200 real cells × the 500 most-expressed genes of the pbmc4k demo query (integer counts)."""
    full = anndata.read_h5ad(assets / "demo_pbmc4k_query.h5ad")
    cells = np.linspace(0, full.n_obs - 1, N_CELLS).astype(int)
    totals = np.asarray(full.X.sum(axis=0)).ravel()
    genes = np.sort(np.argsort(-totals, kind="stable")[:N_GENES])
    a = full[cells, genes].copy()
    a.X = sparse.csr_matrix(a.X, dtype=np.float32)
    a.obs = a.obs[["cell_type", "cell_type_coarse"]].copy()
    a.var = pd.DataFrame(index=a.var_names.copy())
    a.var["gene_ids"] = [f"ENSG{i:011d}" for i in range(a.n_vars)]  # pbmc4k has symbols only
    return a


def _gz(path: Path, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data, mtime=0))


def write_mtx_folder(a: anndata.AnnData, d: Path, *, names=None, ftypes=None) -> Path:
    """10x v3 layout: genes × cells matrix.mtx.gz, features.tsv.gz (id/name/type), barcodes."""
    d.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    scipy.io.mmwrite(buf, sparse.coo_matrix(a.X.T), field="integer")
    _gz(d / "matrix.mtx.gz", buf.getvalue())
    names = list(a.var_names) if names is None else names
    ftypes = ["Gene Expression"] * a.n_vars if ftypes is None else ftypes
    feats = pd.DataFrame({"id": a.var["gene_ids"], "name": names, "type": ftypes})
    _gz(d / "features.tsv.gz", feats.to_csv(sep="\t", header=False, index=False))
    _gz(d / "barcodes.tsv.gz", "\n".join(a.obs_names) + "\n")
    return d


def write_10x_h5(a: anndata.AnnData, path: Path) -> Path:
    """10x v3 HDF5: CSC genes × cells == CSR cells × genes, so indptr runs over cells."""
    X = sparse.csr_matrix(a.X)
    with h5py.File(path, "w") as f:
        m = f.create_group("matrix")
        m["data"] = X.data.astype(np.int32)
        m["indices"] = X.indices.astype(np.int64)
        m["indptr"] = X.indptr.astype(np.int64)
        m["shape"] = np.array([a.n_vars, a.n_obs], dtype=np.int32)
        m["barcodes"] = np.array(a.obs_names, dtype="S")
        feats = m.create_group("features")
        feats["id"] = np.array(a.var["gene_ids"], dtype="S")
        feats["name"] = np.array(a.var_names, dtype="S")
        feats["feature_type"] = np.array(["Gene Expression"] * a.n_vars, dtype="S")
        feats["genome"] = np.array(["GRCh38"] * a.n_vars, dtype="S")
    return path


@pytest.fixture(scope="module")
def files(small: anndata.AnnData, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("formats")
    out: dict[str, Path] = {}
    a = small.copy()
    a.layers["counts"] = a.X.copy()
    a.obsm["X_fake"] = np.arange(a.n_obs * 2, dtype=np.float32).reshape(-1, 2)
    a.uns["source"] = {"name": "pbmc4k slice"}
    out["h5ad"] = root / "small.h5ad"
    a.write_h5ad(out["h5ad"])

    mtx = write_mtx_folder(small, root / "mtx" / "filtered_feature_bc_matrix")
    out["mtx"] = mtx
    out["zip"] = root / "small.zip"
    with zipfile.ZipFile(out["zip"], "w") as z:
        for f in sorted(mtx.iterdir()):
            z.write(f, f"sample1/outs/filtered_feature_bc_matrix/{f.name}")
    out["tar.gz"] = root / "small.tar.gz"
    with tarfile.open(out["tar.gz"], "w:gz") as t:
        t.add(mtx, arcname="filtered_feature_bc_matrix")
    out["tgz"] = root / "small.tgz"
    out["tgz"].write_bytes(out["tar.gz"].read_bytes())
    out["10x_h5"] = write_10x_h5(small, root / "small_10x.h5")

    dense = pd.DataFrame(small.X.toarray(), index=small.obs_names, columns=small.var_names)
    out["csv_cells_x_genes"] = root / "cells_x_genes.csv"
    dense.to_csv(out["csv_cells_x_genes"])
    out["csv_genes_x_cells"] = root / "genes_x_cells.csv.gz"
    dense.T.to_csv(out["csv_genes_x_cells"])
    out["tsv"] = root / "genes_x_cells.tsv"
    dense.T.to_csv(out["tsv"], sep="\t")
    out["txt"] = root / "cells_x_genes.txt"
    dense.to_csv(out["txt"], sep="\t")

    out["loom"] = root / "small.loom"
    small.write_loom(out["loom"])
    return out


def _sha(path: Path) -> str:
    if path.is_dir():
        return "".join(_sha(f) for f in sorted(path.iterdir()))
    return hashlib.sha256(path.read_bytes()).hexdigest()


EXPECTED_FORMAT = {
    "h5ad": "h5ad",
    "mtx": "10x_mtx",
    "zip": "10x_mtx",
    "tar.gz": "10x_mtx",
    "tgz": "10x_mtx",
    "10x_h5": "10x_h5",
    "csv_cells_x_genes": "csv",
    "csv_genes_x_cells": "csv",
    "tsv": "csv",
    "txt": "csv",
    "loom": "loom",
}


@pytest.mark.parametrize("key", list(EXPECTED_FORMAT))
def test_every_format_reads_back_the_same_matrix(key, files, small):
    path = files[key]
    before = _sha(path)
    adata, info = read_data(path)
    assert _sha(path) == before, "reading must not modify the input"

    assert info["format"] == EXPECTED_FORMAT[key]
    assert info["path"] == str(path)
    assert isinstance(adata.X, sparse.csr_matrix) and adata.X.dtype == np.float32
    assert adata.shape == (N_CELLS, N_GENES)
    assert list(adata.obs_names) == list(small.obs_names)
    assert list(adata.var_names) == list(small.var_names)
    assert (adata.X != small.X).nnz == 0
    if info["format"] == "csv":
        expected = "genes_x_cells" if "genes_x_cells" in path.name else "cells_x_genes"
        assert info["orientation"] == expected
        assert "look like" in info["orientation_reason"]
    else:
        assert info["orientation"] is None
    if info["format"] in ("10x_mtx", "10x_h5"):
        assert list(adata.var["gene_ids"]) == list(small.var["gene_ids"])


def test_h5ad_keeps_annotations(files):
    adata, info = read_data(files["h5ad"])
    assert info["notes"] == []
    assert list(adata.obs.columns) == ["cell_type", "cell_type_coarse"]
    assert isinstance(adata.obs["cell_type"].dtype, pd.CategoricalDtype)
    assert "counts" in adata.layers and "X_fake" in adata.obsm
    assert adata.uns["source"]["name"] == "pbmc4k slice"


def test_archive_note_and_cleanup(files, tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    _, info = read_data(files["zip"])
    assert any("zip archive" in n for n in info["notes"])
    assert list(tmp_path.iterdir()) == []  # extraction folder removed


def test_matrix_file_given_directly(files, small):
    adata, info = read_data(files["mtx"] / "matrix.mtx.gz")
    assert info["format"] == "10x_mtx" and adata.shape == small.shape


def test_cell_ranger_outs_folder_prefers_filtered(small, tmp_path):
    outs = tmp_path / "outs"
    write_mtx_folder(small, outs / "filtered_feature_bc_matrix")
    write_mtx_folder(small[:10], outs / "raw_feature_bc_matrix")
    adata, info = read_data(outs)
    assert adata.shape == small.shape
    assert any("filtered one" in n for n in info["notes"])
    other = tmp_path / "two_samples"
    write_mtx_folder(small[:10], other / "sample_a")
    write_mtx_folder(small[:20], other / "sample_b")
    with pytest.raises(InputError, match="several matrices.*sample_a.*sample_b"):
        read_data(other)


def test_h5_that_is_really_h5ad(files, tmp_path, small):
    p = tmp_path / "actually_anndata.h5"
    p.write_bytes(files["h5ad"].read_bytes())
    adata, info = read_data(p)
    assert info["format"] == "h5ad" and adata.shape == small.shape
    assert any("AnnData" in n for n in info["notes"])


def test_duplicate_symbols_and_other_features(small, tmp_path):
    names = list(small.var_names)
    names[1] = names[0]
    names[3] = names[0]
    ftypes = ["Gene Expression"] * (small.n_vars - 2) + ["Antibody Capture"] * 2
    d = write_mtx_folder(small, tmp_path / "dups", names=names, ftypes=ftypes)
    adata, info = read_data(d)
    assert adata.n_vars == small.n_vars - 2
    assert adata.var_names.is_unique
    assert adata.var_names[1] == f"{names[0]}-1" and adata.var_names[3] == f"{names[0]}-2"
    assert any("2 duplicated gene names unique" in n for n in info["notes"])
    assert any("2 Antibody Capture" in n for n in info["notes"])


def test_legacy_uncompressed_v2_folder(small, tmp_path):
    d = tmp_path / "v2"
    d.mkdir()
    scipy.io.mmwrite(d / "matrix.mtx", sparse.coo_matrix(small.X.T), field="integer")
    pd.DataFrame({"id": small.var["gene_ids"], "name": small.var_names}).to_csv(
        d / "genes.tsv", sep="\t", header=False, index=False
    )
    (d / "barcodes.tsv").write_text("\n".join(small.obs_names) + "\n")
    adata, info = read_data(d)
    assert info["format"] == "10x_mtx"
    assert (adata.X != small.X).nnz == 0


def test_csv_explicit_orientation_overrides(files, small):
    adata, info = read_data(files["csv_cells_x_genes"], orientation="genes_x_cells")
    assert adata.shape == (N_GENES, N_CELLS)
    assert info["orientation"] == "genes_x_cells" and info["orientation_reason"] == "given by the user"
    assert any("suggest otherwise" in n for n in info["notes"])


def test_csv_uninformative_names_fall_back_to_shape(tmp_path):
    p = tmp_path / "numbers.csv"
    rng = np.random.default_rng(0)
    pd.DataFrame(
        rng.poisson(1, size=(30, 10)), index=[f"r{i}" for i in range(30)], columns=[f"c{i}" for i in range(10)]
    ).to_csv(p)
    with pytest.warns(InputRepresentationWarning):
        adata, info = read_data(p)
    assert info["orientation"] == "genes_x_cells" and adata.shape == (10, 30)
    assert "more rows" in info["orientation_reason"]


def test_load_dataset_returns_qc(files):
    adata, qc = load_dataset(files["10x_h5"])
    assert qc.n_cells == adata.n_obs and qc.input_kind == "counts"
    assert qc.read_info["format"] == "10x_h5"


# --------------------------------------------------------------------------- bad inputs


def test_missing_path(tmp_path):
    with pytest.raises(InputError, match="No such file"):
        read_data(tmp_path / "nope.h5ad")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.h5ad"
    p.touch()
    with pytest.raises(InputError, match="empty"):
        read_data(p)


def test_truncated_h5ad(files, tmp_path):
    raw = files["h5ad"].read_bytes()
    p = tmp_path / "truncated.h5ad"
    p.write_bytes(raw[: len(raw) // 2])
    before = _sha(p)
    with pytest.raises(InputError, match="truncated or corrupt.*write_h5ad"):
        read_data(p)
    assert _sha(p) == before


def test_random_bytes_h5ad(tmp_path):
    p = tmp_path / "random.h5ad"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(InputError, match="not a valid h5ad"):
        read_data(p)


def test_unsupported_extension(tmp_path):
    p = tmp_path / "table.xlsx"
    p.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(UnsupportedFormatError) as exc:
        read_data(p)
    assert ".h5ad" in str(exc.value) and ".loom" in str(exc.value)
    assert SUPPORTED[-1] in str(exc.value)


def test_directory_without_matrix(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(UnsupportedFormatError, match="no matrix.mtx"):
        read_data(tmp_path)


def test_zip_with_path_traversal(files, tmp_path):
    p = tmp_path / "evil.zip"
    with zipfile.ZipFile(p, "w") as z:
        for f in sorted(files["mtx"].iterdir()):
            z.write(f, f"m/{f.name}")
        z.writestr("../evil", "gotcha")
    with pytest.raises(InputError, match="outside the archive"):
        read_data(p)
    assert not (tmp_path.parent / "evil").exists()


def test_tar_with_absolute_member(tmp_path):
    p = tmp_path / "abs.tar.gz"
    with tarfile.open(p, "w:gz") as t:
        data = b"x"
        ti = tarfile.TarInfo("/tmp/scapp_abs_evil")
        ti.size = len(data)
        t.addfile(ti, io.BytesIO(data))
    with pytest.raises(InputError, match="outside the archive"):
        read_data(p)


def test_archive_without_matrix(tmp_path):
    p = tmp_path / "other.zip"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("data/readme.md", "no matrix here")
        z.writestr("data/cells.h5ad", "x")
    with pytest.raises(InputError, match=r"no matrix\.mtx.*readme\.md.*cells\.h5ad"):
        read_data(p)


def test_csv_with_text_column(small, tmp_path):
    df = pd.DataFrame(small.X[:20, :5].toarray(), index=small.obs_names[:20], columns=small.var_names[:5])
    df.insert(2, "cell_type", small.obs["cell_type"].astype(str).values[:20])
    p = tmp_path / "with_text.csv"
    df.to_csv(p)
    with pytest.raises(InputError, match="column 'cell_type' is not numeric"):
        read_data(p)


def test_bad_orientation_value(files):
    with pytest.raises(InputError, match="orientation"):
        read_data(files["csv_cells_x_genes"], orientation="rows")  # type: ignore[arg-type]


def test_mtx_shape_mismatch(small, tmp_path):
    d = write_mtx_folder(small, tmp_path / "bad")
    _gz(d / "barcodes.tsv.gz", "\n".join(small.obs_names[:-1]) + "\n")
    with pytest.raises(InputError, match="same 10x run"):
        read_data(d)


def test_no_python_warnings_on_clean_inputs(files):
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputRepresentationWarning)
        warnings.simplefilter("error", FutureWarning)
        for key in ("h5ad", "mtx", "10x_h5", "csv_cells_x_genes", "loom"):
            read_data(files[key])
