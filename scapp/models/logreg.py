"""CellTypist-style baseline: logistic regression on scaled log1p expression (methods.md §5)."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from scapp.models.base import Explanation, FitData, ScappModel, TrainerAPI


@dataclass
class LogRegConfig:
    """Defaults follow CellTypist: L2 logistic regression, C=1, on data z-scored and clipped at 10."""

    C: float = 1.0
    max_iter: int = 1000
    class_weight: str | None = None
    """None as in CellTypist; "balanced" weights classes inversely to frequency."""
    seed: int = 0


class LogRegModel(ScappModel):
    Config: ClassVar[type] = LogRegConfig
    preprocess_defaults: ClassVar[dict[str, Any]] = {"scale": True}

    def __init__(self, config: LogRegConfig, *, n_features: int, classes: list[str], device: str = "cpu") -> None:
        super().__init__(config, n_features=n_features, classes=classes, device=device)
        self.coef = np.zeros((self.n_classes, n_features), dtype=np.float32)
        self.intercept = np.zeros(self.n_classes, dtype=np.float32)

    def fit_sklearn(self, X: Any, y: np.ndarray, *, C: float, class_weight: str | None = None,
                    cols: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
        """Fit scikit-learn's logistic regression on ``X`` (restricted to ``cols``); returns coefficients over
        all input features (zero outside ``cols``), intercepts and whether it converged.

        Classes absent from ``y`` keep a very low intercept so they are never predicted.
        """
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=C, max_iter=self.config.max_iter, class_weight=class_weight,
                                 random_state=self.config.seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            clf.fit(X if cols is None else X[:, cols], y)
        cols = np.arange(self.n_features) if cols is None else cols
        coef = np.zeros((self.n_classes, self.n_features), np.float32)
        icpt = np.full(self.n_classes, -1e4, np.float32)
        present = clf.classes_
        if len(present) == 2 and clf.coef_.shape[0] == 1:  # binary: sklearn keeps one row, split it symmetrically
            coef[present[1], cols], coef[present[0], cols] = clf.coef_[0] / 2, -clf.coef_[0] / 2
            icpt[present[1]], icpt[present[0]] = clf.intercept_[0] / 2, -clf.intercept_[0] / 2
        else:
            coef[np.ix_(present, cols)] = clf.coef_
            icpt[present] = clf.intercept_
        return coef, icpt, not any(issubclass(w.category, ConvergenceWarning) for w in caught)

    def record_fit(self, trainer: TrainerAPI, valid: FitData, t0: float, **fields: Any) -> None:
        """Report the closed-form fit as one "epoch" with its validation loss and accuracy."""
        from scapp.evaluate.metrics import nll

        logits = self.predict_logits(valid.X)
        trainer.record_epoch({"epoch": 1, "max_epochs": 1, "valid_loss": nll(logits, valid.y),
                              "valid_accuracy": float((logits.argmax(1) == valid.y).mean()) if len(valid.y) else None,
                              **fields, "elapsed_s": time.monotonic() - t0, "best_epoch": 1})

    def fit(self, train: FitData, valid: FitData, trainer: TrainerAPI) -> None:
        t0 = time.monotonic()
        trainer.event("fitting logistic regression", 0.0, max_epochs=1)
        self.coef, self.intercept, converged = self.fit_sklearn(train.X, train.y, C=self.config.C,
                                                                class_weight=self.config.class_weight)
        self.fit_info["converged"] = converged
        self.record_fit(trainer, valid, t0, converged=converged)  # a closed-form fit: one "epoch", no loop

    def predict_logits(self, X: Any) -> np.ndarray:
        return np.asarray(X @ self.coef.T, dtype=np.float32) + self.intercept

    def explain(self, X: Any, by: np.ndarray) -> Explanation:
        """Coefficients are the per-class gene scores (positive: evidence for the class)."""
        glob = np.abs(self.coef).sum(0)
        return Explanation(class_scores=self.coef.copy(), global_importance=glob / max(glob.sum(), 1e-12),
                           kind="coefficient")

    def state_dict(self) -> dict[str, Any]:
        return {"coef": self.coef, "intercept": self.intercept}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.coef = np.asarray(state["coef"], dtype=np.float32)
        self.intercept = np.asarray(state["intercept"], dtype=np.float32)
