"""2-D maps of a model's latent space for the Explore and Annotate views.

A UMAP costs two things on a CPU: umap-learn's numba functions are compiled in
every fresh process (20 s on an idle 2-core machine, over a minute on a busy one,
for a fit that then takes 2 s), and the nearest-neighbour search. Both are cut
here: umap-learn's functions are compiled once per machine and kept on disk
(:func:`umap_module`), and maps of up to ``EXACT_KNN_MAX`` cells get their
neighbours from an exact scikit-learn search instead of pynndescent, whose
functions that take a distance function as an argument are compiled again in
every process whatever the cache. :func:`sample_pca` gives a map at once while
the UMAP is computed.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from scapp.runs import RunStore

# Exact neighbours up to here: 0.5 s for 20k cells × 32 dimensions on 2 cores, ~3 s for 50k; beyond it
# pynndescent's approximate search (its per-process compilation is then small next to the fit).
EXACT_KNN_MAX = 50_000
_CACHE_ENABLED = False


def numba_cache_fallback() -> Path:
    """Where compiled map functions go when numba finds no writable place of its own (read-only site-packages
    and home): beside the runs folder, which the app can always write."""
    from scapp.runs import runs_root

    return runs_root().resolve().parent / ".numba_cache"


def _enable_disk_cache(package: str) -> int:
    """Give every numba function of ``package`` that was declared without ``cache=True`` an on-disk cache.

    umap-learn declares its functions without it, so each process compiled them again. Must run before the
    functions are first called (compiled code already in memory is not written). Returns how many were enabled.
    """
    from numba.core import config
    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher

    found = {id(v): v for name, mod in list(sys.modules.items())
             if mod is not None and (name == package or name.startswith(package + "."))
             for v in list(vars(mod).values()) if isinstance(v, CPUDispatcher) and isinstance(v._cache, NullCache)}
    # numba names a cache entry after the Python function, not the compile options: where one function is compiled
    # twice (umap-learn's layout epoch, serial and parallel) only the serial one (what a seeded map runs) is cached,
    # so neither ever loads the other's code.
    by_func: dict[int, list[Any]] = {}
    for f in found.values():
        by_func.setdefault(id(f.py_func), []).append(f)
    funcs = []
    for fs in by_func.values():
        serial = [g for g in fs if not g.targetoptions.get("parallel")]
        if len(fs) == 1 or len(serial) == 1:
            funcs.append(fs[0] if len(fs) == 1 else serial[0])
    done = 0
    for f in funcs:
        try:
            f.enable_caching()
        except RuntimeError:  # numba found no writable cache folder (read-only install and home)
            if config.CACHE_DIR:
                return done
            folder = numba_cache_fallback()
            folder.mkdir(parents=True, exist_ok=True)
            os.environ["NUMBA_CACHE_DIR"] = config.CACHE_DIR = str(folder)
            f.enable_caching()
        done += 1
    return done


def umap_module() -> Any:
    """``umap`` (umap-learn), its numba functions cached on disk (compiled once per machine, then loaded).

    Where: numba's own choice (``NUMBA_CACHE_DIR`` if set, else ``__pycache__`` beside umap-learn or the user's
    cache folder), else :func:`numba_cache_fallback`.
    """
    global _CACHE_ENABLED
    import umap

    if not _CACHE_ENABLED:
        _enable_disk_cache("umap")
        _CACHE_ENABLED = True
    return umap


def exact_knn(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each cell's ``k`` nearest cells (itself first) and their Euclidean distances, as umap-learn takes them."""
    from sklearn.neighbors import NearestNeighbors

    dist, idx = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(X).kneighbors(X)
    return idx.astype(np.int32), dist.astype(np.float32)


def umap_coords(latent: np.ndarray, *, seed: int = 0, n_neighbors: int = 15, max_fit: int = 100_000) -> np.ndarray:
    """UMAP (umap-learn) of the latent, cells × 2, started from its first two principal components.

    PCA initialisation rather than umap-learn's spectral one: the spectral layout solves an eigenproblem per
    disconnected piece of the neighbour graph (36 pieces, 6 of 12 s, on a 20k-cell sample of a SIMS latent),
    and the UMAP then keeps the orientation of the PCA map shown while it is computed.
    Above ``max_fit`` cells the map is fitted on a random subset and the rest are
    placed with ``transform``, which keeps 1M-cell runs to minutes on a CPU.
    Tiny inputs (< 20 cells) fall back to the first two principal components.
    """
    X = np.asarray(latent, dtype=np.float32)
    n = X.shape[0]
    if n < 20 or X.shape[1] < 2:
        return pca_coords(X)
    umap = umap_module()
    k = min(n_neighbors, n - 1)
    with warnings.catch_warnings():
        # "n_jobs overridden by setting random_state"; "transform unavailable" with our own neighbours (never used)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"umap\.")
        if n <= min(max_fit, EXACT_KNN_MAX):
            reducer = umap.UMAP(n_neighbors=k, random_state=seed, n_components=2, n_jobs=1, init="pca",
                                precomputed_knn=exact_knn(X, k))
            return reducer.fit_transform(X).astype(np.float32)
        # NN-descent at every other size: below 4,096 cells umap-learn otherwise computes exact distances through a
        # Python callable in scikit-learn (a minute for 2.6k cells on 2 busy cores instead of seconds).
        reducer = umap.UMAP(n_neighbors=k, random_state=seed, n_components=2, n_jobs=1, init="pca",
                            force_approximation_algorithm=True)
        if n <= max_fit:
            return reducer.fit_transform(X).astype(np.float32)
        rng = np.random.default_rng(seed)
        fit_idx = rng.choice(n, max_fit, replace=False)
        reducer.fit(X[fit_idx])
        return reducer.transform(X).astype(np.float32)


