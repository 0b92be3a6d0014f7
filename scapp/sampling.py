"""Class-stratified cell samples: what a map draws, and what a display-only UMAP is computed on.

Lives outside ``scapp.viz`` and ``scapp.evaluate`` because both use it (numpy and pandas only).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["downsample_idx", "first_per_group"]


def _codes(labels: Sequence | np.ndarray | pd.Series) -> tuple[np.ndarray, int]:
    """Integer group per cell (missing labels form their own group) and the number of groups."""
    s = labels if isinstance(labels, pd.Series) else pd.Series(np.asarray(labels))
    codes, uniques = pd.factorize(s, use_na_sentinel=False)
    return codes.astype(np.int64, copy=False), len(uniques)


def downsample_idx(labels: Sequence | np.ndarray | pd.Series, max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``max_points`` cells, stratified by ``labels``.

    Every class keeps at least one cell; the rest of the budget is shared in
    proportion to class size (largest remainders get the leftover points), and
    cells within a class are drawn uniformly at random. The same labels,
    ``max_points`` and ``seed`` always give the same indices. Vectorised: one
    permutation and one stable sort, no loop over cells.

    Parameters
    ----------
    labels
        One label per cell (strings, categories or numbers; missing values are a class).
        Pass a constant array for a plain uniform sample.
    max_points
        Budget. If it is smaller than the number of classes, one cell per class is
        returned (so the result is longer than ``max_points``).
    seed
        Seed of the random choice.

    Returns
    -------
    numpy.ndarray
        ``int64`` indices into ``labels``, ascending; ``arange(n)`` when ``n <= max_points``.

    Examples
    --------
    >>> idx = downsample_idx(["a"] * 98 + ["b", "b"], 10, seed=0)
    >>> len(idx), int((idx >= 98).sum())
    (10, 1)
    """
    codes, k = _codes(labels)
    n = codes.size
    max_points = int(max_points)
    if max_points < 0:
        raise ValueError(f"max_points must be >= 0, got {max_points}.")
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    sizes = np.bincount(codes, minlength=k).astype(np.int64)
    quota = np.minimum(sizes, 1)
    budget = max(0, max_points - k)
    rest = sizes - quota
    if budget and rest.sum():
        share = budget * rest / rest.sum()
        extra = np.floor(share).astype(np.int64)
        left = budget - int(extra.sum())
        if left > 0:  # largest remainders first, ties by class order
            order = np.lexsort((np.arange(k), -(share - extra)))
            extra[order[:left]] += 1
        quota += np.minimum(extra, rest)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    order = np.argsort(codes[perm], kind="stable")  # grouped by class, random within
    grouped = codes[perm][order]
    starts = np.searchsorted(grouped, np.arange(k))
    rank = np.arange(n) - starts[grouped]
    keep = rank < quota[grouped]
    return np.sort(perm[order[keep]]).astype(np.int64, copy=False)


def first_per_group(groups: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` smallest ``keys`` within each group (vectorized; random keys = a random ``k`` per group)."""
    if groups.size == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort((keys, groups))
    grp = groups[order]
    starts = np.r_[0, np.flatnonzero(np.diff(grp)) + 1]
    ranks = np.arange(order.size) - np.repeat(starts, np.diff(np.r_[starts, order.size]))
    return order[ranks < k]
