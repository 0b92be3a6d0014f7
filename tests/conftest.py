"""Shared pytest fixtures.

Two sources of real cells:

* ``assets/`` (in the repository): the PBMC demo, ``demo_pbmc3k.h5ad`` (all 2,638 PBMC 3k cells, raw counts,
  2,000 genes, the same matrix as the shared ``pbmc3k_seurat_hvg2000.h5ad``) and ``demo_pbmc4k_query.h5ad``
  (1,500 PBMC 4k cells, raw counts, 3,000 genes). Most tests use these, so a fresh clone passes.
* the larger shared datasets, in ``../shared/data`` beside the repository (or wherever ``SCAPP_SHARED_DATA``
  points). A fresh clone has no such folder: tests that need one of its files ask for it with the
  ``shared_file`` fixture and skip with a one-line reason; CI has the folder and runs them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# scapp is not pip-installed in the dev venv: make the repo root importable.
_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

ASSETS = _REPO / "assets"
_ENV = "SCAPP_SHARED_DATA"  # the same variable bench/_common.py reads
SHARED_DATA = Path(os.environ.get(_ENV) or _REPO.parent / "shared" / "data")


def _missing(name: str = "") -> str:
    """One-line skip reason for a shared file (or the folder) that is not here."""
    if os.environ.get(_ENV):
        where = f"{name or 'the shared datasets'} in {_ENV}={os.environ[_ENV]}"
    else:
        where = f"../shared/data/{name}"
    return f"needs {where} (not in a fresh clone; CI has it)"


def shared_file(name: str) -> Path:
    """Path of one shared dataset; skips the asking test (or fixture) when the file is not there."""
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(_missing(name))
    return path


@pytest.fixture(scope="session", name="shared_file")
def shared_file_fixture() -> Callable[[str], Path]:
    """``shared_file("pbmc4k_10x_soupx.h5ad")`` -> its path, or skip: "needs ../shared/data/... (CI has it)"."""
    return shared_file


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the real read-only datasets (``../shared/data`` or ``$SCAPP_SHARED_DATA``); skips when absent.

    Prefer ``shared_file(name)``: it also skips when the folder is there but lacks that file.
    """
    if not SHARED_DATA.is_dir():
        pytest.skip(_missing())
    return SHARED_DATA


@pytest.fixture(scope="session")
def assets() -> Path:
    """The repository's ``assets/`` folder (the PBMC demo files ship with every clone)."""
    return ASSETS


@pytest.fixture(scope="session")
def pbmc_small():
    """400 real pbmc3k cells (raw counts, 2,000 genes, 9 cell types), seeded.

    Read from ``assets/demo_pbmc3k.h5ad``: the same cells, counts and labels as the shared
    ``pbmc3k_seurat_hvg2000.h5ad`` (only its ``lognorm_original`` layer and some obs columns dropped), so the
    seeded draw picks the very same 400 cells.
    """
    import anndata as ad
    import numpy as np

    a = ad.read_h5ad(ASSETS / "demo_pbmc3k.h5ad")
    idx = np.sort(np.random.default_rng(0).choice(a.n_obs, 400, replace=False))
    return a[idx].copy()


@pytest.fixture
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "runs"
    d.mkdir()
    monkeypatch.setenv("SCAPP_RUNS_DIR", str(d))
    return d
