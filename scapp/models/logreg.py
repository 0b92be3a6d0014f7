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

    def fit(self, train: FitData, valid: FitData, trainer: TrainerAPI) -> None:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression

        t0 = time.monotonic()
        trainer.event("fitting logistic regression", 0.0, max_epochs=1)
        present = np.unique(train.y)
        clf = LogisticRegression(
            C=self.config.C, max_iter=self.config.max_iter, class_weight=self.config.class_weight,
            random_state=self.config.seed,
        )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            clf.fit(train.X, train.y)
        converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        # Classes absent from training keep a very low intercept so they are never predicted.
        self.intercept[:] = -1e4
        if len(present) == 2 and clf.coef_.shape[0] == 1:
            self.coef[present[1]] = clf.coef_[0] / 2
            self.coef[present[0]] = -clf.coef_[0] / 2
            self.intercept[present[1]] = clf.intercept_[0] / 2
            self.intercept[present[0]] = -clf.intercept_[0] / 2
        else:
            self.coef[present] = clf.coef_
            self.intercept[present] = clf.intercept_
        logits = self.predict_logits(valid.X)
        from scapp.evaluate.metrics import nll

        event = {"epoch": 1, "max_epochs": 1, "valid_loss": nll(logits, valid.y),
                 "valid_accuracy": float((logits.argmax(1) == valid.y).mean()) if len(valid.y) else None,
                 "converged": converged, "elapsed_s": time.monotonic() - t0, "best_epoch": 1}
        self.fit_info["converged"] = converged
        trainer.record_epoch(event)  # a closed-form fit: one "epoch", no loop

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
