"""Shared bits of the benchmark scripts: where the data is, what machine this is."""

from __future__ import annotations

import os
import platform
from pathlib import Path

DATA = Path(os.environ.get("SCAPP_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def machine() -> str:
    import torch

    try:
        import psutil

        mem = f"{psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    except Exception:
        mem = "? RAM"
    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.node()}: {os.cpu_count()} cores ({cpu}), {mem}, {gpu}, torch {torch.__version__}"
