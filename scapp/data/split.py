"""Stratified, seeded train/validation/test split (methods.md §0)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Split:
    """Cell indices of each part and notes for the user (e.g. tiny classes kept in train)."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    notes: list[str] = field(default_factory=list)

    def labels(self, n: int) -> np.ndarray:
        """Per-cell split name, for the predictions table."""
        out = np.full(n, "train", dtype=object)
        out[self.valid] = "valid"
        out[self.test] = "test"
        return out


def stratified_split(
    codes: np.ndarray, *, valid: float = 0.15, test: float = 0.15, seed: int = 0, class_names: list[str] | None = None
) -> Split:
    """Split each class in the same proportions; classes under 3 cells stay in train.

    Each class with ≥ 3 cells gets at least one validation and one test cell, so
    every class is scored; the loop is over classes, never over cells.
    """
    if not (0 <= valid < 1 and 0 <= test < 1 and valid + test < 1):
        msg = f"valid ({valid}) and test ({test}) fractions must be in [0, 1) and sum below 1."
        raise ValueError(msg)
    rng = np.random.default_rng(seed)
    codes = np.asarray(codes)
    parts: dict[str, list[np.ndarray]] = {"train": [], "valid": [], "test": []}
    notes: list[str] = []
    tiny: list[str] = []
    for c in np.unique(codes):
        idx = rng.permutation(np.flatnonzero(codes == c))
        n = idx.size
        if n < 3:
            parts["train"].append(idx)
            tiny.append(f"{class_names[c] if class_names else c} ({n})")
            continue
        n_test = max(1, int(round(test * n))) if test > 0 else 0
        n_valid = max(1, int(round(valid * n))) if valid > 0 else 0
        if n - n_test - n_valid < 1:
            n_valid = max(0, n - n_test - 1)
        parts["test"].append(idx[:n_test])
        parts["valid"].append(idx[n_test : n_test + n_valid])
        parts["train"].append(idx[n_test + n_valid :])
    if tiny:
        notes.append(
            "Classes with fewer than 3 cells cannot be split and were kept in training only "
            f"(they are not scored): {', '.join(tiny)}."
        )
    cat = lambda xs: np.sort(np.concatenate(xs)) if xs else np.array([], dtype=np.int64)  # noqa: E731
    return Split(train=cat(parts["train"]), valid=cat(parts["valid"]), test=cat(parts["test"]), notes=notes)