# Cells on an Explore map by default. Measured on 2 cores (bench in issue 11's report): UMAP of 20k cells ~9 s with
# the compiled functions on disk (42 s on a busy machine before, plus 1-2 min of numba compilation per process).
DISPLAY_CELLS = 20_000


def _sample(latent: np.ndarray, labels: Any, max_cells: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from scapp.sampling import downsample_idx

    X = np.asarray(latent)
    if len(labels) != X.shape[0]:
        raise ValueError(f"{len(labels)} labels for {X.shape[0]} cells.")
    return X, downsample_idx(labels, max_cells, seed)


def sample_umap(latent: np.ndarray, labels, *, max_cells: int = DISPLAY_CELLS, seed: int = 0,
                n_neighbors: int = 15) -> dict[str, np.ndarray]:
    """UMAP of a class-stratified sample of at most ``max_cells`` cells, for display.

    A map only ever shows a sample of a big run (a browser cannot draw a million
    points usefully), so only that sample is embedded: fitting 20k cells takes
    well under a minute on a laptop, where fitting 100k and ``transform``-ing a
    million takes many. Every class keeps cells in the sample (:func:`scapp.sampling.downsample_idx`).

    Returns
    -------
    dict
        ``index``: ascending ``int64`` rows of ``latent`` in the sample (all rows when
        there are at most ``max_cells``); ``umap``: their coordinates, ``len(index) × 2``.
        What :func:`compute_cell_map` stores in a run.
    """
    X, idx = _sample(latent, labels, max_cells, seed)
    coords = umap_coords(X[idx], seed=seed, n_neighbors=n_neighbors, max_fit=max(len(idx), 1))
    return {"index": idx, "umap": coords}


def sample_pca(latent: np.ndarray, labels, *, max_cells: int = DISPLAY_CELLS, seed: int = 0) -> dict[str, np.ndarray]:
    """The first two principal components of the same sample :func:`sample_umap` embeds (``index``, ``pca``).

    Milliseconds where the UMAP takes seconds to minutes: the map to show while the UMAP is computed, on the
    same cells, so a selection highlighted on it stays highlighted when the UMAP replaces it.
    """
    X, idx = _sample(latent, labels, max_cells, seed)
    return {"index": idx, "pca": pca_coords(X[idx])}


def map_input(store: RunStore) -> tuple[np.ndarray, np.ndarray]:
    """What a run's cell map is computed on, with each cell's label (``true``) for the stratified sample.

    The model's latent space where the run kept one, else its predicted class probabilities.
    """
    latent = store.embedding()
    if latent is not None:
        return latent, store.predictions(columns=["true"])["true"].to_numpy()
    pred = store.predictions()
    return pred[[c for c in pred.columns if c.startswith("p_")]].to_numpy(np.float32), pred["true"].to_numpy()


def compute_cell_map(store: RunStore, n_cells: int) -> dict[str, np.ndarray]:
    """UMAP of a class-stratified sample of at most ``n_cells`` cells of a run, stored in the run.

    On the model's latent space where the run kept one, else on its predicted class
    probabilities. ``index`` holds the rows of the run's predictions in the sample. While it
    runs the store marks the map as running (with this process id); a failure is recorded for
    :meth:`~scapp.runs.RunStore.cell_map_state` and re-raised.
    """
    with store.cell_map_job(n_cells):
        latent, labels = map_input(store)
        arrays = sample_umap(latent, labels, max_cells=n_cells)
        store.write_cell_map(n_cells, arrays)
    return arrays


def pca_coords(X: np.ndarray) -> np.ndarray:
    """First two principal components (zeros where there are fewer dimensions)."""
    X = np.asarray(X, dtype=np.float64)
    Xc = X - X.mean(0)
    if Xc.shape[0] < 2:
        return np.zeros((Xc.shape[0], 2), np.float32)
    u, s, _ = np.linalg.svd(Xc, full_matrices=False)
    out = np.zeros((X.shape[0], 2))
    k = min(2, s.size)
    out[:, :k] = u[:, :k] * s[:k]
    return out.astype(np.float32)
