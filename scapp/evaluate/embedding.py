"""2-D maps of a model's latent space for the Explore and Annotate views."""

from __future__ import annotations

import numpy as np


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

    reducer = umap.UMAP(n_neighbors=min(n_neighbors, n - 1), random_state=seed, n_components=2)
    if n <= max_fit:
        return reducer.fit_transform(X).astype(np.float32)
    rng = np.random.default_rng(seed)
    fit_idx = rng.choice(n, max_fit, replace=False)
    reducer.fit(X[fit_idx])
    return reducer.transform(X).astype(np.float32)


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
