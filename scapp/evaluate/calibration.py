"""Softmax, temperature scaling and expected calibration error (methods.md §0)."""

from __future__ import annotations

import numpy as np

DEFAULT_THRESHOLD = 0.5
"""Confidence below which a cell is Unassigned, unless the user chose another before training (kept in the run)."""


def softmax(logits: np.ndarray) -> np.ndarray:
    """Full softmax over all classes, numerically stable, float32."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z.astype(np.float32)


def fit_temperature(logits: np.ndarray, y: np.ndarray, *, max_iter: int = 100) -> float:
    """Temperature T > 0 minimizing validation NLL of ``softmax(logits / T)`` (LBFGS on log T)."""
    import torch

    if len(y) == 0:
        return 1.0
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    t = torch.as_tensor(np.asarray(y, dtype=np.int64))
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), t)
        loss.backward()
        return loss

    opt.step(closure)
    T = float(log_t.detach().exp())
    if not np.isfinite(T):
        return 1.0
    return float(np.clip(T, 0.05, 20.0))


def reliability(proba: np.ndarray, y: np.ndarray, *, n_bins: int = 15) -> dict[str, list[float]]:
    """Per confidence bin: mean confidence, accuracy and cell count (for the reliability diagram)."""
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    edges = np.linspace(0, 1, n_bins + 1)
    b = np.clip(np.digitize(conf, edges[1:-1]), 0, n_bins - 1)
    n = np.bincount(b, minlength=n_bins)
    s_conf = np.bincount(b, weights=conf, minlength=n_bins)
    s_acc = np.bincount(b, weights=correct.astype(float), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"bin_lower": edges[:-1].tolist(), "bin_upper": edges[1:].tolist(),
                "confidence": np.where(n > 0, s_conf / np.maximum(n, 1), np.nan).tolist(),
                "accuracy": np.where(n > 0, s_acc / np.maximum(n, 1), np.nan).tolist(), "count": n.tolist()}


def ece(proba: np.ndarray, y: np.ndarray, *, n_bins: int = 15) -> float:
    """Expected calibration error: bin-size-weighted |accuracy − confidence|."""
    if len(y) == 0:
        return float("nan")
    r = reliability(proba, y, n_bins=n_bins)
    n = np.asarray(r["count"], dtype=float)
    gap = np.abs(np.nan_to_num(np.asarray(r["accuracy"])) - np.nan_to_num(np.asarray(r["confidence"])))
    return float((n * gap).sum() / n.sum())


def assign_unknown(proba: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predicted class codes, confidence, and a mask of cells below ``threshold`` (Unassigned)."""
    pred = proba.argmax(axis=1)
    conf = proba.max(axis=1)
    return pred, conf, conf < threshold
