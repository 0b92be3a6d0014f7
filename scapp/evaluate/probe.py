"""How good is a frozen embedding for annotation? kNN label transfer and a linear probe (issue 13, arm D).

Both read only arrays (cells × k embeddings and integer class codes), so they judge any encoder the same way:
a pretrained one (``scapp.train.pretrain.FrozenEncoder``), a fine-tuned one, PCA. scSSL-Bench judged frozen SSL
embeddings by kNN; the primary SSL study (Richter et al. 2024) by kNN and by a head trained on the frozen
encoder. Scores are ``scapp.evaluate.metrics.classification_metrics`` (macro-F1, accuracy, balanced accuracy,
the three rarest classes' F1), the same as every trained run reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from scapp.evaluate.metrics import classification_metrics

KNN_KS = (5, 15)


def knn_transfer(Z_ref: np.ndarray, y_ref: np.ndarray, Z_query: np.ndarray, *, ks: Sequence[int] = KNN_KS,
                 metric: str = "euclidean") -> dict[int, np.ndarray]:
    """Predicted class codes of the query cells by majority vote of their ``k`` nearest reference cells, per k.

    Ties go to the lowest class code (scikit-learn's rule); ``k`` larger than the reference is cut to its size.
    """
    from sklearn.neighbors import KNeighborsClassifier

    Z_ref, Z_query = np.asarray(Z_ref, np.float32), np.asarray(Z_query, np.float32)
    y_ref = np.asarray(y_ref)
    if Z_ref.shape[0] == 0:
        raise ValueError("no reference cells to transfer labels from")
    out = {}
    for k in ks:
        knn = KNeighborsClassifier(n_neighbors=min(int(k), Z_ref.shape[0]), metric=metric)
        knn.fit(Z_ref, y_ref)
        out[int(k)] = knn.predict(Z_query) if Z_query.shape[0] else np.zeros(0, y_ref.dtype)
    return out


def linear_probe(Z_train: np.ndarray, y_train: np.ndarray, Z_test: np.ndarray, *, C: float = 1.0,
                 max_iter: int = 2000, class_weight: str | None = "balanced", seed: int = 0) -> np.ndarray:
    """Predicted class codes of the test cells by a multinomial logistic regression on the standardized frozen
    embedding of the training cells (classes weighted inversely to size by default, as scapp's classifiers)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter, class_weight=class_weight,
                                                             random_state=seed))
    clf.fit(np.asarray(Z_train, np.float32), np.asarray(y_train))
    return clf.predict(np.asarray(Z_test, np.float32)) if len(Z_test) else np.zeros(0, np.asarray(y_train).dtype)


def probe_report(Z_train: np.ndarray, y_train: np.ndarray, Z_test: np.ndarray, y_test: np.ndarray,
                 classes: list[str], *, ks: Sequence[int] = KNN_KS, C: float = 1.0, seed: int = 0
                 ) -> dict[str, dict[str, Any]]:
    """Test-cell metrics of kNN transfer (``knn_<k>``) and the linear probe (``linear_probe``) from the
    training cells' embedding and labels."""
    out = {f"knn_{k}": classification_metrics(y_test, pred, classes)
           for k, pred in knn_transfer(Z_train, y_train, Z_test, ks=ks).items()}
    out["linear_probe"] = classification_metrics(y_test, linear_probe(Z_train, y_train, Z_test, C=C, seed=seed),
                                                 classes)
    return out
