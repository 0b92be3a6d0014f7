"""Fixtures for the marker tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def pancreas_small(shared_file):
    """1,200 real pancreas cells (raw counts, all genes, 8 types), seeded. Shared data only: skips without it."""
    import anndata as ad
    import numpy as np

    a = ad.read_h5ad(shared_file("mouse_pancreas_endocrinogenesis.h5ad"))
    idx = np.sort(np.random.default_rng(0).choice(a.n_obs, 1200, replace=False))
    a = a[idx].copy()
    del a.layers["unspliced"]
    return a
