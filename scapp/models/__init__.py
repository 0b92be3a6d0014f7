"""Models: one module per method behind one interface (``base``), declared in ``registry``."""

from __future__ import annotations

from scapp.models.registry import REGISTRY, available, get_model_class, get_spec, names

__all__ = ["REGISTRY", "available", "get_model_class", "get_spec", "names"]
