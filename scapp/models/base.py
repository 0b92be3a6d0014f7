"""The one interface every scapp model implements (architecture.md)."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from scapp.errors import ConfigError


@dataclass
class FitData:
    """Preprocessed model input and integer class codes for one split."""

    X: Any  # cells × features, CSR or dense float32
    y: np.ndarray
    extra: dict[str, Any] = field(default_factory=dict)
    """Optional side information, e.g. ``{"modalities": [("rna", n_genes), ("protein", n_proteins)]}``
    when ``X`` holds several modalities side by side (models that don't use it ignore it)."""


@dataclass
class Explanation:
    """Per-class gene scores (classes × features) and, where the method has them, per-cell masks."""

    class_scores: np.ndarray
    global_importance: np.ndarray
    cell_masks: np.ndarray | None = None
    cell_index: np.ndarray | None = None
    kind: str = "score"
    extra: dict[str, np.ndarray] = field(default_factory=dict)


class Progress:
    """What the engine hands to ``fit``: where events go and whether to stop.

    ``emit`` receives dicts such as ``{"epoch": 3, "train_loss": .., "valid_loss": .., ...}``.
    """

    def __init__(self, emit: Callable[[dict[str, Any]], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> None:
        self._emit = emit or (lambda e: None)
        self._should_stop = should_stop or (lambda: False)
        self.t0 = time.monotonic()

    def emit(self, event: dict[str, Any]) -> None:
        self._emit(event)

    def should_stop(self) -> bool:
        return self._should_stop()


def config_from_dict(cls: type, d: dict[str, Any] | None) -> Any:
    """Build a config dataclass, refusing unknown keys with the list of known ones."""
    d = dict(d or {})
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        msg = f"Unknown option(s) for {cls.__name__}: {', '.join(sorted(unknown))}. Known: {', '.join(sorted(known))}."
        raise ConfigError(msg)
    return cls(**d)


class ScappModel(ABC):
    """A classifier over preprocessed cells × features input.

    Subclasses set ``name``, ``Config`` (a dataclass with paper defaults) and
    ``preprocess`` (the recipe defaults this method expects).
    """

    name: ClassVar[str]
    Config: ClassVar[type]
    preprocess_defaults: ClassVar[dict[str, Any]] = {}
    has_embedding: ClassVar[bool] = False
    explain_kind: ClassVar[str] = "score"
    stopped_by_user: bool = False

    def __init__(self, config: Any, *, n_features: int, classes: list[str], device: str = "cpu") -> None:
        self.config = config
        self.n_features = n_features
        self.classes = list(classes)
        self.device = device
        self.history: list[dict[str, Any]] = []
        self.best_epoch: int | None = None

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    @abstractmethod
    def fit(self, train: FitData, valid: FitData, progress: Progress) -> None: ...

    @abstractmethod
    def predict_logits(self, X: Any) -> np.ndarray:
        """Cells × classes unnormalized scores (temperature scaling divides these)."""

    def predict_proba(self, X: Any, *, temperature: float = 1.0) -> np.ndarray:
        """Full softmax over all classes, cells × classes."""
        from scapp.evaluate.calibration import softmax

        return softmax(self.predict_logits(X) / temperature)

    def embed(self, X: Any) -> np.ndarray | None:
        """Cells × k latent representation, or None when the model has none."""
        return None

    @abstractmethod
    def explain(self, X: Any, by: np.ndarray) -> Explanation:
        """Per-class gene scores, grouping cells by ``by`` (class codes)."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Tensors/arrays to save as safetensors."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def save_weights(self, path: str) -> None:
        from safetensors.numpy import save_file

        save_file({k: np.ascontiguousarray(v) for k, v in self.state_dict().items()}, path)

    def load_weights(self, path: str) -> None:
        from safetensors.numpy import load_file

        self.load_state_dict(load_file(path))
