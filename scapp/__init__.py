"""scapp: single-cell annotation and interpretation studio (the science, no UI)."""

from __future__ import annotations

__version__ = "0.1.0"
