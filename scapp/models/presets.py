"""Presets, option labels and time estimates for the Model page, all derived from the registry."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from scapp.models.registry import get_spec

OPTION_LABELS: dict[str, str] = {
    "max_epochs": "Max epochs", "lr": "Learning rate", "early_stopping_patience": "Early-stopping patience",
    "n_d": "Decision width (n_d)", "n_a": "Attention width (n_a)", "n_steps": "Attention steps",
    "lambda_sparse": "Mask sparsity weight", "n_models": "Ensemble size", "refine_epochs": "Refinement epochs",
    "ig_cells_per_class": "IG cells per class", "balance": "Synthetic balancing",
    "dynamic_sampling": "Dynamic class sampling", "max_iter": "Max iterations",
}


def presets(model: str) -> dict[str, dict[str, Any]]:
    """``{preset name: option overrides}`` of ``model`` (fast / default / thorough)."""
    return get_spec(model).presets


def estimate_seconds(model: str, preset: str, n_cells: int, *, gpu: bool = False) -> float:
    """Order-of-magnitude training time on this machine, for the preset buttons."""
    spec = get_spec(model)
    s = spec.seconds_per_1k.get(preset, 10.0) * max(n_cells, 1) / 1000
    return s / spec.gpu_speedup if gpu else s


def option_defaults(model: str, preset: str = "default") -> dict[str, Any]:
    """The main options of ``model`` with their values under ``preset`` (paper defaults, then the preset)."""
    spec = get_spec(model)
    base = {f.name: f.default for f in fields(spec.load().Config)}
    merged = {**base, **spec.presets.get(preset, {})}
    return {k: merged[k] for k in spec.main_options if k in merged}
