"""Ensembles: the calibrated probabilities of finished runs on the same cells, averaged with weights picked on
the validation cells (issue 10).

An ensemble is not fitted on features. Its members are finished runs trained on the same file, label column
and split; each keeps its own genes, preprocessing recipe, model and temperature. The engine
(``scapp.train.ensemble``) reads the members' calibrated validation probabilities and calls
:func:`choose_weights`; annotation loads the members and hands them to :meth:`EnsembleModel.attach`. The
ensemble's own input is the query's raw counts over the union of its members' genes: each member picks its
genes from them and applies its own recipe.

The weighting rule, kept simple on purpose: a grid over the simplex in steps of ``weight_step`` (0.1: 66
weightings of three members), scored by the **class-balanced** negative log-likelihood of the weighted mean of
the members' calibrated probabilities on the validation cells (each cell weighted by 1 / its class's
validation count, so rare types count as much as common ones, as macro-F1 does). The log-likelihood is a
proper score: it is smooth on a validation split where a handful of cells per class makes accuracy-type
scores jump by whole cells, and it rewards a member for being right *and* confident. Ties go to the
weighting closest to equal weights. A temperature is then fitted on the validation cells of the combined
probabilities (the mean of calibrated probabilities tends to be under-confident).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from scapp.errors import ConfigError
from scapp.models.base import FitData, ScappModel, TrainerAPI

DEFAULT_MEMBERS = ({"model": "logreg_hvg", "preset": "default"}, {"model": "sims", "preset": "default"},
                   {"model": "hydra", "preset": "fast"})
"""What the auto preset trains: the strong linear baseline, SIMS and Hydra (fast)."""


@dataclass
class EnsembleConfig:
    """``members``: what ``auto`` trains, each ``{"model": name, "preset": fast|default|thorough, "options": {…},
    "preprocess": {…}}`` (options over the preset; preprocessing over the method's own); the member run ids and
    weights are filled in when the ensemble is built."""

    members: list[dict[str, Any]] = field(default_factory=lambda: [dict(m) for m in DEFAULT_MEMBERS])
    weight_step: float = 0.1
    """Grid step of the weights on the simplex (0.1 → 66 weightings of three members)."""
    member_runs: list[str] = field(default_factory=list)
    """The member runs, by id, in weight order (written when the ensemble is built)."""
    weights: list[float] = field(default_factory=list)
    seed: int = 0


class Member(Protocol):
    """A finished run an ensemble can ask for calibrated probabilities (``scapp.annotate.LoadedRun``)."""

    run_id: str
    classes: list[str]

    @property
    def genes(self) -> list[str]: ...

    def proba_from_counts(self, counts: Any) -> np.ndarray:
        """Calibrated probabilities (cells × its classes) of raw counts aligned to its ``genes``."""


def simplex_grid(n: int, step: float) -> np.ndarray:
    """Every weighting of ``n`` members on a grid of ``step`` that sums to 1 (rows)."""
    k = int(round(1 / step))
    if n == 1:
        return np.ones((1, 1))
    rows = [np.diff([0, *cuts, k]) for cuts in itertools.combinations_with_replacement(range(k + 1), n - 1)]
    return np.asarray(rows, dtype=np.float64) / k


def balanced_nll(proba: np.ndarray, y: np.ndarray) -> float:
    """Mean −log p(true class), each cell weighted by 1 / (its class's cell count)."""
    if len(y) == 0:
        return float("nan")
    counts = np.bincount(y)
    w = 1.0 / counts[y]
    p = np.clip(proba[np.arange(len(y)), y], 1e-12, 1.0)
    return float(np.sum(-np.log(p) * w) / np.sum(w))


def choose_weights(probas: Sequence[np.ndarray], y: np.ndarray, *, step: float = 0.1
                   ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Weights of the members' probabilities (validation cells × classes each) with the lowest class-balanced
    NLL on ``y``; also every member's own score (for the page), as ``[{"member": i, "balanced_nll": …}]``.

    Without validation cells the members are weighted equally.
    """
    n = len(probas)
    if n == 0:
        raise ConfigError("An ensemble needs at least one member run.")
    if len(y) == 0:
        return np.full(n, 1.0 / n), []
    stack = np.stack([np.asarray(p, dtype=np.float64) for p in probas])  # members × cells × classes
    grid = simplex_grid(n, step)
    scores = np.array([balanced_nll(np.tensordot(w, stack, axes=1), y) for w in grid])
    spread = np.abs(grid - 1.0 / n).sum(1)
    best = np.lexsort((spread, np.round(scores, 9)))[0]  # lowest score, then closest to equal weights
    alone = [{"member": i, "balanced_nll": balanced_nll(stack[i], y)} for i in range(n)]
    return grid[best], alone


class EnsembleModel(ScappModel):
    """Weighted mean of its members' calibrated probabilities; ``predict_logits`` returns its log."""

    Config: ClassVar[type] = EnsembleConfig
    preprocess_defaults: ClassVar[dict[str, Any]] = {"output": "counts"}  # members normalize for themselves
    choose_weights = staticmethod(choose_weights)

    def __init__(self, config: EnsembleConfig, *, n_features: int, classes: list[str], device: str = "cpu") -> None:
        super().__init__(config, n_features=n_features, classes=classes, device=device)
        self.weights = np.asarray(config.weights or [], dtype=np.float64)
        self.members: list[Member] = []
        self._cols: list[np.ndarray] = []
        self._order: list[np.ndarray] = []

    def fit(self, train: FitData, valid: FitData, trainer: TrainerAPI) -> None:
        msg = ("An ensemble is built from finished runs (scapp.train.ensemble), not fitted on features; "
               "train it with --model auto or combine runs with 'scapp ensemble'.")
        raise ConfigError(msg)

    def attach(self, members: Sequence[Member], genes: Sequence[str]) -> None:
        """Give the loaded member runs; ``genes`` is the ensemble's input gene order (the union of theirs)."""
        if len(members) != len(self.weights):
            msg = f"This ensemble has {len(self.weights)} weights but {len(members)} member runs were loaded."
            raise ConfigError(msg)
        pos = {g: i for i, g in enumerate(genes)}
        self.members = list(members)
        self._cols, self._order = [], []
        for m in self.members:
            missing = [g for g in m.genes if g not in pos]
            if missing:
                msg = f"Member run {m.run_id} reads genes the ensemble does not list ({', '.join(missing[:5])})."
                raise ConfigError(msg)
            if sorted(m.classes) != sorted(self.classes):
                msg = f"Member run {m.run_id} knows other classes than the ensemble."
                raise ConfigError(msg)
            self._cols.append(np.array([pos[g] for g in m.genes], dtype=np.int64))
            self._order.append(np.array([m.classes.index(c) for c in self.classes], dtype=np.int64))

    def member_probas(self, X: Any) -> list[np.ndarray]:
        """Each member's calibrated probabilities of raw counts ``X`` (cells × the ensemble's genes), in the
        ensemble's class order."""
        if not self.members:
            msg = "The ensemble's member runs are not loaded (scapp.annotate.load_run loads them)."
            raise ConfigError(msg)
        return [m.proba_from_counts(X[:, cols])[:, order]
                for m, cols, order in zip(self.members, self._cols, self._order)]

    def combine(self, probas: Sequence[np.ndarray]) -> np.ndarray:
        return np.tensordot(self.weights, np.stack(probas), axes=1)

    def predict_logits(self, X: Any) -> np.ndarray:
        return np.log(np.clip(self.combine(self.member_probas(X)), 1e-12, 1.0)).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.weights.astype(np.float32)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights = np.asarray(state["weights"], dtype=np.float64)
