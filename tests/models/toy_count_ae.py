"""A tiny Poisson autoencoder that exists only to test the engine's data path for non-classifiers.

It is what a new method looks like: this one file plus one ``register(ModelSpec(...))`` (done by the
test that uses it). It asks for raw counts and trains on unlabelled cells, like ZiPo and SSL will, and
records what it was given so the test can check the engine handed it integer counts and every cell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from scapp.models.base import FitData, Phase, ScappModel, StepOutput, TrainerAPI
from scapp.tensors import DeviceMatrix, dense_batches


@dataclass
class ToyConfig:
    latent: int = 4
    max_epochs: int = 3
    lr: float = 0.01
    batch_size: int = 128
    seed: int = 0


class ToyCountAE(ScappModel):
    Config: ClassVar[type] = ToyConfig
    seen: ClassVar[dict[str, Any]] = {}
    """What the last ``fit`` received (for the test)."""

    def __init__(self, config: ToyConfig, *, n_features: int, classes: list[str], device: str = "cpu") -> None:
        super().__init__(config, n_features=n_features, classes=classes, device=device)
        torch.manual_seed(config.seed)
        self.enc = torch.nn.Linear(n_features, config.latent)
        self.dec = torch.nn.Linear(config.latent, n_features)
        self.net = torch.nn.ModuleDict({"enc": self.enc, "dec": self.dec})

    def _nll(self, x: torch.Tensor) -> torch.Tensor:
        log_rate = self.dec(self.enc(torch.log1p(x)))
        return F.poisson_nll_loss(log_rate, x, log_input=True)

    def fit(self, train: FitData, valid: FitData, trainer: TrainerAPI) -> None:
        X = train.X
        data = X.data if hasattr(X, "data") else np.asarray(X)
        ToyCountAE.seen = {"n_cells": X.shape[0], "integer": bool(np.all(np.mod(data, 1) == 0)),
                           "max": float(data.max()), "unlabelled": int((np.asarray(train.y) < 0).sum())}
        Xd = DeviceMatrix(X, torch.device("cpu"))
        Xv = DeviceMatrix(valid.X, torch.device("cpu")) if valid.X.shape[0] else None
        trainer.run(Phase(
            name="training", module=self.net, optimizer=torch.optim.Adam(self.net.parameters(), lr=self.config.lr),
            step=lambda idx: StepOutput(self._nll(Xd.rows(idx)), idx.numel()), max_epochs=self.config.max_epochs,
            n_items=X.shape[0], batch_size=self.config.batch_size, generator=torch.Generator().manual_seed(0),
            validate=(lambda: {"valid_loss": float(self._nll(Xv.rows(torch.arange(len(Xv)))))}) if Xv else None,
            monitor="valid_loss", patience=5,
        ))

    @torch.no_grad()
    def embed(self, X: Any) -> np.ndarray:
        return torch.cat([self.enc(torch.log1p(xb)) for _, xb in dense_batches(X, 1024, torch.device("cpu"))]).numpy()

    @torch.no_grad()
    def denoise(self, X: Any) -> np.ndarray:
        """Poisson rates of every gene: the expected counts."""
        return torch.cat([self.dec(self.enc(torch.log1p(xb))).exp()
                          for _, xb in dense_batches(X, 1024, torch.device("cpu"))]).numpy()

    def predict_logits(self, X: Any) -> np.ndarray:
        raise NotImplementedError("this method does not classify")

    def state_dict(self) -> dict[str, Any]:
        return {k: v.detach().numpy().copy() for k, v in self.net.state_dict().items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()})
