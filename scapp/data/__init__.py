"""Reading inputs and checking what they hold."""

from __future__ import annotations

# --- input reading and QC (scapp.data.io / scapp.data.qc) -------------------------------
from typing import TYPE_CHECKING

from scapp.data.io import SUPPORTED, Orientation, read_data
from scapp.data.qc import QCSummary, detect_input_kind, label_candidates, qc_summary

if TYPE_CHECKING:
    import os

    from anndata import AnnData


def load_dataset(
    path: str | os.PathLike, *, orientation: Orientation = "auto"
) -> tuple[AnnData, QCSummary]:
    """Read a file and summarise it in one call: ``(adata, QCSummary)``.

    What the CLI and the app do on every upload; the summary carries the
    ``read_info`` (format, orientation decision, notes) in ``.read_info``.
    """
    adata, info = read_data(path, orientation=orientation)
    return adata, qc_summary(adata, read_info=info)


__all__ = [
    "SUPPORTED",
    "QCSummary",
    "detect_input_kind",
    "label_candidates",
    "load_dataset",
    "qc_summary",
    "read_data",
]
# --- end of input reading and QC ----------------------------------------------------------
