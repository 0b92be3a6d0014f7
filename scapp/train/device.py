"""Which device to train on, and how to name it."""

from __future__ import annotations

from typing import Literal

import torch

from scapp.errors import ConfigError


def resolve_device(device: Literal["auto", "cpu", "cuda"] | str = "auto") -> torch.device:
    """``auto`` picks the GPU when there is one; ``cuda`` without a GPU is a clear error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        msg = "No CUDA GPU is visible to PyTorch on this machine; use --device cpu (or auto)."
        raise ConfigError(msg)
    if device not in ("cpu",) and not device.startswith("cuda"):
        msg = f"Unknown device {device!r}; use auto, cpu or cuda."
        raise ConfigError(msg)
    return torch.device(device)


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"
