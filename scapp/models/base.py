"""The one interface every scapp model implements (architecture.md)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from scapp.errors import ConfigError

if TYPE_CHECKING:  # torch only for annotations: the Model page lists methods without importing it
    import torch


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


@dataclass
class Denoised:
    """What a denoising method returns for a block of cells (rows of its model input), all dense.

    Only ``rates`` is required; zero-inflated count models also give the per-entry dropout probability,
    models that predict library size give it, and likelihood models the per-cell mean negative
    log-likelihood of the block's counts.
    """

    rates: np.ndarray
    """Expected counts, cells × genes."""
    zero_prob: np.ndarray | None = None
    """Probability that an entry is a technical zero (cells × genes); ``(1 − zero_prob)·rates`` is the mean."""
    library: np.ndarray | None = None
    """Predicted library size per cell."""
    latent: np.ndarray | None = None
    nll: np.ndarray | None = None
    """Mean negative log-likelihood over the genes, per cell."""


@dataclass
class StepOutput:
    """What a model's step returns for one batch: the loss to back-propagate and the value to report.

    ``loss`` may be scaled for the optimizer (e.g. summed over an ensemble); ``value`` (default: ``loss``)
    is what the epoch mean and the curves show. ``n`` weights the batch in that mean.
    """

    loss: torch.Tensor
    n: int
    value: torch.Tensor | None = None


@dataclass
class Phase:
    """One epoch loop a model asks the ``Trainer`` to run: its network, optimizer, batches and loss.

    The Trainer owns the loop (batches, zero-grad/backward/clip/step, validation, the LR schedule,
    early stopping on ``monitor``, keeping and restoring the best state, Stop checks, ETA and
    events); the model only says what one step and one validation are.
    """

    name: str
    module: torch.nn.Module
    """Trained (``train()``/``eval()`` around each epoch); its state is the one kept when ``monitor`` improves."""
    optimizer: torch.optim.Optimizer
    step: Callable[[Any], StepOutput]
    """One batch → its loss."""
    max_epochs: int
    batches: Callable[[int], Iterable[Any]] | None = None
    """Epoch (1-based) → that epoch's batches. None: near-equal index batches of ``n_items`` of ``batch_size``,
    freshly permuted with ``generator`` on ``device``."""
    n_items: int = 0
    batch_size: int = 256
    generator: torch.Generator | None = None
    device: Any = None
    validate: Callable[[], dict[str, float]] | None = None
    """Validation metrics (``valid_loss``, ``valid_balanced_accuracy``, …), computed in eval mode."""
    before_validate: Callable[[], None] | None = None
    """E.g. recompute batch-norm statistics; runs after the epoch's batches, before ``validate``."""
    monitor: str | None = None
    """Metric that early stopping and the kept state follow (``valid_*``, or ``train_loss``); None: keep the last."""
    mode: str = "min"
    patience: int | None = None
    scheduler: Any = None
    """``ReduceLROnPlateau`` (stepped with ``scheduler_metric``) or any scheduler stepped once per epoch."""
    scheduler_metric: str = "valid_loss"
    grad_clip: float | None = None
    key: str | None = None
    """None: the run's main curve (``epoch``, ``train_loss``; kept in the run's history). A name (``"refine"``):
    a later phase reported as ``refine_epoch`` / ``refine_loss`` beside it."""
    span: tuple[float, float] = (0.0, 1.0)
    """Share of the whole fit this phase covers (for the progress bar)."""
    epoch_fields: Callable[[int], dict[str, Any]] | None = None
    """Extra fields for an epoch's event (e.g. the class-sampling exponent)."""


@dataclass
class PhaseResult:
    epochs_run: int
    best_epoch: int | None
    stopped: bool
    history: list[dict[str, Any]]


class TrainerAPI(Protocol):
    """What ``fit`` receives (``scapp.train.trainer.Trainer``): models never write an epoch loop."""

    stopped: bool

    def should_stop(self) -> bool: ...

    def run(self, phase: Phase) -> PhaseResult: ...

    def iterate(self, name: str, items: Iterable[Any], *, span: tuple[float, float]) -> Iterator[Any]: ...

    def event(self, phase: str, progress: float | None = None, **fields: Any) -> None: ...

    def record_epoch(self, event: dict[str, Any]) -> None: ...


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
    """A model over preprocessed cells × features input.

    Subclasses set ``Config`` (a dataclass with the paper's defaults) and
    ``preprocess_defaults`` (the recipe this method expects). What a method can
    do (classify, embed, explain, denoise, pretrain; raw counts or log input;
    labels needed) is declared once, in its registry entry (``scapp.models.registry``).
    ``fit`` receives a ``Trainer`` and hands it ``Phase``s: no model writes an epoch loop.
    """

    Config: ClassVar[type]
    preprocess_defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: Any, *, n_features: int, classes: list[str], device: str = "cpu") -> None:
        self.config = config
        self.n_features = n_features
        self.classes = list(classes)
        self.device = device
        self.fit_info: dict[str, Any] = {}
        """Method-specific facts of the fit worth keeping in metrics.json (phase timings, set sizes …)."""

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def config_dict(self) -> dict[str, Any]:
        return asdict(self.config)

    @abstractmethod
    def fit(self, train: FitData, valid: FitData, trainer: TrainerAPI) -> None: ...

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

    def denoise(self, X: Any) -> np.ndarray:
        """Expected counts (cells × genes) of model input ``X``; for methods declared ``denoises``."""
        msg = f"{type(self).__name__} does not denoise counts."
        raise NotImplementedError(msg)

    def denoise_batch(self, X: Any) -> Denoised:
        """``Denoised`` outputs of a block of cells; methods with more than rates (ZiPo) override this."""
        return Denoised(rates=np.asarray(self.denoise(X), dtype=np.float32), latent=self.embed(X))

    def input_sd(self, X: Any) -> np.ndarray | None:
        """Per-gene spread (standard deviation over the cells of ``X``) of what the first layer reads, which
        scales its weights into gene contributions for ``gene_programs``; None when the method has no programs."""
        return None

    def gene_programs(self, genes: list[str], *, input_sd: np.ndarray | None = None) -> Any:
        """A table of the genes each unit of the model reads (a ``pandas.DataFrame``), or None."""
        return None

    def explain(self, X: Any, by: np.ndarray) -> Explanation | None:
        """Per-class gene scores, grouping cells by ``by`` (class codes); None when the method has none."""
        return None

    def infer(self, X: Any, *, by: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None,
                                                                    Explanation | None]:
        """Logits, embedding and explanation of ``X`` (``by=None``: no explanation).

        Methods that get all three from one pass (SIMS) override this.
        """
        expl = self.explain(X, by) if by is not None else None
        return self.predict_logits(X), self.embed(X), expl

    def warm_start(self, state: dict[str, Any]) -> dict[str, Any]:
        """Load a pretraining run's encoder (its saved tensors) before ``fit``; returns what was loaded.

        Only methods that can start from a pretrained encoder override this (``scapp train --from RUN``)."""
        msg = f"{type(self).__name__} cannot start from a pretraining run; fine-tune an ssl model from it instead."
        raise ConfigError(msg)

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
