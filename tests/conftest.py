"""Shared pytest fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# scapp is not pip-installed in the dev venv: make the repo root importable.
_REPO = Path(__file__).resolve().parent.parent
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Folder of the real read-only datasets (``<workspace>/shared/data``)."""
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


@pytest.fixture(scope="session")
def pbmc_small(shared_data: Path):
    """400 real pbmc3k cells (raw counts, 2,000 genes, 9 cell types), seeded."""
    import anndata as ad
    import numpy as np

    a = ad.read_h5ad(shared_data / "pbmc3k_seurat_hvg2000.h5ad")
    idx = np.sort(np.random.default_rng(0).choice(a.n_obs, 400, replace=False))
    a = a[idx].copy()
    del a.layers["lognorm_original"]
    return a


@pytest.fixture
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "runs"
    d.mkdir()
    monkeypatch.setenv("SCAPP_RUNS_DIR", str(d))
    return d
