"""2-D maps of a model's latent space for the Explore and Annotate views."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from scapp.runs import RunStore


def umap_coords(latent: np.ndarray, *, seed: int = 0, n_neighbors: int = 15, max_fit: int = 100_000) -> np.ndarray:
    """UMAP (umap-learn) of the latent, cells × 2.

    Above ``max_fit`` cells the map is fitted on a random subset and the rest are
    placed with ``transform``, which keeps 1M-cell runs to minutes on a CPU.
    Tiny inputs (< 20 cells) fall back to the first two principal components.
    """
    X = np.asarray(latent, dtype=np.float32)
    n = X.shape[0]
    if n < 20 or X.shape[1] < 2:
        return pca_coords(X)
    import umap

    # NN-descent at every size: below 4,096 cells umap-learn otherwise computes exact distances through a Python
    # callable in scikit-learn (a minute for the 2.6k-cell demo on 2 busy cores instead of seconds).
    reducer = umap.UMAP(n_neighbors=min(n_neighbors, n - 1), random_state=seed, n_components=2,
                        force_approximation_algorithm=True)
    if n <= max_fit:
        return reducer.fit_transform(X).astype(np.float32)
    rng = np.random.default_rng(seed)
    fit_idx = rng.choice(n, max_fit, replace=False)
    reducer.fit(X[fit_idx])
    return reducer.transform(X).astype(np.float32)


# Cells on an Explore map by default. Measured on 2 shared cores (load 5-6): UMAP of 20k cells 42 s, 50k 159 s
# (plus 1-2 min of numba compilation the first time in a process).
DISPLAY_CELLS = 20_000


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
    from scapp.sampling import downsample_idx

    X = np.asarray(latent)
    if len(labels) != X.shape[0]:
        raise ValueError(f"{len(labels)} labels for {X.shape[0]} cells.")
    idx = downsample_idx(labels, max_cells, seed)
    coords = umap_coords(X[idx], seed=seed, n_neighbors=n_neighbors, max_fit=max(len(idx), 1))
    return {"index": idx, "umap": coords}


def compute_cell_map(store: RunStore, n_cells: int) -> dict[str, np.ndarray]:
    """UMAP of a class-stratified sample of at most ``n_cells`` cells of a run, stored in the run.

    On the model's latent space where the run kept one, else on its predicted class
    probabilities. ``index`` holds the rows of the run's predictions in the sample. While it
    runs the store marks the map as running (with this process id); a failure is recorded for
    :meth:`~scapp.runs.RunStore.cell_map_state` and re-raised.
    """
    with store.cell_map_job(n_cells):
        latent = store.embedding()
        if latent is not None:
            labels = store.predictions(columns=["true"])["true"].to_numpy()
        else:
            pred = store.predictions()
            labels = pred["true"].to_numpy()
            latent = pred[[c for c in pred.columns if c.startswith("p_")]].to_numpy(np.float32)
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
