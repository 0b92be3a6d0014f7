"""Issue 11, defect 10: the cell map's UMAP compiles umap-learn's numba functions once per machine (not once per
process), takes exact neighbours on display-sized samples, and a PCA of the same cells stands in meanwhile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scapp.evaluate.embedding import exact_knn, sample_pca, sample_umap, umap_module

REPO = Path(__file__).resolve().parents[2]


def test_exact_knn_lists_each_cell_first_then_its_nearest():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    idx, dist = exact_knn(X, 5)
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    assert idx.shape == dist.shape == (60, 5) and idx.dtype == np.int32 and dist.dtype == np.float32
    np.testing.assert_array_equal(idx[:, 0], np.arange(60))
    np.testing.assert_array_equal(idx, np.argsort(D, axis=1, kind="stable")[:, :5])
    np.testing.assert_allclose(dist, np.sort(D, axis=1)[:, :5], atol=1e-4)


def test_pca_stand_in_maps_the_same_cells_as_the_umap():
    rng = np.random.default_rng(1)
    labels = np.array(["common"] * 990 + ["rare"] * 10)
    latent = rng.normal(size=(1000, 6)).astype(np.float32)
    pca = sample_pca(latent, labels, max_cells=15)
    umap = sample_umap(latent, labels, max_cells=15)  # < 20 cells: PCA inside, no umap-learn
    np.testing.assert_array_equal(pca["index"], umap["index"])
    assert pca["pca"].shape == (15, 2) and np.isfinite(pca["pca"]).all()


def test_umap_module_gives_umap_learns_functions_an_on_disk_cache():
    from numba.core.caching import NullCache

    umap = umap_module()
    from umap import layouts

    assert umap.__name__ == "umap"
    # declared without cache=True by umap-learn; the serial epoch is cached, its parallel twin (same Python
    # function, so the same cache file name) is not
    assert not isinstance(layouts._nb_optimize_layout_euclidean_single_epoch._cache, NullCache)
    assert isinstance(layouts._nb_optimize_layout_euclidean_single_epoch_parallel._cache, NullCache)


_CHILD = """
import json, sys, time
sys.path.insert(0, {repo!r})
import numpy as np
from scapp.evaluate.embedding import umap_coords
rng = np.random.default_rng(0)
X = np.concatenate([rng.normal(0, 1, (150, 8)), rng.normal(12, 1, (150, 8))]).astype(np.float32)
t = time.perf_counter()
Y = umap_coords(X)
a, b = Y[:150].mean(0), Y[150:].mean(0)
spread = max(Y[:150].std(0).max(), Y[150:].std(0).max())
print(json.dumps({{"seconds": time.perf_counter() - t, "separated": float(np.linalg.norm(a - b) / spread),
                  "finite": bool(np.isfinite(Y).all())}}))
"""


@pytest.mark.slow
def test_a_second_process_loads_the_compiled_map_functions_from_disk(tmp_path):
    """The first process compiles and writes umap-learn's functions to NUMBA_CACHE_DIR; the next one loads them."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba"), "NUMBA_DEBUG_CACHE": "1"}
    code = _CHILD.format(repo=str(REPO))
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    out = json.loads(first.stdout.strip().splitlines()[-1])
    assert out["finite"] and out["separated"] > 3, out  # two blobs stay two groups
    saved = list((tmp_path / "numba").rglob("layouts._optimize_layout_euclidean_single_epoch*.nbi"))
    assert saved, sorted(p.name for p in (tmp_path / "numba").rglob("*.nbi"))[:20]
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr
    loaded = [ln for ln in second.stdout.splitlines() if "data loaded" in ln]
    assert any("_optimize_layout_euclidean_single_epoch" in ln for ln in loaded)
    assert not any("data saved" in ln and "umap_" in ln for ln in second.stdout.splitlines()), "compiled again"
